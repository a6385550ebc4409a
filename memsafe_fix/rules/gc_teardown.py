"""MSF002 gc-teardown.

## What it does
Makes every test class that uses mocks (every test class with `scope = "all"`) call
`gc.collect()` after each test:
- a pytest-style class gets `def teardown_method(self)` calling `gc.collect()`, placed after
  `setup_method` (or after the docstring); an existing `teardown_method` gets the call appended
  once, keeping its `(self, method)` signature;
- a class that inherits `teardown_method` from a base (in the same file, or in a project module
  it imports, found without importing anything) gets an override that calls
  `super().teardown_method(...)` first, with the base's signature;
- a `unittest.TestCase` subclass gets (or extends) `tearDown`, calling `super().tearDown()`,
  because `python -m unittest` never calls `teardown_method`;
- a test class nested in a class that has a `teardown_method` gets its own: pytest runs the
  outer class's teardown on the nested tests' instances, which fails when they have none.

## Why
Mocks record every call and build reference cycles; collecting after each test keeps a worker's
heap from growing with cycles. Note that pytest keeps each test-class *instance* alive until the
session ends, so mocks stored on `self` survive `gc.collect()`: MSF006 drops them in the same
teardown. Each full collection walks the whole heap, which is slow on large suites (kombu's unit
tests: 74 s unmodified, 7 min with these teardowns); `ignore = ["MSF002", "MSF005"]` keeps
MSF006's release, which frees the memory, without the per-test collection.

## Example
```python
class TestCheckout:
    def setup_method(self):
        self.client = MagicMock()
```
becomes
```python
class TestCheckout:
    def setup_method(self):
        self.client = MagicMock()

    def teardown_method(self):
        gc.collect()
```

## Fix safety
Safe. Reported without a fix: an `async def teardown_method` (pytest never awaits it), a
`teardown_method = ...` assignment, and a class whose base cannot be found in the project (a third-party or dynamic base), where an added
`teardown_method` could shadow one the base defines.
"""

from __future__ import annotations

import ast
from typing import Iterator, Optional

from memsafe_fix.analysis.collection import resolve_bases
from memsafe_fix.analysis.module import Def
from memsafe_fix.edits import AppendStatements, Finding, Fix
from memsafe_fix.rules.base import GC_COLLECT, Context, Rule
from memsafe_fix.rules.release_state import RELEASE, ReleaseState, needs_release, release_blocker
from memsafe_fix.rules.teardown import new_teardown


class GcTeardown(Rule):
    code = "MSF002"
    name = "gc-teardown"
    valid = (
        "import gc\nfrom unittest.mock import MagicMock\n\n\nclass TestA:\n"
        "    def teardown_method(self):\n        gc.collect()\n\n    def test_a(self):\n        MagicMock()\n",
    )
    invalid = (
        (
            "from unittest.mock import MagicMock\n\n\nclass TestA:\n    def test_a(self):\n        MagicMock()\n",
            "import gc\nfrom unittest.mock import MagicMock\n\n\nclass TestA:\n"
            "    def teardown_method(self):\n        gc.collect(1)\n\n    def test_a(self):\n        MagicMock()\n",
        ),
    )

    def check(self, context: Context) -> Iterator[Finding]:
        # Classes whose instances will have a teardown that calls gc.collect() / any teardown.
        collecting: set[int] = set()
        with_teardown: set[int] = set()
        for cls in context.test_classes:
            unittest = context.is_unittest(cls)
            name = "tearDown" if unittest else "teardown_method"
            own = cls.methods().get(name)
            bases = resolve_bases(cls, context.module)
            inherited = next((b.methods()[name] for b in bases.known if name in b.methods()), None)
            # pytest runs an enclosing class's teardown_method on nested tests' instances.
            enclosing_teardown = any(p.index in with_teardown for p in cls.ancestors)
            orphaned = enclosing_teardown and not unittest and own is None and inherited is None
            wanted = context.needs_pattern(cls) or orphaned
            # A same-module base that memsafe-fix gives a collecting teardown covers this class.
            base_planned = (
                own is None
                and inherited is None
                and any(b.module is context.module and b.index in collecting for b in bases.known)
            )
            if own is not None or inherited is not None or base_planned:
                with_teardown.add(cls.index)
            if (
                (own is not None and context.calls(own.node, GC_COLLECT))
                or (own is None and inherited is not None and self._inherited_collects(inherited, collecting, context))
                or base_planned
            ):
                collecting.add(cls.index)
                continue
            if not wanted or context.suppressed(self.code, cls):
                continue
            if own is None and _assigned(cls, name):
                with_teardown.add(cls.index)
                message = f"`{name}` of `{cls.name}` is assigned, not defined; make it call `gc.collect()` by hand"
                yield context.finding(self.code, cls.node, message)
                continue
            finding = self._fix(context, cls, name, own, inherited, bases.unknown, unittest, orphaned)
            if finding.fixable:
                collecting.add(cls.index)
                with_teardown.add(cls.index)
            yield finding

    @staticmethod
    def _releases(context: Context, cls: Def, unittest: bool) -> bool:
        return (
            not unittest
            and context.settings.rule_enabled(ReleaseState.code, context.module.path)
            and not context.suppressed(ReleaseState.code, cls)
            and needs_release(cls, context)
            and release_blocker(cls, context) is None
        )

    @staticmethod
    def _plan_release(context: Context, cls: Def, release: str) -> None:
        if release:
            context.teardown_writes.add(cls.index)
            context.releasing.add(cls.index)

    def _inherited_collects(self, inherited: Def, collecting: set[int], context: Context) -> bool:
        owner = inherited.parent
        planned = owner is not None and owner.module is context.module and owner.index in collecting
        return planned or context.calls(inherited.node, GC_COLLECT, inherited.module)

    def _fix(
        self,
        context: Context,
        cls: Def,
        name: str,
        own: Optional[Def],
        inherited: Optional[Def],
        unknown_bases: list[str],
        unittest: bool,
        orphaned: bool,
    ) -> Finding:
        collect, imports = context.collect_call()
        # MSF006: the teardown written here also releases what the tests keep on ``self``.
        release = f"{RELEASE}\n" if self._releases(context, cls, unittest) else ""
        if own is not None:
            if isinstance(own.node, ast.AsyncFunctionDef):
                message = f"`async def {name}` of `{cls.name}` is never awaited by pytest; make it a plain `def`"
                return context.finding(self.code, own.node, message)
            self._plan_release(context, cls, release)
            fix = Fix((AppendStatements(own.index, f"{release}{collect}\n"),), imports)
            return context.finding(self.code, own.node, f"`{name}` of `{cls.name}` does not call `gc.collect()`", fix)
        if unknown_bases and not unittest and inherited is None:
            message = (
                f"cannot tell whether base `{unknown_bases[0]}` of `{cls.name}` defines `{name}`; "
                f"add one that calls `super().{name}(...)` and then `gc.collect()`"
            )
            return context.finding(self.code, cls.node, message)
        self._plan_release(context, cls, release)
        statements = [RELEASE] if release else []
        fix = Fix((new_teardown(cls, inherited, [*statements, collect], unittest),), imports)
        if orphaned and not context.needs_pattern(cls):
            message = (
                f"nested test class `{cls.name}` needs its own `teardown_method`: pytest runs the "
                "enclosing class's teardown on its tests"
            )
        else:
            message = f"test class `{cls.name}` has no `{name}` that calls `gc.collect()`"
        return context.finding(self.code, cls.node, message, fix)


def _assigned(cls: Def, name: str) -> bool:
    """``teardown_method = helper`` in the class body: a ``def`` added before it would be
    overridden, and one added after it would drop the helper."""
    return any(
        isinstance(stmt, (ast.Assign, ast.AnnAssign))
        and any(
            isinstance(t, ast.Name) and t.id == name
            for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
        )
        for stmt in cls.node.body
    )
