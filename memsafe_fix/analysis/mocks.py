"""Does a piece of code create or patch mocks?

Counts references to the mock factories in every import form (see ``imports.py``; imports inside
the function or class looked at too), pytest-mock's ``mocker`` fixtures, and calls of
same-module helpers and fixtures that themselves create mocks.
Callables named in the ``mock-factories`` setting count too. A call on a line marked
``# memsafe: ignore`` is not counted.
"""

from __future__ import annotations

import ast
from functools import cached_property
from typing import Optional, Union

from memsafe_fix.analysis.collection import fixture_name, is_fixture
from memsafe_fix.analysis.imports import MOCK_MODULES, ImportTable
from memsafe_fix.analysis.module import ModuleAnalysis, child_nodes

MOCKER_FIXTURES = frozenset({"mocker", "class_mocker", "module_mocker", "package_mocker", "session_mocker"})


class MockUsage:
    def __init__(self, module: ModuleAnalysis) -> None:
        self.module = module
        # The ``mock-factories`` setting: project callables that create mocks.
        self.extra_factories = frozenset(module.settings.mock_factories)
        self._facts: dict[int, tuple[bool, frozenset[str]]] = {}

    def _walk(
        self, node: ast.AST, skip: frozenset[ast.AST], imports: Optional[ImportTable] = None
    ) -> tuple[bool, frozenset[str]]:
        """(whether ``node`` references a mock factory or a ``mocker`` fixture, the names it
        uses), in one walk; helpers are matched against the names afterwards."""
        table = imports or self.module.imports
        names: set[str] = set()
        local_imports: list[ast.stmt] = []
        stack = [node]
        ignores_line = self.module.ignores_line
        while stack:
            current = stack.pop()
            if current in skip:
                continue
            # A mock call on a ``# memsafe: ignore`` line does not count as mock use.
            if isinstance(current, ast.Call) and ignores_line(current.lineno):
                continue
            if isinstance(current, ast.Name):
                if self._is_factory(current, table):
                    return True, frozenset()
                names.add(current.id)
                continue  # only its ``Load``/``Store`` below
            elif isinstance(current, ast.Constant):
                continue
            elif isinstance(current, ast.Attribute) and isinstance(current.value, (ast.Name, ast.Attribute)):
                if table.is_patch_dict(current):
                    continue  # not a mock, and neither is the ``patch`` it is written with
                if self._is_factory(current, table):
                    return True, frozenset()
            elif isinstance(current, ast.arg):
                if current.arg in MOCKER_FIXTURES:
                    return True, frozenset()
                names.add(current.arg)
            elif isinstance(current, (ast.Import, ast.ImportFrom)) and _imports_mock_module(current):
                local_imports.append(current)
            stack.extend(child_nodes(current))
        if local_imports and imports is None:
            # ``from unittest.mock import AsyncMock`` inside a function: walk again with the
            # names it binds (anywhere in ``node``: a close enough scope for "uses mocks").
            return self._walk(node, skip, table.with_local_imports(local_imports))
        return False, frozenset(names)

    def _references_mocks(self, node: ast.AST, helpers: frozenset[str], skip: frozenset[ast.AST]) -> bool:
        if skip:
            direct, names = self._walk(node, skip)
        else:
            if id(node) not in self._facts:
                self._facts[id(node)] = self._walk(node, skip)
            direct, names = self._facts[id(node)]
        return direct or not names.isdisjoint(helpers)

    def _is_factory(self, node: ast.expr, imports: ImportTable) -> bool:
        return imports.is_mock_factory(node) or (
            bool(self.extra_factories) and imports.qualify(node) in self.extra_factories
        )

    @cached_property
    def helpers(self) -> frozenset[str]:
        """Module-level functions and fixtures that create mocks, followed transitively."""
        found: set[str] = set()
        functions = [d for d in self.module.top_level if not d.is_class]
        changed = True
        while changed:
            changed = False
            for func in functions:
                names = {func.name, fixture_name(func, self.module)} if is_fixture(func, self.module) else {func.name}
                if not names <= found and self._references_mocks(func.node, frozenset(found), frozenset()):
                    found |= names
                    changed = True
        return frozenset(found)

    def uses_mocks(self, node: ast.AST, skip: frozenset[ast.AST] = frozenset()) -> bool:
        """Whether ``node`` (minus the subtrees in ``skip``) creates or patches mocks."""
        return self._references_mocks(node, self.helpers, skip)


def _imports_mock_module(stmt: Union[ast.Import, ast.ImportFrom]) -> bool:
    """``import mock``, ``import unittest.mock as um``, ``from unittest import mock``,
    ``from unittest.mock import AsyncMock``."""
    if isinstance(stmt, ast.Import):
        return any(alias.name in MOCK_MODULES for alias in stmt.names)
    module = stmt.module or ""
    return not stmt.level and (
        module in MOCK_MODULES or (module == "unittest" and any(a.name == "mock" for a in stmt.names))
    )
