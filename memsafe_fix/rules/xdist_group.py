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
The name comes from `group-name`: `class` (default: the class name without its `Test`
prefix or suffix, in snake_case), `module` (the file name without `test_`), or
`module-class` (`module.class`). With `class`, same-named classes in different files share one
group, so they all run on one worker: in suites that reuse class names across modules (say a
`TestChannel` per transport), prefer `module-class`.

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
from typing import Iterator

from memsafe_fix.analysis.markers import marker_name, marks_of
from memsafe_fix.analysis.module import Def
from memsafe_fix.edits import Finding, Fix, InsertDecorator
from memsafe_fix.rules.base import Context, Rule


def snake_case(name: str) -> str:
    """``APIKeySecurity`` -> ``api_key_security``: acronyms stay together."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"_+", "_", name).strip("_").lower()


def class_group(name: str) -> str:
    stripped = re.sub(r"^(Test_?|test_)|_?Tests?$", "", name)
    return snake_case(stripped or name)


def module_group(module_name: str) -> str:
    return re.sub(r"^test_|_test$", "", module_name) or module_name


def group_name(cls: Def, context: Context) -> str:
    strategy = context.settings.group_name
    if strategy == "module":
        return module_group(context.module.module_name)
    if strategy == "module-class":
        return f"{module_group(context.module.module_name)}.{class_group(cls.name)}"
    return class_group(cls.name)


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
            mark, imports = context.spell("pytest.mark.xdist_group")
            decorator = context.call_code(cls, mark, [f"name={context.string(group_name(cls, context))}"])
            fix = Fix((InsertDecorator(cls.index, len(cls.node.decorator_list), decorator),), imports)
            yield context.finding(self.code, cls.node, f"test class `{cls.name}` has no `xdist_group` marker", fix)
