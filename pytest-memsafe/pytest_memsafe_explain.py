"""``--memsafe-explain``: where each process's memory went, for ``pytest_memsafe``'s report.

Imported by ``pytest_memsafe`` only when ``--memsafe-explain`` is given. For every test it notes,
at almost no cost, the process's RSS after the test, the modules first imported during it and
what the test's class instance still holds once the test is done (pytest keeps every instance
until the session ends). For a sample of the tests, as many as fit in ``SAMPLE_BUDGET`` of the
process's CPU time, it also finds the gc-tracked objects the test made that survived it, and
what keeps them: the test's instance (``self``), a newly imported module, a module's global or
a class attribute (a cache, a registry), pytest's own bookkeeping, or something else.

How a sample works: before the test, ``gc.freeze()`` moves every object alive into the
permanent generation, which the collector and ``gc.get_objects()`` skip. After the test (its
teardown done), ``gc.collect()`` frees the test's garbage in reference cycles (counted: that is
what MSF002 and ``--memsafe-gc`` free sooner) and ``gc.get_objects()`` returns exactly the
tracked objects the test made and left alive, without walking the rest of the heap. Then
``gc.unfreeze()`` puts everything back. Only finding who holds the survivors (one
``gc.get_referrers`` call, or two) walks the whole heap. Objects the collector does not track
(``str``, ``bytes``, numbers) are counted only where a surviving container holds them.

Which tests are sampled: at most ``SAMPLE_BUDGET`` (8%) of the process's CPU time so far, plus
``SAMPLE_ALLOWANCE`` (0.3 s), goes to sampling. One test of each test class (or of a file's test
functions) comes first, and not the first test of a class that has more: the first one also pays
for what is loaded once and cached. Per-test numbers are scaled up per class (its samples' mean
times its tests). What a sampled test itself sees: the heap frozen while it runs, so in it
``gc.get_objects()`` and ``gc.get_referrers()`` see only what the test made, and
``gc.get_freeze_count()`` is not 0; a test that calls ``gc.freeze()``/``gc.unfreeze()`` itself
spoils that sample.

At the end of the session two walks give sizes that are not estimates: what the test-class
instances still alive keep that nothing else refers to (the instances' ``__dict__``; at most
``MAX_INSTANCES`` instances, evenly spread, scaled up; at most ``END_LIMIT`` objects) and what
each module global or class attribute found holding a sampled test's objects holds now. The
walks stop at modules, functions, code and classes (a mock's own subclass excepted).
"""

from __future__ import annotations

import gc
import heapq
import sys
import time
import types
import weakref
from collections import Counter
from typing import Any, Callable

import pytest

# Share of the process's CPU time that sampling may take; a test is sampled when the time spent
# sampling so far is under this share of the time the process has run since the plugin started.
SAMPLE_BUDGET = 0.08
# CPU seconds sampling may take on top of the budget, so a short run gets some samples too.
SAMPLE_ALLOWANCE = 0.3
# A test that leaves more survivors than this is counted by type only.
MAX_ANALYSED = 200_000
# Holders looked up per sample (one heap walk, whose cost grows with the number looked up).
MAX_ENTRIES = 16
# Untracked objects (str, bytes, numbers) held by a survivor are counted with it, except the ones
# that are usually shared and not made by the test: identifiers (attribute names, keys), small ints.
_SHARED = (None, True, False, Ellipsis, NotImplemented, "", b"", ())
# Objects walked at the end to size what test instances and named holders keep (per process).
END_LIMIT = 200_000
# Test-class instances whose state is walked at the end (evenly spread; the bytes are scaled up).
MAX_INSTANCES = 100
MAX_SERIES = 2000  # RSS points kept per process for the chart: the largest of each bucket
TOP = 6
PYTEST_PACKAGES = ("_pytest", "pytest", "pluggy", "xdist", "execnet", "py", "iniconfig")
CATEGORIES = ("self", "imports", "module state", "pytest", "other")
_C_SIZEOF = (types.MethodDescriptorType, types.WrapperDescriptorType, types.BuiltinFunctionType)


def _mib(size: float) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module in (None, "builtins") else f"{module}.{name}"


def _is_mock_type(cls: type) -> bool:
    mock = sys.modules.get("unittest.mock")
    return mock is not None and issubclass(cls, mock.NonCallableMock)


class _Sizer:
    """``sys.getsizeof`` without running Python code: a mock records a ``__sizeof__`` call (and a
    later assertion on its calls would see it), and a class's own ``__sizeof__`` may do anything."""

    def __init__(self) -> None:
        # A mock's own subclass is never cached: the cache must not keep a test's classes alive.
        self.native: dict[type, bool] = {}

    def __call__(self, obj: object) -> int:
        cls = type(obj)
        native = self.native.get(cls)
        if native is None:
            found = next((vars(k)["__sizeof__"] for k in cls.__mro__ if "__sizeof__" in vars(k)), None)
            mock = _is_mock_type(cls)
            native = isinstance(found, _C_SIZEOF) and not mock
            if not mock:
                self.native[cls] = native
        try:
            return sys.getsizeof(obj, 0) if native else object.__sizeof__(obj)
        except Exception:
            return 0


def _shared(obj: object) -> bool:
    """An untracked object a test most likely did not make: a singleton, an identifier, a small int."""
    cls = type(obj)
    if cls is str:
        return obj.isidentifier() or not obj  # type: ignore[attr-defined]
    if cls is int:
        return -5 <= obj <= 256  # type: ignore[operator]
    return cls in (type(None), bool, type(Ellipsis), type(NotImplemented)) or (cls in (bytes, tuple) and not obj)


def _global_getter(module: str, name: str) -> Callable[[], Any]:
    """The value of a module's global at the time of the call (no reference kept until then)."""
    return lambda: getattr(sys.modules.get(module), name, None)


def _attribute_getter(owner: Any, name: str | None) -> Callable[[], Any]:
    """A class's attribute (or, with no name, the object itself) later, if it is still alive."""
    try:
        ref = weakref.ref(owner)
    except TypeError:
        return lambda: None
    return lambda: ref() if name is None else vars(ref()).get(name) if ref() is not None else None


_NOT_WALKED = frozenset(
    {types.ModuleType, types.FunctionType, types.CodeType, types.BuiltinFunctionType, type(None), bool}
)


def _closure(roots: list[Any], limit: int) -> tuple[dict[int, Any], bool]:
    """id -> object for everything reachable from roots (at most limit objects), not going into
    the program's shared parts (modules, functions, code, classes other than a mock's own
    subclass) nor into shared constants (identifiers, small ints)."""
    members: dict[int, Any] = {}
    stack = list(roots)
    pop, push, referents = stack.pop, stack.extend, gc.get_referents
    while stack:
        obj = pop()
        key = id(obj)
        if key in members:
            continue
        cls = type(obj)
        if cls in _NOT_WALKED:
            continue
        if cls is str or cls is int:
            if not _shared(obj):
                members[key] = obj
            continue
        if isinstance(obj, type) and not _is_mock_type(obj):
            continue
        members[key] = obj
        if len(members) >= limit:
            return members, True
        push(referents(obj))
    return members, False


def _extra_refs(members: dict[int, Any], inner: Counter[int]) -> dict[int, int]:
    """id -> references to the member beyond the members' own (and this function's)."""
    return {key: sys.getrefcount(obj) - inner[key] for key, obj in members.items()}


def exclusive_size(roots: list[Any], size: Callable[[object], int], limit: int) -> tuple[int, Counter[str], bool]:
    """Bytes (and types) of what only roots keep alive: what would be freed if they let go.
    An object something else also refers to stays, with all it refers to."""
    members, truncated = _closure(roots, limit)
    inner: Counter[int] = Counter()
    for obj in members.values():
        for ref in gc.get_referents(obj):
            if id(ref) in members:
                inner[id(ref)] += 1
    probe: list[Any] = []
    baseline = _extra_refs({id(probe): probe}, Counter())[id(probe)] - 1  # minus `probe` itself
    root_ids = {id(root) for root in roots}
    extra = _extra_refs(members, inner)
    stack = [members[key] for key, count in extra.items() if count > baseline and key not in root_ids]
    retained: set[int] = set(root_ids)
    while stack:
        obj = stack.pop()
        if id(obj) in retained or id(obj) not in members:
            continue
        retained.add(id(obj))
        stack.extend(gc.get_referents(obj))
    kinds: Counter[str] = Counter()
    total = 0
    for key, obj in members.items():
        if key not in retained:
            nbytes = size(obj)
            total += nbytes
            kinds[_kind(obj)] += nbytes
    return total, kinds, truncated


_KINDS: dict[type, str] = {}


def _kind(obj: object) -> str:
    """A survivor's type as the report names it (a mock's own subclass by its mock class)."""
    cls = type(obj)
    kind = _KINDS.get(cls)
    if kind is not None:
        return kind
    if cls is type:
        return "mock class" if _is_mock_type(obj) else "class"  # type: ignore[arg-type]
    if _is_mock_type(cls):
        return cls.__name__  # not cached: one class per mock
    kind = _KINDS[cls] = cls.__name__ if cls.__module__ in ("builtins", "unittest.mock") else _type_name(cls)
    return kind


def _stratum(item: pytest.Item) -> str:
    """A test class (``file::Class``), or the test functions of a file (``file``)."""
    cls = getattr(item, "cls", None)
    return item.nodeid.split("::")[0] + (f"::{cls.__qualname__}" if cls is not None else "")


def _inner_refs(survivors: list[Any], new: dict[int, Any]) -> Counter[int]:
    """id -> how many references the survivors hold to that survivor."""
    inner: Counter[int] = Counter()
    for obj in survivors:
        for ref in gc.get_referents(obj):
            if id(ref) in new:
                inner[id(ref)] += 1
    return inner


def _held_from_outside(
    survivors: list[Any], new: dict[int, Any], owner: dict[int, str], state: dict[str, Any] | None
) -> list[Any]:
    """Unclaimed survivors with more references than the survivors, the test's instance state and
    this code hold: something made before the test (a module, a cache, pytest) holds them."""
    inner = _inner_refs(survivors, new)
    if state:  # (no loop variable: it would hold the last value)
        inner.update(id(value) for value in list(state.values()))
    baseline = _baseline_refs()
    return [
        obj
        for obj in survivors
        if id(obj) in new
        and id(obj) not in owner
        and type(obj) is not weakref.ReferenceType  # keeps nothing alive
        and obj is not state  # the test's instance's own __dict__, made when setup_method set it
        and sys.getrefcount(obj) - inner[id(obj)] > baseline
    ]


def _baseline_refs() -> int:
    """References ``_held_from_outside`` itself holds to a survivor while it counts them: the
    survivors list, the ``new`` dict, the comprehension's variable and ``sys.getrefcount``'s
    argument (the count differs between Python versions)."""
    probe: list[Any] = []
    survivors, new = [probe], {id(probe): probe}
    counts = [sys.getrefcount(obj) for obj in survivors if id(obj) in new]
    return counts[0] - 1  # minus `probe` itself


class _Claimer:
    """Gives survivors to categories (no closure: its cells would be made before the snapshot
    of the survivors, and be counted among them)."""

    def __init__(self, new: dict[int, Any], size: _Sizer, own: set[int]) -> None:
        self.new = new
        self.size = size
        self.owner: dict[int, str] = {}
        self.kept: dict[str, list[Any]] = {category: [] for category in CATEGORIES}
        self.extra: Counter[str] = Counter()  # bytes of untracked objects held, per category
        # Never walked into: the explainer's own containers (an untracked dict of ints is not
        # among the survivors, but the walk could reach it).
        mine = [self, vars(self), new, self.owner, self.kept, self.extra, *self.kept.values()]
        self.counted: set[int] = own | {id(obj) for obj in mine}

    def claim(self, roots: Any, category: str, weak: bool = False) -> int:
        """Give the not yet claimed survivors reachable from roots to category; their bytes.
        Weak references are left for the end (unless weak): they go with what they refer to."""
        new, owner, size = self.new, self.owner, self.size
        total = 0
        stack = list(roots)
        while stack:
            obj = stack.pop()
            key = id(obj)
            if key in new:
                if key in owner or (not weak and type(obj) is weakref.ReferenceType):
                    continue
                owner[key] = category
                self.kept[category].append(obj)
                total += size(obj)
                stack.extend(gc.get_referents(obj))
            elif key not in self.counted and not gc.is_tracked(obj) and not _shared(obj):
                self.counted.add(key)
                nbytes = size(obj)
                self.extra[category] += nbytes
                total += nbytes
        return total


class Explainer:
    """Registered next to ``pytest_memsafe.MemsafePlugin`` (after it, so this wrapper runs
    outside the one that measures a test's RSS growth: sampling is not counted as growth)."""

    def __init__(self, config: pytest.Config, rss: Callable[[], int], rss_before: Any, collect_garbage: bool) -> None:
        self.config = config
        self.rss = rss
        self.rss_before = rss_before  # the stash key the main plugin keeps RSS before setup under
        self.collect_garbage = collect_garbage
        self.sizer = _Sizer()
        self.cpu_start = time.process_time()
        self.modules_at_start = len(sys.modules)
        self.known_modules = set(sys.modules)
        self.first_test_rss: int | None = None
        self.modules_at_first_test = 0
        self.tests = 0
        self.series: list[int] = []
        self.series_step = 1
        self.pending: list[int] = []
        # Imports during tests.
        self.import_tests = 0
        self.import_growth = 0
        self.imported = 0
        self.imported_packages: Counter[str] = Counter()
        self.import_top: list[tuple[int, str, int]] = []  # min-heap (growth, nodeid, modules)
        # Test-class instances that still hold state after their test.
        self.instances = 0
        self.instance_attrs = 0
        self.mocks_on_self: Counter[str] = Counter()
        self.classes_holding: Counter[str] = Counter()  # "file::Class" -> attributes kept
        # Sampled tests.
        self.sampled = 0
        self.sample_cpu = 0.0
        self.garbage_objects = 0
        self.garbage_bytes = 0
        self.kept_bytes: Counter[str] = Counter()  # category -> bytes
        self.kept_objects: Counter[str] = Counter()
        self.kept_types: dict[str, Counter[str]] = {category: Counter() for category in CATEGORIES}
        self.type_bytes: dict[str, Counter[str]] = {category: Counter() for category in CATEGORIES}
        self.holders: Counter[str] = Counter()  # "module state" and "other" holders -> bytes
        self.holder_paths: dict[str, Callable[[], Any]] = {}  # holder -> how to find it at the end
        self.instance_refs: list[weakref.ref[Any]] = []  # test-class instances that kept state
        # Estimates are made per stratum (a test class, or a file's test functions): tests of one
        # class keep much the same, and the tests that are cheap to sample are not the typical ones.
        self.strata_tests: Counter[str] = Counter()
        self.strata_sizes: Counter[str] = Counter()  # tests per stratum in the whole collection
        self.strata_sampled: Counter[str] = Counter()
        self.strata_bytes: dict[str, Counter[str]] = {}  # stratum -> category or "garbage" -> bytes
        self.uncounted_tests = 0  # samples with more survivors than MAX_ANALYSED

    # --- hooks ---------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        if self.first_test_rss is None:
            self.first_test_rss = self.rss()
            self.modules_at_first_test = len(sys.modules)
            self._new_modules()
            self.strata_sizes = Counter(map(_stratum, item.session.items))
        modules = len(sys.modules)
        started = 0.0
        stratum = _stratum(item)
        self.strata_tests[stratum] += 1
        if self._sample_now(stratum):
            started = time.process_time()
            gc.collect(1)  # young garbage would wait in the frozen generation until a full collection
            gc.freeze()
        try:
            return (yield)
        finally:
            frozen = started > 0.0
            try:
                self._after(item, modules, stratum if frozen else None)
            finally:
                if frozen:
                    gc.unfreeze()
                    self.sample_cpu += time.process_time() - started

    # --- every test --------------------------------------------------------------------------

    def _sample_now(self, stratum: str) -> bool:
        allowed = SAMPLE_ALLOWANCE + SAMPLE_BUDGET * (time.process_time() - self.cpu_start)
        # One test of each class (or of a file's test functions) first, but not its first test when
        # it has more: the first one also pays for what is loaded once and cached (like an import).
        # More of a stratum already sampled only while half the budget is unspent, so the classes
        # that come later get theirs.
        first_of_many = self.strata_tests[stratum] == 1 and self.strata_sizes[stratum] > 1
        preferred = not self.strata_sampled[stratum] and not first_of_many
        return self.sample_cpu <= (allowed if preferred else allowed / 2)

    def _new_modules(self) -> list[str]:
        if len(sys.modules) == len(self.known_modules):
            return []
        new = [name for name in list(sys.modules) if name not in self.known_modules]
        self.known_modules.update(new)
        return new

    def _after(self, item: pytest.Item, modules_before: int, stratum: str | None) -> None:
        self.tests += 1
        rss = self.rss()
        growth = rss - item.stash.get(self.rss_before, rss)
        new_modules = self._new_modules() if len(sys.modules) != modules_before else []
        state = self._instance_state(item)
        if stratum is not None:  # first: the bookkeeping below makes objects of its own
            self._sample(state, new_modules, stratum)
        self._add_point(rss)
        if new_modules:
            self.import_tests += 1
            self.import_growth += max(growth, 0)
            self.imported += len(new_modules)
            self.imported_packages.update(name.partition(".")[0] for name in new_modules)
            entry = (growth, item.nodeid, len(new_modules))
            if len(self.import_top) < TOP:
                heapq.heappush(self.import_top, entry)
            else:
                heapq.heappushpop(self.import_top, entry)
        if state:
            try:
                self.instance_refs.append(weakref.ref(item.instance))
            except TypeError:
                pass
            self.instances += 1
            self.instance_attrs += len(state)
            mocks = [type(value).__name__ for value in list(state.values()) if _is_mock_type(type(value))]
            self.mocks_on_self.update(mocks)
            self.classes_holding[f"{item.path.name}::{item.cls.__qualname__}"] += len(state)

    @staticmethod
    def _instance_state(item: pytest.Item) -> dict[str, Any] | None:
        cls = getattr(item, "cls", None)
        unittest = sys.modules.get("unittest")
        if cls is None or (unittest is not None and issubclass(cls, unittest.TestCase)):
            return None  # as pytest_memsafe.release_instance_state: nothing kept, or a TestCase
        return getattr(item.instance, "__dict__", None)

    def _add_point(self, rss: int) -> None:
        self.pending.append(rss)
        if len(self.pending) < self.series_step:
            return
        self.series.append(max(self.pending))
        self.pending.clear()
        if len(self.series) >= MAX_SERIES:  # halve the resolution: each point the max of two
            self.series = [max(self.series[i : i + 2]) for i in range(0, len(self.series), 2)]
            self.series_step *= 2

    # --- sampled tests -------------------------------------------------------------------------

    def _sample(self, state: dict[str, Any] | None, new_modules: list[str], stratum: str) -> None:
        size = self.sizer
        made = gc.get_objects()  # the test's objects, garbage included: the rest is frozen
        made_bytes = sum(map(size, made))
        del made
        self.garbage_objects += gc.collect()
        survivors = gc.get_objects()
        self.sampled += 1
        self.strata_sampled[stratum] += 1
        found = self.strata_bytes.setdefault(stratum, Counter())
        if len(survivors) > MAX_ANALYSED:
            self.uncounted_tests += 1
            survivors_bytes = sum(map(size, survivors))
            self.garbage_bytes += max(made_bytes - survivors_bytes, 0)
            found["garbage"] += max(made_bytes - survivors_bytes, 0)
            found["other"] += survivors_bytes
            self._count("other", survivors)
            self.holders[f"(a test left {len(survivors):,} objects: counted by type only)"] += survivors_bytes
            return
        ignore = id(new_modules)
        new = {id(obj): obj for obj in survivors if id(obj) != ignore}
        claimer = _Claimer(new, size, self._own_ids() | {id(survivors)})
        claim, owner, kept, extra = claimer.claim, claimer.owner, claimer.kept, claimer.extra
        for name in new_modules:
            module = sys.modules.get(name)
            if module is not None:
                claim([module], "imports")
        # What something outside the test holds stays when the instance lets go of its state, so
        # it is claimed before what only `self` holds: that part is what MSF006 would free.
        entries = _held_from_outside(survivors, new, owner, state)
        if entries:
            self._claim_held(entries, new, claim, survivors)
        del entries
        if state:
            claim([state, *state.values()], "self")  # the instance's __dict__ is made during the test
        for obj in survivors:  # a weak reference to what is claimed (a class's subclass registry)
            if type(obj) is weakref.ReferenceType and id(obj) in new and id(obj) not in owner:
                target = owner.get(id(obj()))
                if target is not None:
                    owner[id(obj)] = target
                    kept[target].append(obj)
        rest = [obj for obj in survivors if id(obj) in new and id(obj) not in owner]
        if rest:
            self.holders["(held from C code or a frame, or only in cycles)"] += claim(rest, "other", weak=True)
        del rest
        survivors_bytes = 0
        for category, objs in kept.items():
            nbytes = sum(map(size, objs)) + extra[category]
            survivors_bytes += nbytes
            self.kept_bytes[category] += nbytes
            found[category] += nbytes
            self.kept_objects[category] += len(objs)
            self._count(category, objs)
        garbage = max(made_bytes - (survivors_bytes - sum(extra.values())), 0)
        self.garbage_bytes += garbage
        found["garbage"] += garbage

    def _count(self, category: str, objs: list[Any]) -> None:
        size = self.sizer
        types_ = self.kept_types[category]
        nbytes = self.type_bytes[category]
        for obj in objs:
            key = _kind(obj)
            types_[key] += 1
            nbytes[key] += size(obj)

    def _claim_held(self, entries: list[Any], new: dict[int, Any], claim: Any, survivors: list) -> None:
        """Find who outside the test's objects holds the largest entries, and name it."""
        reach: list[tuple[int, int]] = []
        scratch: dict[int, str] = {}
        for index, entry in enumerate(entries):
            reach.append((self._reach_size(entry, new, scratch), index))
        reach.sort(reverse=True)
        top = [entries[index] for _, index in reach[:MAX_ENTRIES]]
        gc.unfreeze()  # get_referrers skips the frozen generation, where the holders are
        try:
            labels = self._holders(top, new, exclude=(survivors, entries, top, reach))
        finally:
            gc.freeze()
        for entry in top:
            category, label = labels.get(id(entry), ("other", "(held from C code or a frame, or only in cycles)"))
            self.holders[label] += claim([entry], category)
        self.holders["(smaller holders, not looked up)"] += claim(entries, "other")

    def _reach_size(self, entry: Any, new: dict[int, Any], seen: dict[int, str]) -> int:
        total = 0
        stack = [entry]
        while stack:
            obj = stack.pop()
            key = id(obj)
            if key not in new or key in seen:
                continue
            seen[key] = ""
            total += self.sizer(obj)
            stack.extend(gc.get_referents(obj))
        return total

    def _holders(self, entries: list[Any], new: dict[int, Any], exclude: tuple) -> dict[int, tuple[str, str | None]]:
        """entry id -> (category, label) for what outside the test holds each entry."""
        skip = {id(obj) for obj in exclude} | {id(new), id(sys._getframe())} | self._own_ids()
        entry_ids = {id(entry) for entry in entries}
        module_dicts = {id(vars(module)): name for name, module in list(sys.modules.items()) if module is not None}
        result: dict[int, tuple[str, str | None]] = {}
        unresolved: dict[int, tuple[Any, list[int]]] = {}  # holder id -> (holder, entry ids)
        for holder in gc.get_referrers(*entries):
            key = id(holder)
            if key in new or key in skip or isinstance(holder, types.FrameType):
                continue
            if type(holder) is tuple and len(holder) == len(entries) and all(a is b for a, b in zip(holder, entries)):
                continue  # get_referrers' own arguments
            held = [id(ref) for ref in gc.get_referents(holder) if id(ref) in entry_ids and id(ref) not in result]
            if not held:
                continue
            if key in module_dicts:
                names = [name for name, value in list(holder.items()) if id(value) in held]
                label = f"{module_dicts[key]}.{names[0] if names else '?'}"
                if names:
                    self.holder_paths.setdefault(label, _global_getter(module_dicts[key], names[0]))
                for ref in held:
                    result[ref] = (self._module_category(module_dicts[key]), label)
                continue
            category = self._holder_category(holder)
            if category is not None:
                for ref in held:
                    result[ref] = (category, f"{_type_name(type(holder))}")
                continue
            unresolved[key] = (holder, held)
        if unresolved:
            self._second_level(unresolved, module_dicts, result, new, skip)
        return result

    def _second_level(self, unresolved: dict, module_dicts: dict[int, str], result: dict, new: dict, skip: set) -> None:
        """Containers (a dict, a list, an lru_cache's dict) held by a module or a class."""
        holders = [holder for holder, _ in unresolved.values()]
        found: dict[int, str] = {}
        for outer in gc.get_referrers(*holders):
            key = id(outer)
            if key in new or key in skip or isinstance(outer, types.FrameType):
                continue
            if type(outer) is tuple and len(outer) == len(holders):
                continue
            inner_ids = {id(ref) for ref in gc.get_referents(outer)}
            for hid in list(unresolved):
                if hid not in inner_ids or hid in found:
                    continue
                holder = unresolved[hid][0]
                if key in module_dicts:
                    names = [name for name, value in list(outer.items()) if value is holder]
                    found[hid] = f"{module_dicts[key]}.{names[0] if names else '?'}"
                    if names:
                        self.holder_paths.setdefault(found[hid], _global_getter(module_dicts[key], names[0]))
                elif isinstance(outer, type):
                    names = [name for name, value in list(vars(outer).items()) if value is holder]
                    found[hid] = f"{_type_name(outer)}.{names[0] if names else '?'} (a class attribute)"
                    if names:
                        self.holder_paths.setdefault(found[hid], _attribute_getter(outer, names[0]))
                elif type(outer).__name__ == "_lru_cache_wrapper":
                    found[hid] = (
                        f"{getattr(outer, '__module__', '?')}.{getattr(outer, '__qualname__', '?')} (lru_cache)"
                    )
                    self.holder_paths.setdefault(found[hid], _attribute_getter(outer, None))
                elif type(outer) is dict and hid not in found:
                    # A class's namespace: the type refers to it.
                    continue
        for hid, (holder, held) in unresolved.items():
            label = found.get(hid)
            if label is not None:
                module = label.partition(" ")[0]
                category = self._module_category(module)
            else:
                category = self._holder_category(holder, default="other")
                label = f"a {_type_name(type(holder))} no module global refers to"
            for ref in held:
                result.setdefault(ref, (category, label))

    def _own_ids(self) -> set[int]:
        """This explainer's own containers, which hold what they count, not what a test kept."""
        sizer = self.sizer
        own = [self, vars(self), sizer, vars(sizer), sizer.native]
        own += [value for value in vars(self).values() if isinstance(value, (list, dict, set, Counter))]
        own += [*self.kept_types.values(), *self.type_bytes.values()]
        return {id(obj) for obj in own}

    @staticmethod
    def _module_category(dotted: str) -> str:
        return "pytest" if dotted.partition(".")[0] in PYTEST_PACKAGES else "module state"

    @staticmethod
    def _holder_category(holder: Any, default: str | None = None) -> str | None:
        module = (getattr(type(holder), "__module__", None) or "").partition(".")[0]
        if module in PYTEST_PACKAGES:
            return "pytest"
        if isinstance(holder, types.ModuleType):
            return "module state"
        return default

    # --- the report ------------------------------------------------------------------------------

    def write(self, terminalreporter: Any, report: dict[str, Any], terse: bool) -> None:
        """The explanation in words and the chart (terse: for a JSON report, only the chart file)."""
        write = terminalreporter.write_line
        ran = [process for process in report["processes"] if process.get("tests")]
        if not terse:
            terminalreporter.write_sep("=", "memsafe: where the memory went")
            for process in report["processes"]:
                for line in explain_lines(process, self.collect_garbage):
                    write(line)
            text, note = chart(ran, colorless=not getattr(terminalreporter, "hasmarkup", False))
            for line in (text or "").splitlines():
                write(line)
            if note:
                write(f"memsafe: {note}")
        path = self.config.getoption("memsafe_chart")
        if path is not None:
            write(f"memsafe: {write_chart(ran, self.config.invocation_params.dir / path)}")

    def _estimate(self, key: str) -> int:
        """Bytes for all tests: per stratum, its samples' mean times its tests; the mean of all
        samples for the tests of strata never sampled."""
        total = 0.0
        unsampled = 0
        for stratum, tests in self.strata_tests.items():
            sampled = self.strata_sampled[stratum]
            if sampled:
                total += self.strata_bytes[stratum][key] / sampled * tests
            else:
                unsampled += tests
        if unsampled and self.sampled:
            total += unsampled * sum(found[key] for found in self.strata_bytes.values()) / self.sampled
        return int(total)

    def _at_end(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """What the test-class instances alive now keep that nothing else does (what MSF006 and
        --memsafe-gc free), and what the module-state holders found by sampling hold now."""
        # The instances, not their __dict__: on Python 3.13 an instance's attributes are its own
        # (inline values), and its materialized __dict__ does not refer to them for the collector.
        states = []
        instance = None
        for ref in self.instance_refs:
            instance = ref()
            if getattr(instance, "__dict__", None):
                states.append(instance)
        del instance
        alive = len(states)
        step = max(len(states) / MAX_INSTANCES, 1.0)
        states = [states[int(index * step)] for index in range(min(len(states), MAX_INSTANCES))]
        nbytes, kinds, truncated = exclusive_size(states, self.sizer, END_LIMIT)
        scale = alive / len(states) if states else 0.0
        walked = len(states)
        del states
        kept_by_self = {
            "instances_alive": alive,
            "instances_walked": walked,
            "only_they_keep_bytes": int(nbytes * scale),
            "types": [{"type": name, "bytes": int(size * scale)} for name, size in kinds.most_common(TOP)],
            "truncated": truncated,
        }
        holders = []
        budget = END_LIMIT  # objects, for all holders together, the largest in the samples first
        for label, _ in self.holders.most_common():
            getter = self.holder_paths.get(label)
            if getter is None or self._module_category(label) != "module state" or len(holders) >= TOP:
                continue
            obj = getter()
            if obj is None or budget <= 0:
                continue
            members, truncated = _closure([obj], budget)
            budget -= len(members)
            holders.append({"holder": label, "bytes": sum(map(self.sizer, members.values())), "truncated": truncated})
            del members, obj
        holders.sort(key=lambda holder: holder["bytes"], reverse=True)
        return kept_by_self, holders[:TOP]

    def summary(self, start_rss: int, end_rss: int, tests: int) -> dict[str, Any]:
        """This process's explanation, JSON types only (xdist sends it to the controller)."""
        started = time.process_time()
        kept_by_self, module_holders = self._at_end()
        end_cpu = time.process_time() - started
        series = self.series + ([max(self.pending)] if self.pending else [])
        first = self.first_test_rss if self.first_test_rss is not None else end_rss
        kept = {
            category: {
                "sampled_bytes": self.kept_bytes[category],
                "sampled_objects": self.kept_objects[category],
                "estimated_bytes": self._estimate(category),
                "types": [
                    {"type": name, "objects": count, "bytes": self.type_bytes[category][name]}
                    for name, count in self.kept_types[category].most_common(TOP)
                ],
            }
            for category in CATEGORIES
        }
        return {
            "collection": {
                "rss_growth": first - start_rss,
                "modules": self.modules_at_first_test - self.modules_at_start,
            },
            "imports": {
                "modules": self.imported,
                "tests": self.import_tests,
                "rss_growth": self.import_growth,
                "packages": [{"name": name, "modules": n} for name, n in self.imported_packages.most_common(TOP)],
                "top_tests": [
                    {"nodeid": nodeid, "rss_growth": growth, "modules": n}
                    for growth, nodeid, n in sorted(self.import_top, reverse=True)
                ],
            },
            "instances": {
                **kept_by_self,
                "holding_state": self.instances,
                "attributes": self.instance_attrs,
                "mocks": dict(self.mocks_on_self.most_common()),
                "classes": [{"class": name, "attributes": n} for name, n in self.classes_holding.most_common(TOP)],
            },
            "sampled": {
                "tests": self.sampled,
                "classes_and_files": len(self.strata_tests),
                "classes_and_files_sampled": len(self.strata_sampled),
                "cpu_seconds": round(self.sample_cpu, 3),
                "end_cpu_seconds": round(end_cpu, 3),
                "garbage_objects": self.garbage_objects,
                "garbage_bytes": self.garbage_bytes,
                "estimated_garbage_bytes": self._estimate("garbage"),
                "too_many_to_analyse": self.uncounted_tests,
            },
            "kept": kept,
            "module_state_holders": module_holders,
            "holders": [
                {"holder": label, "sampled_bytes": nbytes} for label, nbytes in self.holders.most_common(TOP) if nbytes
            ],
            "rss_series": {"every": self.series_step, "rss": series},
        }


# --- the controller's side: words and a chart -----------------------------------------------------


def _parts(process: dict[str, Any]) -> dict[str, int]:
    """The process's growth split into the parts the explanation can name, in bytes."""
    data = process["explain"]
    parts = {
        "collection": max(data["collection"]["rss_growth"], 0),
        "imports": data["imports"]["rss_growth"],
        "self": data["instances"]["only_they_keep_bytes"],
        "module state": sum(holder["bytes"] for holder in data["module_state_holders"]),
    }
    parts["unexplained"] = max(process["rss_growth"] - sum(parts.values()), 0)
    return parts


def explain_lines(process: dict[str, Any], collect_garbage: bool) -> list[str]:
    """The plain-words summary of one process's explanation."""
    data = process.get("explain")
    name = process["name"]
    if process.get("error") is not None:
        return [f"{name}: no explanation (the worker went down)"]
    if not process["tests"] or not data:
        return []  # the controller, or a worker that ran nothing
    parts = _parts(process)
    coll, imports, inst, sampled = data["collection"], data["imports"], data["instances"], data["sampled"]
    lines = [
        f"{name}: RSS {_signed(process['rss_growth'])} over {process['tests']} tests (from {_mib(process['start_rss'])})"
    ]
    line = f"  imports: {_signed(coll['rss_growth'])} while collecting ({coll['modules']} modules)"
    if imports["modules"]:
        packages = ", ".join(f"{p['name']} {p['modules']}" for p in imports["packages"][:4])
        line += (
            f"; {_signed(imports['rss_growth'])} in the {imports['tests']} tests that first imported "
            f"{imports['modules']} more ({packages})"
        )
    lines.append(line)
    if inst["holding_state"]:
        mocks = sum(inst["mocks"].values())
        kinds = ", ".join(f"{kind} x{count}" for kind, count in list(inst["mocks"].items())[:3])
        what = ", ".join(f"{t['type']} {_mib(t['bytes'])}" for t in inst["types"][:4])
        lines.append(
            f"  test-class instances (self): {inst['holding_state']} still hold {inst['attributes']} attributes"
            + (f", {mocks} of them mocks ({kinds})" if mocks else "")
            + f"; what only they keep ({inst['instances_walked']} walked): {_mib(inst['only_they_keep_bytes'])}"
            + (" or more" if inst["truncated"] else "")
            + (f" ({what})" if what else "")
        )
    else:
        lines.append("  test-class instances (self): none holds state after its test")
    if data["module_state_holders"]:
        holders = "; ".join(
            f"{h['holder']} {_mib(h['bytes'])}{' or more' if h['truncated'] else ''}"
            for h in data["module_state_holders"][:4]
        )
        lines.append(f"  module state that grew during sampled tests, its size now: {holders}")
    if sampled["tests"]:
        kept = data["kept"]
        per = ", ".join(
            f"{label} {_mib(kept[key]['sampled_bytes'] / sampled['tests'])}"
            for key, label in (("module state", "module state"), ("pytest", "pytest"), ("other", "elsewhere"))
            if kept[key]["sampled_objects"]
        )
        lines.append(
            f"  sampled {sampled['tests']} tests of {sampled['classes_and_files_sampled']} classes or files "
            f"(of {sampled['classes_and_files']}): per test they kept {per or 'nothing'}; garbage in reference "
            f"cycles {_mib(sampled['garbage_bytes'] / sampled['tests'])} per test"
        )
    lines.append(
        f"  not explained by Python objects above: {_mib(parts['unexplained'])} (freed memory the allocator keeps, "
        "memory outside Python objects, objects loaded once and cached)"
    )
    lines.extend("  " + line for line in recommendations(process, collect_garbage))
    return lines


def recommendations(process: dict[str, Any], collect_garbage: bool) -> list[str]:
    """What would free the growth: memsafe-fix rules, plugin options, or nothing."""
    data = process["explain"]
    parts = _parts(process)
    growth = max(process["rss_growth"], 1)
    significant = max(growth // 20, 1024**2)  # 5% of the growth, at least 1 MiB
    advice = []
    if parts["self"] >= significant and not collect_garbage:
        advice.append(
            f"-> {_mib(parts['self'])} is kept only by test-class instances: MSF006 (release-state: "
            "self.__dict__.clear() in the teardown) or --memsafe-gc frees it after each test."
        )
    garbage = data["sampled"]["estimated_garbage_bytes"]
    if garbage >= significant and not collect_garbage:
        advice.append(
            f"-> ~{_mib(garbage)} of garbage in reference cycles waits for Python's full collections: MSF002/MSF005 "
            "(gc.collect(1) in the teardown) or --memsafe-gc frees it after each test; that lowers the peak, "
            "not what is kept."
        )
    if parts["module state"] >= significant:
        holder = data["module_state_holders"][0]["holder"]
        advice.append(
            f"-> {_mib(parts['module state'])} is module state (largest: {holder}): no memsafe-fix rule frees it; "
            "clear or bound it in a fixture."
        )
    imported = parts["collection"] + parts["imports"]
    if imported >= significant:
        advice.append(
            f"-> {_mib(imported)} came with imports: nothing frees it (each worker pays it once); "
            "the pattern cannot help there."
        )
    if parts["unexplained"] >= growth // 2:
        advice.append(
            f"-> {_mib(parts['unexplained'])} is not held by Python objects the explanation sees: "
            "no memsafe-fix rule or option frees it."
        )
    if not any(line.startswith(("-> " + _mib(parts["self"]),)) for line in advice) and parts["self"] < significant:
        advice.append("-> MSF006 and --memsafe-gc would free little here: tests keep little on self.")
    return advice


def _signed(size: int) -> str:
    return ("+" if size >= 0 else "-") + _mib(abs(size))


def chart(processes: list[dict[str, Any]], colorless: bool) -> tuple[str | None, str]:
    """(the terminal chart or None, a one-line note) of RSS after each test, per process."""
    series = [(p["name"], p["explain"]["rss_series"]) for p in processes if p.get("explain")]
    series = [(name, s) for name, s in series if s["rss"]]
    if not series:
        return None, ""
    try:
        import plotext
    except ImportError:
        return None, "chart: install pytest-memsafe[chart] (plotext) for a chart of RSS per test per worker"
    try:
        figure = plotext.figure
        figure.clear()
        figure.plot_size(78, 18)
        figure.title("RSS (MiB) after each test, per process")
        for name, data in series:
            xs = [(index + 1) * data["every"] for index in range(len(data["rss"]))]
            ys = [round(rss / 1024**2, 1) for rss in data["rss"]]
            figure.draw(figure.signal(xs, ys).label(name).lines())
        return figure.build().string(colorless=colorless), ""
    except Exception as error:  # a chart must never fail the run
        return None, f"chart: plotext could not draw it ({type(error).__name__}: {error})"


def write_chart(processes: list[dict[str, Any]], path: Any) -> str:
    """Save the chart to path (.html: a web page; else text), return a one-line note."""
    text, note = chart(processes, colorless=True)
    if text is None:
        return note or "chart: no tests ran, no chart"
    import plotext

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        plotext.figure.build().save(str(path))
    except Exception as error:
        return f"chart: could not write {path} ({type(error).__name__}: {error})"
    return f"chart written to {path}"
