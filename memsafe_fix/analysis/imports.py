"""What the module's top-level imports bind, so rules can resolve names without importing code.

Only unconditional top-level imports count: a name imported inside a function or under
``if TYPE_CHECKING:`` is not available where the rules need it. ``with_local_imports`` adds a
function's own imports, for judging that function's body.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Optional

MOCK_MODULES = frozenset({"unittest.mock", "mock"})
# Callables that create or patch mocks; ``patch`` covers ``patch.object``/``.multiple``, not
# ``patch.dict``, which swaps dictionary items and makes no mock.
MOCK_FACTORIES = frozenset(
    {
        "Mock",
        "MagicMock",
        "AsyncMock",
        "NonCallableMock",
        "NonCallableMagicMock",
        "PropertyMock",
        "ThreadingMock",
        "create_autospec",
        "patch",
    }
)
UNITTEST_CASES = frozenset(
    {
        "unittest.TestCase",
        "unittest.IsolatedAsyncioTestCase",
        "unittest.case.TestCase",
        "unittest.async_case.IsolatedAsyncioTestCase",
        "django.test.TestCase",
        "django.test.SimpleTestCase",
        "django.test.TransactionTestCase",
        "django.test.LiveServerTestCase",
        "rest_framework.test.APITestCase",
    }
)
# Bases that are known not to define ``teardown_method``.
PLAIN_BASES = frozenset({"object", "abc.ABC", "typing.Generic", "typing.Protocol"})


@dataclass
class ImportTable:
    """Maps local names bound by top-level imports to the dotted names they stand for."""

    bound: dict[str, str] = field(default_factory=dict)
    star_mock: bool = False

    @classmethod
    def from_module(cls, tree: ast.Module) -> "ImportTable":
        return cls.from_statements(tree.body)

    @classmethod
    def from_statements(cls, statements: list[ast.stmt]) -> "ImportTable":
        table = cls()
        for stmt in statements:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        table.bound[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        table.bound[top] = top
            elif isinstance(stmt, ast.ImportFrom):
                # Relative imports keep their leading dots: ``from .case import Base`` -> ``.case.Base``.
                module = "." * stmt.level + (stmt.module or "")
                for alias in stmt.names:
                    if alias.name == "*":
                        if module in MOCK_MODULES:
                            table.star_mock = True
                        continue
                    separator = "" if module.endswith(".") else "."
                    table.bound[alias.asname or alias.name] = f"{module}{separator}{alias.name}"
        if table.star_mock:
            for name in MOCK_FACTORIES:
                table.bound.setdefault(name, f"unittest.mock.{name}")
        return table

    def with_local_imports(self, statements: list[ast.stmt]) -> "ImportTable":
        """This table with the names ``statements`` (imports inside a function) bind on top."""
        local = ImportTable.from_statements(statements)
        return ImportTable({**self.bound, **local.bound}, self.star_mock or local.star_mock)

    def qualify(self, node: ast.expr) -> Optional[str]:
        """The dotted name an expression refers to (``m.patch.object`` -> ``unittest.mock.patch.object``)."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.bound.get(node.id, node.id))
        return ".".join(reversed(parts))

    def is_mock_factory(self, node: ast.expr) -> bool:
        """Whether ``node`` names a mock class, ``create_autospec`` or a ``patch`` form."""
        name = self.qualify(node)
        if name is None or "." not in name:
            return False
        for module in MOCK_MODULES:
            prefix = module + "."
            if name.startswith(prefix):
                inner = name[len(prefix) :].split(".")
                return inner[0] in MOCK_FACTORIES and inner[:2] != ["patch", "dict"]
        return False

    def is_patch_dict(self, node: ast.expr) -> bool:
        return any(self.qualify(node) == f"{module}.patch.dict" for module in MOCK_MODULES)

    def alias_for(self, dotted: str) -> Optional[str]:
        """A local name bound to exactly ``dotted``: ``import gc as _gc`` gives ``_gc`` for
        ``gc``, ``from os import getenv`` gives ``getenv`` for ``os.getenv``."""
        for local, target in self.bound.items():
            if target == dotted:
                return local
        return None
