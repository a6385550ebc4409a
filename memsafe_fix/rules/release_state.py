"""MSF006 release-state.

## What it does
Makes the teardown of a pytest-style test class release the instance's state before its
garbage collection: `self.__dict__.clear()` drops every attribute the test stored on `self` (in
`setup_method`, the tests, helpers or function-scoped fixtures). The teardown MSF002 writes
or extends gets the line; an existing teardown that already calls `gc.collect(...)` gets it
inserted before that call. With MSF002 turned off (`ignore = ["MSF002"]`), a class without a
teardown gets one that only releases, calling the inherited teardown first.

Left alone: classes that store nothing on `self`, teardowns that already release state
(`self.__dict__.clear()`, `vars(self).clear()`, or `del self.x` / `self.x = None` for every
attribute the class assigns), classes with `__slots__`, and `unittest.TestCase` classes,
whose instances pytest already drops after each test.

## Why
pytest keeps every test-class instance alive until the session ends (pytest issue #11374),
so whatever a test stores on `self` (mocks, with every call they recorded) lives until the
worker exits: `gc.collect()` cannot free it. Measured by `benchmarks/memory.py` on 600 tests
keeping about 1 MB of mocks each on `self` (`-n 2`): 344 MiB per worker with no pattern; the
seed pattern's `gc.collect()` teardown, 346 MiB in 5x the time; with `self.__dict__.clear()`
before it, 42 MiB in about the original time.

## Example
```python
class TestCheckout:
    def setup_method(self):
        self.client = MagicMock()

    def teardown_method(self):
        gc.collect(1)
```
becomes
```python
class TestCheckout:
    def setup_method(self):
        self.client = MagicMock()

    def teardown_method(self):
        self.__dict__.clear()
        gc.collect(1)
```

## Fix safety
Safe for the class's own code: pytest runs `teardown_method` after the teardowns of the
function-scoped fixtures the test requested, and class-scoped fixtures run on another
instance. Three things could still read `self` later, and each makes the finding report-only:
a subclass in the same file whose `teardown_method` uses `self` after calling
`super().teardown_method(...)`; a fixture in the test's module or a `conftest.py` that uses
`request.instance` in its teardown (after its `yield`, or in a finalizer): autouse fixtures
there are torn down after `teardown_method` (setting `request.instance.x` before the `yield` is
fine); and a test class nested in another test class whose `teardown_method` reads `self`:
pytest runs the enclosing class's teardown fixture on the nested tests' instances too, so that
teardown runs twice, the second time after the release. A teardown MSF002 writes reads nothing
from `self` and is safe to run twice.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from typing import Iterator, Optional
from weakref import WeakKeyDictionary

from memsafe_fix.analysis.collection import resolve_bases
from memsafe_fix.analysis.module import Def, ModuleAnalysis
from memsafe_fix.analysis.project import conftests
from memsafe_fix.edits import AppendStatements, Finding, Fix
from memsafe_fix.rules.base import GC_COLLECT, Context, Rule
from memsafe_fix.rules.teardown import TEARDOWN, new_teardown

RELEASE = "self.__dict__.clear()"


def _self_attribute(node: ast.AST) -> Optional[str]:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def state_attributes(cls: Def, context: Context) -> set[str]:
    """Attributes the class (or a base in the same file) assigns on ``self`` (``*``: some
    through ``setattr``)."""
    classes = [cls, *(b for b in resolve_bases(cls, context.module).known if b.module is context.module)]
    return {name for owner in classes for name in context.module.self_assignments(owner)}


def releases_state(teardown: Def, attributes: set[str]) -> bool:
    """``self.__dict__.clear()``, ``vars(self).clear()``, or every attribute deleted or set to None."""
    released: set[str] = set()
    for node in ast.walk(teardown.node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "clear":
            holder = node.func.value
            if (isinstance(holder, ast.Attribute) and holder.attr == "__dict__" and _is_self(holder.value)) or (
                isinstance(holder, ast.Call)
                and isinstance(holder.func, ast.Name)
                and holder.func.id == "vars"
                and holder.args
                and _is_self(holder.args[0])
            ):
                return True
        if isinstance(node, ast.Delete):
            released.update(a for a in map(_self_attribute, node.targets) if a)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is None:
            released.update(a for a in map(_self_attribute, node.targets) if a)
    return "*" not in attributes and attributes <= released


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _uses_self_after_super(cls: Def, module: ModuleAnalysis) -> bool:
    """A subclass in this file whose ``teardown_method`` reads ``self`` after ``super().teardown_method()``."""
    return cls.name in _bases_read_after_super(module)


def _bases_read_after_super(module: ModuleAnalysis) -> frozenset[str]:
    """The base names (as written) of the classes in ``module`` whose ``teardown_method`` reads
    ``self`` after calling the base's one: worked out once per module, not once per class."""
    if module not in _BASES_READ_AFTER_SUPER:
        _BASES_READ_AFTER_SUPER[module] = module_reads_after_super(module)
    return _BASES_READ_AFTER_SUPER[module]


def module_reads_after_super(module: ModuleAnalysis) -> frozenset[str]:
    found: set[str] = set()
    for other in module.defs:
        teardown = other.methods().get(TEARDOWN) if other.is_class else None
        if teardown is None:
            continue
        calls = [
            n.lineno
            for n in ast.walk(teardown.node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == TEARDOWN
        ]
        if calls and any(_self_attribute(n) and n.lineno > min(calls) for n in ast.walk(teardown.node)):
            found.update(b.id for b in other.node.bases if isinstance(b, ast.Name))
    return frozenset(found)


_BASES_READ_AFTER_SUPER: "WeakKeyDictionary[ModuleAnalysis, frozenset[str]]" = WeakKeyDictionary()


def _reads_instance_late(module: ModuleAnalysis) -> Optional[str]:
    """The module or ``conftest.py`` with a fixture that uses ``request.instance`` in its
    teardown (after its ``yield``, or in a finalizer): module-level and conftest autouse
    fixtures are torn down after ``teardown_method``, when the state is gone. Asked for every
    class, worked out once per module."""
    if module not in _READS_INSTANCE_LATE:
        _READS_INSTANCE_LATE[module] = (_late_reader(module, module_uses_instance_in_teardown(module)),)
    return _READS_INSTANCE_LATE[module][0]


def _late_reader(module: ModuleAnalysis, own: bool) -> Optional[str]:
    if own:
        return module.path.name if module.path else module.module_name
    conftest = next((c for c in conftests(module) if _conftest_uses_instance_in_teardown(c)), None)
    return conftest.path.name if conftest is not None and conftest.path else None


_READS_INSTANCE_LATE: "WeakKeyDictionary[ModuleAnalysis, tuple[Optional[str]]]" = WeakKeyDictionary()


def preset_module_facts(module: ModuleAnalysis, reads_after_super: frozenset[str], uses_instance: bool) -> None:
    """What the two module-wide questions above answer for a whole file, for a part of it
    analysed on its own (``analysis/chunks.py``)."""
    _BASES_READ_AFTER_SUPER[module] = reads_after_super
    _READS_INSTANCE_LATE[module] = (_late_reader(module, uses_instance),)


@lru_cache(maxsize=64)
def _conftest_uses_instance_in_teardown(conftest: ModuleAnalysis) -> bool:
    """A conftest is asked about once for every test file below it. Keyed by conftests only
    (few, and cached by ``load_module`` anyway), so no test file's tree is kept alive."""
    return module_uses_instance_in_teardown(conftest)


def module_uses_instance_in_teardown(module: ModuleAnalysis) -> bool:
    for func in module.top_level:
        if func.is_class:
            continue
        nodes = list(ast.walk(func.node))
        uses = [n.lineno for n in nodes if isinstance(n, ast.Attribute) and n.attr == "instance"]
        if not uses:
            continue
        yields = [n.lineno for n in nodes if isinstance(n, (ast.Yield, ast.YieldFrom))]
        finalizer = any(isinstance(n, ast.Attribute) and n.attr == "addfinalizer" for n in nodes)
        if finalizer or (yields and max(uses) > min(yields)):
            return True
    return False


def needs_release(cls: Def, context: Context) -> bool:
    """Whether a pytest-style test class stores state on ``self`` that its teardown (own or
    inherited) does not release."""
    keeps_state, released = _state_facts(cls, context)
    if not keeps_state:
        return False
    bases = resolve_bases(cls, context.module).known
    if any(b.index in context.releasing for b in bases if b.module is context.module):
        return False  # a base's teardown is being made to release (all of) it
    return not released


def _state_facts(cls: Def, context: Context) -> tuple[bool, bool]:
    """What ``needs_release`` reads from the code alone, worked out once per class: MSF002
    and MSF006 both ask, and only which teardowns are planned to release changes between."""
    facts = _STATE_FACTS.setdefault(context.module, {})
    if cls.index not in facts:
        facts[cls.index] = _read_state_facts(cls, context)
    return facts[cls.index]


def _read_state_facts(cls: Def, context: Context) -> tuple[bool, bool]:
    """(the class keeps state on ``self``, its own or inherited teardown releases it all)."""
    if context.is_unittest(cls) or any(
        isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in s.targets)
        for s in cls.node.body
    ):
        return False, False
    attributes = state_attributes(cls, context)
    if not attributes:
        return False, False
    bases = resolve_bases(cls, context.module).known
    teardowns = [c.methods()[TEARDOWN] for c in [cls, *bases] if TEARDOWN in c.methods()]
    return True, any(releases_state(t, attributes) for t in teardowns)


_STATE_FACTS: "WeakKeyDictionary[ModuleAnalysis, dict[int, tuple[bool, bool]]]" = WeakKeyDictionary()


def _reads_self(teardown: Def) -> bool:
    """The teardown uses an attribute of ``self`` (its own release, ``self.__dict__``, aside)."""
    return any(_self_attribute(n) not in (None, "__dict__") for n in ast.walk(teardown.node))


def _runs_twice_reading_self(cls: Def, context: Context) -> Optional[str]:
    """The enclosing test class, when this nested class's teardown reads ``self``: pytest runs
    an enclosing class's ``teardown_method`` fixture on the nested tests' instances too, so the
    nested class's teardown runs a second time, after the release emptied ``self``."""
    enclosing = next((p for p in cls.ancestors if p in context.test_classes and not context.is_unittest(p)), None)
    if enclosing is None:
        return None
    teardowns = [
        c.methods()[TEARDOWN] for c in [cls, *resolve_bases(cls, context.module).known] if TEARDOWN in c.methods()
    ]
    return enclosing.name if any(_reads_self(t) for t in teardowns) else None


def release_blocker(cls: Def, context: Context) -> Optional[str]:
    """Why releasing this class's state is not safe to do automatically, if it is not."""
    if _uses_self_after_super(cls, context.module):
        return "a subclass's `teardown_method` uses `self` after calling this one"
    enclosing = _runs_twice_reading_self(cls, context)
    if enclosing is not None:
        return f"its `teardown_method` reads `self` and pytest runs it twice, once more for `{enclosing}`"
    late = _reads_instance_late(context.module)
    if late is not None:
        return f"a fixture in `{late}` uses `request.instance` in its teardown, after `teardown_method`"
    return None


class ReleaseState(Rule):
    code = "MSF006"
    name = "release-state"
    valid = (
        "import gc\nfrom unittest.mock import MagicMock\n\n\nclass TestA:\n    def setup_method(self):\n"
        "        self.m = MagicMock()\n\n    def teardown_method(self):\n        self.__dict__.clear()\n"
        "        gc.collect()\n\n    def test_a(self):\n        assert self.m\n",
    )
    invalid = (
        (
            "import gc\nfrom unittest.mock import MagicMock\n\n\nclass TestA:\n    def setup_method(self):\n"
            "        self.m = MagicMock()\n\n    def teardown_method(self):\n        gc.collect()\n\n"
            "    def test_a(self):\n        assert self.m\n",
            "import gc\nfrom unittest.mock import MagicMock\n\n\nclass TestA:\n    def setup_method(self):\n"
            "        self.m = MagicMock()\n\n    def teardown_method(self):\n        self.__dict__.clear()\n"
            "        gc.collect()\n\n    def test_a(self):\n        assert self.m\n",
        ),
    )

    def check(self, context: Context) -> Iterator[Finding]:
        for cls in context.test_classes:
            if not (context.needs_pattern(cls) or cls.index in context.teardown_writes):
                continue
            if context.suppressed(self.code, cls) or not needs_release(cls, context):
                continue
            message = f"teardown of `{cls.name}` does not release the state its tests keep on `self`"
            blocker = release_blocker(cls, context)
            if blocker is not None:
                yield context.finding(self.code, cls.node, f"{message}; release it by hand ({blocker})")
            elif cls.index in context.teardown_writes:
                # MSF002's teardown for this class includes the release.
                yield context.finding(self.code, cls.node, message, Fix(()))
            elif TEARDOWN in cls.methods():
                own = cls.methods()[TEARDOWN]
                collect, _ = context.spell(GC_COLLECT)
                fix = Fix((AppendStatements(own.index, f"{RELEASE}\n", before=collect),))
                context.releasing.add(cls.index)
                yield context.finding(self.code, own.node, message, fix)
            else:
                # MSF002 is off (or leaves this class alone): a teardown that only releases.
                bases = resolve_bases(cls, context.module)
                inherited = next((b.methods()[TEARDOWN] for b in bases.known if TEARDOWN in b.methods()), None)
                if inherited is None and bases.unknown:
                    hint = f"cannot tell whether base `{bases.unknown[0]}` defines `{TEARDOWN}`"
                    yield context.finding(self.code, cls.node, f"{message}; add a `{TEARDOWN}` that clears it ({hint})")
                    continue
                context.releasing.add(cls.index)
                fix = Fix((new_teardown(cls, inherited, [RELEASE]),))
                yield context.finding(self.code, cls.node, message, fix)
