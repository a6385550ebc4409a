"""What every rule shares: the per-file context and the rule interface."""

from __future__ import annotations

import ast
import io
import tokenize
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Iterator, Optional

from memsafe_fix.analysis.collection import is_collected_class, is_unittest_class, resolve_bases
from memsafe_fix.analysis.mocks import MockUsage
from memsafe_fix.analysis.module import Def, ModuleAnalysis
from memsafe_fix.edits import Finding, Fix

if TYPE_CHECKING:
    from memsafe_fix.analysis.pytest_config import Project
    from memsafe_fix.analysis.targets import Resolution

# black's default; new code is wrapped to fit it.
MAX_LINE_LENGTH = 88
GC_COLLECT = "gc.collect"


class Context:
    """Everything rules need to know about one file, computed once and shared."""

    def __init__(self, module: ModuleAnalysis, group_names: Optional[dict[str, str]] = None) -> None:
        self.module = module
        # Class name -> ``xdist_group`` name, for classes whose default name other files of
        # the run share (see ``xdist_group.shared_group_names``).
        self.group_names = group_names or {}
        self.settings = module.settings
        self.mocks = MockUsage(module)
        self.is_conftest = module.module_name == "conftest"
        self._mock_use: dict[int, bool] = {}
        # Every ``patch`` call MSF004 looked at, its target as written, and what it found (for ``--verbose``).
        # Test classes whose teardown MSF002 writes or extends with a state release (MSF006),
        # and all classes whose teardown is being made to release state.
        self.teardown_writes: set[int] = set()
        self.releasing: set[int] = set()
        self.resolutions: list[tuple[ast.Call, str, "Resolution"]] = []

    @cached_property
    def test_classes(self) -> list[Def]:
        """Collected test classes, outer classes before the classes nested in them."""
        if self.is_conftest:
            return []
        return [d for d in self.module.defs if d.is_class and is_collected_class(d, self.module)]

    @cached_property
    def test_class_indexes(self) -> frozenset[int]:
        return frozenset(d.index for d in self.test_classes)

    def is_unittest(self, cls: Def) -> bool:
        return is_unittest_class(cls, self.module)

    def needs_pattern(self, cls: Def) -> bool:
        """The class is in scope: every test class with ``scope = "all"``, else those using mocks
        in their own body (nested test classes are judged on their own) or a same-module base."""
        if self.settings.scope == "all":
            return True
        same_module = [c for c in resolve_bases(cls, self.module).known if c.module is self.module]
        return any(self._own_mock_use(c) for c in [cls, *same_module])

    def _own_mock_use(self, cls: Def) -> bool:
        if cls.index not in self._mock_use:
            nested = frozenset(d.node for d in cls.children if d.index in self.test_class_indexes)
            self._mock_use[cls.index] = self.mocks.uses_mocks(cls.node, skip=nested)
        return self._mock_use[cls.index]

    def spell(self, dotted: str) -> tuple[str, tuple[str, ...]]:
        """How to write ``dotted`` (``gc.collect``) in this file, and the imports that needs:
        existing aliases are reused (``import gc as _gc`` -> ``_gc.collect``)."""
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            local = self.module.imports.alias_for(".".join(parts[:cut]))
            if local is not None:
                return ".".join([local, *parts[cut:]]), ()
        return dotted, (parts[0],)

    def collect_call(self) -> tuple[str, tuple[str, ...]]:
        """The collection that teardowns and function tests get, as set by ``teardown-gc``:
        ``gc.collect(1)`` (young generations), or the seed pattern's full ``gc.collect()``;
        spelled the way this file imports ``gc``, and the imports that needs."""
        collect, imports = self.spell(GC_COLLECT)
        return f"{collect}({'' if self.settings.teardown_gc == 'full' else 1})", imports

    def calls(self, node: ast.AST, dotted: str, module: Optional[ModuleAnalysis] = None) -> bool:
        """Whether ``node`` (from ``module``, default this file) contains a call of ``dotted``
        (``gc.collect``), in any import spelling."""
        qualify = (module or self.module).imports.qualify
        return any(isinstance(n, ast.Call) and qualify(n.func) == dotted for n in ast.walk(node))

    def string(self, text: str) -> str:
        """``text`` as a string literal in the quotes this file uses."""
        return string_literal(text, self.quote)

    @cached_property
    def quote(self) -> str:
        return self.module.quote or preferred_quote(self.module.source)

    def finding(self, code: str, node: ast.AST, message: str, fix: Optional[Fix] = None) -> Finding:
        line, col = self.module.position(node)
        return Finding(code, line, col, message, fix)

    def call_code(self, scope: Def, func: str, args: list[str]) -> str:
        """``func(args)`` for a decorator on ``scope``, split one argument a line, as black
        does, when the one-line form would pass 88 columns."""
        one_line = f"{func}({', '.join(args)})"
        line = self.module.lines[scope.node.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        if len(indent) + 1 + len(one_line) <= MAX_LINE_LENGTH:
            return one_line
        # Continuation lines are relative: LibCST adds the enclosing block's indentation.
        unit = "\t" if "\t" in indent else "    "
        return f"{func}(\n" + "".join(f"{unit}{arg},\n" for arg in args) + ")"

    def suppressed(self, code: str, scope: Def) -> bool:
        return self.module.suppressed(code, iter(scope.header_lines))


class Rule:
    """A rule's docstring is its documentation: What it does / Why / Example / Fix safety."""

    code: ClassVar[str]
    name: ClassVar[str]
    # Source snippets the rule must accept unchanged.
    valid: ClassVar[tuple[str, ...]] = ()
    # (before, after) pairs: the rule must turn ``before`` into ``after``.
    invalid: ClassVar[tuple[tuple[str, str], ...]] = ()

    def check(self, context: Context) -> Iterator[Finding]:
        raise NotImplementedError


class ProjectRule:
    """A project-level rule: it reads a project's pytest configuration (and what the run found
    in its test files) instead of one file, and reports at most once per configuration file.
    Its module docstring is its documentation, as for ``Rule``."""

    code: ClassVar[str]
    name: ClassVar[str]

    def check(self, project: "Project") -> Iterator[Finding]:
        raise NotImplementedError

    def finding(self, project: "Project", position: tuple[int, int], message: str, fix: Optional[Fix]) -> Finding:
        return Finding(self.code, position[0], position[1], message, fix)


def string_literal(text: str, quote: str = '"') -> str:
    """A Python string literal in ``quote``s (double: black's and ruff's default), in the other
    quotes when that spares escaping, as those formatters do."""
    other = "'" if quote == '"' else '"'
    if quote in text and other not in text:
        quote = other
    return quote + text.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def preferred_quote(source: str) -> str:
    """``'`` when most one-line string literals in ``source`` use single quotes, else ``"``."""
    counts = {"'": 0, '"': 0}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.STRING:
                body = token.string.lstrip("rRbBuUfF")
                if body[:3] not in ('"""', "'''"):
                    counts[body[0]] += 1
    except (tokenize.TokenError, SyntaxError):
        pass
    return "'" if counts["'"] > counts['"'] else '"'
