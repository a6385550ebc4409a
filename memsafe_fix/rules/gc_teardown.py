"""MSF002 gc-teardown.

## What it does
Makes every test class that uses mocks (every test class with `scope = "all"`) collect garbage
after each test, with the call `teardown-gc` sets: `gc.collect(1)` (`"young"`, the default) or
`gc.collect()` (`"full"`):
- a pytest-style class gets `def teardown_method(self)` making the call, placed after
  `setup_method` (or after the docstring); an existing `teardown_method` gets the call appended
  once, keeping its `(self, method)` signature;
- a class that inherits `teardown_method` from a base (in the same file, or in a project module
  it imports, found without importing anything) gets an override that calls
  `super().teardown_method(...)` first, with the base's signature;
- a `unittest.TestCase` subclass gets (or extends) `tearDown`, calling `super().tearDown()`,
  because `python -m unittest` never calls `teardown_method`;
- a test class nested in a class that has a `teardown_method` gets its own: pytest runs the
  outer class's teardown on the nested tests' instances, which fails when they have none.

A teardown that already calls `gc.collect(...)` in any form is left as it is.

## Why
Mocks record every call and build reference cycles; collecting after each test keeps a worker's
heap from growing with cycles. Note that pytest keeps each test-class *instance* alive until the
session ends, so mocks stored on `self` survive any collection: MSF006 drops them in the same
teardown, and that release is what frees most memory.

Why `gc.collect(1)` and not the seed pattern's `gc.collect()`: a full collection walks every
object the process holds, so its cost grows with the suite's heap, not with the test (90 ms a
test on a 175 MB heap). On real suites, full-collection teardowns cost 3.5 to 23 times the
suite's CPU time, for a peak RSS within 2 % of the unchanged run. `gc.collect(1)` walks only
the young generations, what was allocated since the last young collection; older garbage is
left to Python's own full collections, which run when the old generation has grown by a
quarter. `benchmarks/teardown_gc.py` (200 tests keeping about 1 MB of mocks each on `self`, on
a 55 MB heap, serial) measured, in CPU time relative to no teardown, and peak RSS:

| Python | no teardown | release + `gc.collect()` (`"full"`) | release + `gc.collect(1)` (default) | release only |
|---|---|---|---|---|
| 3.9 | 1.00x, 365 MiB | 1.71x, 91 MiB | 0.84x, 107 MiB | 0.75x, 107 MiB |
| 3.10 | 1.00x, 364 MiB | 1.87x, 93 MiB | 0.90x, 108 MiB | 0.88x, 108 MiB |
| 3.11 | 1.00x, 297 MiB | 1.96x, 96 MiB | 0.64x, 96 MiB | 0.71x, 117 MiB |
| 3.12 | 1.00x, 301 MiB | 2.35x, 96 MiB | 0.64x, 96 MiB | 0.62x, 117 MiB |
| 3.13 | 1.00x, 318 MiB | 2.07x, 95 MiB | 0.63x, 96 MiB | 0.60x, 120 MiB |

On Python 3.11 to 3.13 the young collection holds the peak where the full one does, at no cost;
on 3.9 and 3.10 its peak is that of the release alone. Python 3.14's incremental collector
makes `gc.collect(1)` one increment of its collection, bounded the same way. Set
`teardown-gc = "full"` where your own checks require the literal `gc.collect()`, and budget
for its cost: it grows with your heap.

## Example
```python
class TestCheckout:
    def setup_method(self):
        self.client = MagicMock()
```
becomes (with MSF006's release)
```python
class TestCheckout:
    def setup_method(self):
        self.client = MagicMock()

    def teardown_method(self):
        self.__dict__.clear()
        gc.collect(1)
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
        # Spelled once for the file, not once a class (a 10 MB file has 30,000).
        collect_call = context.collect_call()
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
            # A same-module base that memsafe-fix gives a collecting teardown covers this class,
            # unless this class's state is to be released: then it gets its own (MSF006 would
            # otherwise write one that only releases, shadowing the base's gc.collect()).
            base_planned = (
                own is None
                and inherited is None
                and any(b.module is context.module and b.index in collecting for b in bases.known)
                and not self._releases(context, cls, unittest)
            )
            if own is not None or inherited is not None or base_planned:
                with_teardown.add(cls.index)
            inherited_collects = inherited is not None and self._inherited_collects(inherited, collecting, context)
            if (
                (own is not None and context.calls(own.node, GC_COLLECT))
                # MSF006's release-only override: ``super().teardown_method(...)``, then the release.
                or (own is not None and inherited_collects and _calls_super(own, name))
                or (own is None and inherited_collects)
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
            finding = self._fix(context, cls, name, own, inherited, bases.unknown, unittest, orphaned, collect_call)
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
        collect_call: tuple[str, tuple[str, ...]],
    ) -> Finding:
        collect, imports = collect_call
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


def _calls_super(method: Def, name: str) -> bool:
    """Whether ``method`` calls ``super().name(...)``."""
    return any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == name
        and isinstance(n.func.value, ast.Call)
        and isinstance(n.func.value.func, ast.Name)
        and n.func.value.func.id == "super"
        for n in ast.walk(method.node)
    )
