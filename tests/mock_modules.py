"""Random mock-using test modules, for the property tests (``test_properties.py``) and the long
fuzz run (``benchmarks/fuzz.py``).

A module is built from a ``random.Random``: pytest-style and ``unittest.TestCase`` classes,
nested classes, bases in the same file, decorators and markers, docstrings, existing teardowns
(some reading ``self``), ``setup_method`` state, ``patch`` as decorator and in ``with`` blocks,
``mocker``, async tests and fixtures. Every module is self-contained (standard library, pytest,
pytest-asyncio and pytest-mock) and its tests pass, so that running it under pytest before and
after ``--write`` compares real outcomes.
"""

from __future__ import annotations

import random
import textwrap

HEADER = """\
class Service:
    def get(self):
        return 1

    async def fetch(self):
        return 2


def helper():
    return 3
"""


class _Writer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.indent = rng.choice(["    ", "    ", "  ", "\t"])
        self.classes = 0
        self.uses_pytest = False
        self.uses_asyncio = False
        self.uses_gc = False
        self.bases: list[str] = []

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def block(self, lines: list[str]) -> list[str]:
        return [f"{self.indent}{line}" if line else "" for line in lines]

    # --- pieces of a test body ---------------------------------------------------------------

    def sync_body(self, on_self: bool, uses_mock: bool) -> list[str]:
        """``uses_mock``: always touch a mock (a module-level test with no mock has nothing to fix)."""
        kind = self.rng.choice((0, 1, 2, 4)) if uses_mock else self.rng.randrange(6)
        if kind == 0:
            return ["m = MagicMock()", "m.call(1)", "m.call.assert_called_once_with(1)"]
        if kind == 1:
            return [
                'with patch.object(Service, "get", return_value=5) as get:',
                f"{self.indent}assert Service().get() == 5",
                "get.assert_called_once_with()",
            ]
        if kind == 2:
            return ['with patch("{module}.helper", return_value=7):', f"{self.indent}assert helper() == 7"]
        if kind == 3 and on_self:
            return ["assert self.client is not None", "self.client.ping()"]
        if kind == 4:
            return ['"""A docstring."""', "assert MagicMock(spec=Service).get() is not None"]
        return ["pass"]

    def async_body(self) -> list[str]:
        if self.chance(0.5):
            return [
                'with patch.object(Service, "fetch", return_value=4):',
                f"{self.indent}assert await Service().fetch() == 4",
            ]
        return ["m = AsyncMock(return_value=3)", "assert await m() == 3"]

    def test_function(self, name: str, method: bool, on_self: bool) -> list[str]:
        params = ["self"] if method else []
        decorators: list[str] = []
        is_async = self.chance(0.2)
        if is_async:
            self.uses_pytest = True
            decorators.append("@pytest.mark.asyncio")
            body = self.async_body()
        elif self.chance(0.2):
            decorators.append('@patch.object(Service, "get", return_value=9)')
            params.append("get")
            body = ["assert Service().get() == 9"]
        elif self.chance(0.15):
            params.append("mocker")
            body = [
                'stub = mocker.patch.object(Service, "get", return_value=8)',
                "assert Service().get() == 8",
                "stub.assert_called_once_with()",
            ]
        else:
            body = self.sync_body(on_self, uses_mock=not method)
        if self.chance(0.1):
            self.uses_pytest = True
            decorators.insert(0, "@pytest.mark.performance")
        if self.chance(0.1):
            self.uses_pytest = True
            decorators.insert(0, '@pytest.mark.parametrize("n", [1, 2])')
            params.append("n")
        prefix = "async def" if is_async else "def"
        return [*decorators, f"{prefix} {name}({', '.join(params)}):", *self.block(body)]

    # --- classes ---------------------------------------------------------------------------

    def teardown(self, unittest: bool, on_self: bool) -> list[str]:
        name = "tearDown" if unittest else "teardown_method"
        signature = "self" if unittest or self.chance(0.6) else "self, method"
        kind = self.rng.randrange(4)
        if kind == 0:
            self.uses_gc = True
            body = ["gc.collect()"]
        elif kind == 1:
            body = ["self.closed = True"]
        elif kind == 2 and on_self:
            body = ["self.client.reset_mock()"]
        elif kind == 2:
            body = ["if hasattr(self, 'client'):", f"{self.indent}self.client.reset_mock()"]
        else:
            body = ["pass"]
        if unittest:
            body = ["super().tearDown()", *body]
        return [f"def {name}({signature}):", *self.block(body)]

    def pytest_class(self, depth: int, needs_teardown: bool = False) -> list[str]:
        """``needs_teardown``: nested in a class with a ``teardown_method``, which pytest also
        calls on this class's instances (failing the tests if they have none)."""
        self.classes += 1
        name = f"Test{self.rng.choice(['Alpha', 'Beta', 'Gamma', 'Delta'])}{self.classes}"
        lines: list[str] = []
        if self.chance(0.2):
            self.uses_pytest = True
            lines.append('@pytest.mark.usefixtures("plain_fixture")')
        base = ""
        if self.bases and self.chance(0.3):
            base = f"({self.rng.choice(self.bases)})"
        lines.append(f"class {name}{base}:")
        body: list[str] = []
        if self.chance(0.3):
            body += ['"""Tests of the service."""', ""]
        on_self = self.chance(0.5)
        if on_self:
            body += ["def setup_method(self):", *self.block(["self.client = MagicMock()", "self.count = 0"]), ""]
        has_teardown = needs_teardown or self.chance(0.3)
        if has_teardown:
            body += [*self.teardown(False, on_self), ""]
        for index in range(self.rng.randint(1, 3)):
            body += [*self.test_function(f"test_{index}", True, on_self), ""]
        nested = depth < 2 and self.chance(0.2)
        if nested:
            body += [*self.pytest_class(depth + 1, has_teardown or bool(base)), ""]
        # Not a base when it has a nested class: a subclass would inherit that class, and its
        # own teardown would run on the inherited class's tests too.
        if depth == 0 and not base and not nested and self.chance(0.3):
            self.bases.append(name)
        lines += self.block(body[:-1] if body[-1] == "" else body)
        return lines

    def unittest_class(self) -> list[str]:
        self.classes += 1
        is_async = self.chance(0.3)
        base = "unittest.IsolatedAsyncioTestCase" if is_async else "unittest.TestCase"
        body: list[str] = []
        if self.chance(0.6):
            body += ["def setUp(self):", *self.block(["self.client = MagicMock()"]), ""]
        if self.chance(0.3):
            body += [*self.teardown(True, False), ""]
        body += ["def test_sync(self):", *self.block(["assert MagicMock().x is not None"]), ""]
        if is_async:
            body += [
                "async def test_async(self):",
                *self.block(["m = AsyncMock(return_value=1)", "self.assertEqual(await m(), 1)"]),
                "",
            ]
        return [f"class TestCase{self.classes}({base}):", *self.block(body[:-1])]

    def module(self, module_name: str) -> str:
        parts: list[list[str]] = []
        if self.chance(0.3):
            parts.append(['"""Generated tests."""'])
        for _ in range(self.rng.randint(1, 4)):
            roll = self.rng.random()
            if roll < 0.55:
                parts.append(self.pytest_class(0))
            elif roll < 0.75:
                parts.append(self.unittest_class())
            else:
                parts.append(self.test_function(f"test_function_{len(parts)}", False, False))
        if self.chance(0.15):
            self.uses_pytest = True
            yield_fixture = [
                "@pytest.fixture",
                "def plain_fixture():",
                *self.block(["m = MagicMock()", "yield m", "m.reset_mock()"]),
            ]
        else:
            yield_fixture = ["@pytest.fixture", "def plain_fixture():", *self.block(["return MagicMock()"])]
            self.uses_pytest = True
        body = "\n\n\n".join("\n".join(part) for part in parts)
        body = body.replace("{module}", module_name)
        imports = []
        if self.uses_gc:
            imports.append("import gc")
        imports += ["import unittest", "from unittest.mock import AsyncMock, MagicMock, patch", ""]
        imports.append("import pytest")
        head = "\n".join(imports)
        fixture = "\n".join(yield_fixture)
        return f"{head}\n\n\n{HEADER}\n\n{fixture}\n\n\n{body}\n"


def mock_module(rng: random.Random, module_name: str = "test_generated") -> str:
    """One generated test module, importable as ``module_name`` (its ``patch`` targets name it)."""
    source = _Writer(rng).module(module_name)
    if rng.random() < 0.1:
        source = source.replace("\n", "\r\n")
    return source


if __name__ == "__main__":  # a look at a few: python tests/mock_modules.py
    for seed in range(3):
        print(textwrap.indent(mock_module(random.Random(seed)), "| "))
