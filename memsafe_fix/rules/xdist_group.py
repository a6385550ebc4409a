"""MSF001 xdist-group.

## What it does
Adds `@pytest.mark.xdist_group(name="...")` to test classes that use mocks (every test class
with `scope = "all"`), as the decorator nearest `class`.

## Why
With `pytest -n N --dist loadgroup`, tests of one group run on the same worker, so a class's
mock-heavy tests do not spread their fixtures and patched modules over every worker.
`xdist_group` has **no effect** with `--dist load` or `--dist loadscope`: run xdist with
`--dist loadgroup` (for example in `addopts`).

A class is left alone when it, an enclosing class, or the module (`pytestmark`) already has an
`xdist_group` marker, in any spelling (`pytest.mark`, an aliased `mark`, `pytestmark` lists).

## Example
```python
class TestAPIKeySecurity:
    def test_rotate(self):
        client = MagicMock()
```
becomes
```python
@pytest.mark.xdist_group(name="api_key_security")
class TestAPIKeySecurity:
    def test_rotate(self):
        client = MagicMock()
```
The name comes from `group-name`: `class` (the class name without its `Test` prefix or
suffix, in snake_case), `module` (the file name without `test_`), or `module-class`
(`module.class`). By default it is the class's name, except where classes in different files
of the run would share it (or a marker in another file already uses it): those are qualified
with their module (`test_openai.py::TestCountTokens` -> `openai.count_tokens`), and with parent
folders while files are named alike (`a/test_tokens.py` -> `a.tokens.count_tokens`), so
unrelated classes do not all run on one worker. The names depend only on the files of the run,
so a `--diff` and a `--write` over the same files agree. With `group-name = "class"` set
explicitly, same-named classes in different files share one group.

## Fix safety
Safe for test outcomes under pytest: a marker changes only how `--dist loadgroup` distributes
tests (which can expose tests that depend on running after others). Under `--strict-markers`
the marker must be registered; pytest-xdist registers it when installed. In a module of
`unittest.TestCase` classes that did not import pytest, the fix adds `import pytest`: if that
module must also run under `python -m unittest` where pytest is not installed, suppress it
there with `# memsafe: ignore[MSF001]`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

from memsafe_fix.analysis.collection import matches_prefix_or_glob
from memsafe_fix.analysis.markers import marker_name, marks_of
from memsafe_fix.analysis.module import Def
from memsafe_fix.config import Settings
from memsafe_fix.edits import Finding, Fix, InsertDecorator
from memsafe_fix.rules.base import Context, Rule

_ACRONYM_END = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD_END = re.compile(r"([a-z0-9])([A-Z])")
_UNDERSCORES = re.compile(r"_+")
_TEST_AFFIX = re.compile(r"^(Test_?|test_)|_?Tests?$")


def snake_case(name: str) -> str:
    """``APIKeySecurity`` -> ``api_key_security``: acronyms stay together."""
    name = _ACRONYM_END.sub(r"\1_\2", name)
    name = _WORD_END.sub(r"\1_\2", name)
    return _UNDERSCORES.sub("_", name).strip("_").lower()


@lru_cache(maxsize=None)
def class_group(name: str) -> str:
    """A class's group name, asked for once per class by the rule and twice by
    ``shared_group_names``: a 10 MB file has 30,000 classes, four ``re.sub`` each."""
    stripped = _TEST_AFFIX.sub("", name)
    return snake_case(stripped or name)


def module_group(module_name: str) -> str:
    return re.sub(r"^test_|_test$", "", module_name) or module_name


def group_name(cls: Def, context: Context) -> str:
    strategy = context.settings.group_name
    if strategy == "module":
        return module_group(context.module.module_name)
    if strategy == "module-class":
        return f"{module_group(context.module.module_name)}.{class_group(cls.name)}"
    if strategy is None and cls.name in context.group_names:
        return context.group_names[cls.name]
    return class_group(cls.name)


# Parent folders added to a qualified group name at most, to tell same-named files apart.
MAX_QUALIFYING_FOLDERS = 3
# ``class`` then the name and the rest of the line; a line's own when only blanks come before it
# (``_class_lines``: searching for the keyword is much faster than a multi-line ``^``).
_CLASS = re.compile(r"class[ \t]+(\w+)(.*)")
_GROUP_MARKER = re.compile(r"xdist_group\(\s*(?:name\s*=\s*)?[rRuU]?[\"']([^\"']+)[\"']")


def _class_lines(text: str) -> Iterator[tuple[str, str]]:
    """The name and the rest of the line of each line starting with ``class`` (after blanks)."""
    for match in _CLASS.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if not text[line_start : match.start()].strip(" \t"):
            yield match.group(1), match.group(2)


# What ``shared_group_names`` reads in one file: the group names its ``xdist_group`` markers
# use, and its test classes (None when the file does not take the default naming).
GroupFacts = tuple[list[str], Optional[list[str]]]


def group_facts(text: str, path: Path, settings: Settings) -> GroupFacts:
    markers = _GROUP_MARKER.findall(text)
    if settings.group_name is not None or not settings.rule_enabled(XdistGroup.code, path):
        return markers, None
    classes = [
        name
        for name, rest in _class_lines(text)
        if matches_prefix_or_glob(name, settings.python_classes) or "TestCase" in rest
    ]
    return markers, classes


def shared_group_names(
    files: list[tuple[Path, Settings]], known: Optional[dict[Path, GroupFacts]] = None
) -> dict[Path, dict[str, str]]:
    """With the default naming, the group names of classes whose class-derived name other
    files of the run also derive or already use: for each file, class name -> the name
    qualified with the module (``openai.count_tokens``), and with parent folders until the
    files differ (``openai/test_tokens.py`` next to ``anthropic/test_tokens.py`` gives
    ``openai.tokens.count_tokens``). Read from the files' text, without parsing them: every
    class named like a test class counts, so a run over the same files always picks the same
    names. ``known``: the facts of files already known (from the result cache), completed
    here with those of the files read."""
    if not any(
        settings.group_name is None and settings.rule_enabled(XdistGroup.code, path) for path, settings in files
    ):
        return {}
    classes: dict[Path, list[str]] = {}
    owners: dict[str, set[Path]] = defaultdict(set)
    for path, settings in files:
        facts = known.get(path) if known is not None else None
        if facts is None:
            try:
                text = path.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            facts = group_facts(text, path, settings)
            if known is not None:
                known[path] = facts
        markers, names = facts
        for marker in markers:
            owners[marker].add(path)
        if names is None:
            continue
        classes[path] = names
        for name in classes[path]:
            owners[class_group(name)].add(path)
    pending = {(path, name) for path, names in classes.items() for name in names if len(owners[class_group(name)]) > 1}
    found: dict[Path, dict[str, str]] = defaultdict(dict)
    for folders in range(MAX_QUALIFYING_FOLDERS + 1):
        attempt = {key: _qualified(key[0], folders, class_group(key[1])) for key in pending}
        holders = defaultdict(set)
        for (path, _), name in attempt.items():
            holders[name].add(path)
        for (path, name), group in attempt.items():
            if len(holders[group]) == 1 or folders == MAX_QUALIFYING_FOLDERS:
                found[path][name] = group
        pending = {(path, name) for path, name in pending if name not in found[path]}
    return dict(found)


def _qualified(path: Path, folders: int, group: str) -> str:
    parents = list(path.parent.parts[-folders:]) if folders else []
    return ".".join([*parents, module_group(path.stem), group])


class XdistGroup(Rule):
    code = "MSF001"
    name = "xdist-group"
    valid = (
        "import pytest\nfrom unittest.mock import MagicMock\n\n\n"
        '@pytest.mark.xdist_group(name="api")\nclass TestApi:\n    def test_a(self):\n        MagicMock()\n',
        "from unittest.mock import MagicMock\n\n\nclass Helper:\n    def make(self):\n        return MagicMock()\n",
    )
    invalid = (
        (
            "import pytest\nfrom unittest.mock import MagicMock\n\n\n"
            "class TestAPIKeySecurity:\n    def test_a(self):\n        MagicMock()\n",
            "import pytest\nfrom unittest.mock import MagicMock\n\n\n"
            '@pytest.mark.xdist_group(name="api_key_security")\n'
            "class TestAPIKeySecurity:\n    def test_a(self):\n        MagicMock()\n",
        ),
    )

    def check(self, context: Context) -> Iterator[Finding]:
        module = context.module
        in_module_group = any(marker_name(m, module) == "xdist_group" for m in marks_of(None, module))
        grouped: set[int] = set()
        # Spelled once for the file, not once a class (a 10 MB file has 30,000).
        mark, imports = context.spell("pytest.mark.xdist_group")
        for cls in context.test_classes:
            if (
                in_module_group
                or (cls.parent is not None and cls.parent.index in grouped)
                or any(marker_name(m, module) == "xdist_group" for m in marks_of(cls, module))
            ):
                grouped.add(cls.index)
                continue
            if not context.needs_pattern(cls) or context.suppressed(self.code, cls):
                continue
            grouped.add(cls.index)
            decorator = context.call_code(cls, mark, [f"name={context.string(group_name(cls, context))}"])
            fix = Fix((InsertDecorator(cls.index, len(cls.node.decorator_list), decorator),), imports)
            yield context.finding(self.code, cls.node, f"test class `{cls.name}` has no `xdist_group` marker", fix)
