"""Which classes and functions pytest collects as tests, decided from source as pytest would."""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from typing import Optional

from memsafe_fix.analysis.imports import PLAIN_BASES, UNITTEST_CASES
from memsafe_fix.analysis.module import Def, ModuleAnalysis, yields
from memsafe_fix.analysis.project import imported_class


def matches_prefix_or_glob(name: str, options: tuple[str, ...]) -> bool:
    """pytest's ``python_classes``/``python_functions`` matching: a prefix, or a glob."""
    return any(
        name.startswith(option) or (any(c in option for c in "*?[") and fnmatch.fnmatch(name, option))
        for option in options
    )


@dataclass
class BaseInfo:
    """What is statically known about a class's bases."""

    unittest: bool
    # Bases defined in this file or in the project's own modules, in method resolution order,
    # nearest first (the class itself excluded). ``Def.module`` tells which file each is in.
    known: list[Def]
    # Source text of bases that cannot be resolved.
    unknown: list[str]


def resolve_bases(cls: Def, module: ModuleAnalysis, _seen: Optional[set[int]] = None) -> BaseInfo:
    """Worked out once per class and module (the rules ask about each class many times); the
    answer is shared, not to be changed."""
    if _seen is None:
        cache = module.base_infos
        key = (id(cls), cls.index)
        if key not in cache:
            cache[key] = _resolve_bases(cls, module, None)
        return cache[key]
    return _resolve_bases(cls, module, _seen)


def _resolve_bases(cls: Def, module: ModuleAnalysis, _seen: Optional[set[int]]) -> BaseInfo:
    seen = _seen if _seen is not None else {id(cls)}
    info = BaseInfo(unittest=False, known=[], unknown=[])
    for base in cls.node.bases:
        name = module.imports.qualify(base)
        if name in UNITTEST_CASES:
            info.unittest = True
            continue
        if _is_plain(base, name, module):
            continue
        found = _find_base(base, name, module)
        if found is None:
            info.unknown.append(ast.unparse(base))
            continue
        if id(found) in seen:  # a diamond: already in the list
            continue
        seen.add(id(found))
        info.known.append(found)
        inner = resolve_bases(found, found.module, seen)
        info.unittest |= inner.unittest
        info.known += inner.known
        info.unknown += inner.unknown
    if _seen is None and not info.unknown and len(info.known) > 1:
        # All found: list them in the order Python looks methods up in (a diamond's shared
        # base after every class that derives from it), not depth-first.
        order = _linearization(cls, module, frozenset())
        if order is not None and {id(d) for d in order[1:]} == {id(d) for d in info.known}:
            info.known = order[1:]
    return info


def _is_plain(base: ast.expr, name: Optional[str], module: ModuleAnalysis) -> bool:
    """``object``, ``ABC``, ``Generic[T]`` and the like: bases that define no test methods."""
    return name in PLAIN_BASES or (
        isinstance(base, ast.Subscript) and module.imports.qualify(base.value) in PLAIN_BASES
    )


def _find_base(base: ast.expr, name: Optional[str], module: ModuleAnalysis) -> Optional[Def]:
    """The class a base expression names, in this file or in a project module."""
    found = module.module_classes.get(base.id) if isinstance(base, ast.Name) else None
    if found is None and name is not None and name != getattr(base, "id", None):
        found = imported_class(module, name)
    return found


def _linearization(cls: Def, module: ModuleAnalysis, inside: frozenset[int]) -> Optional[list[Def]]:
    """``cls`` and its bases in C3 order, or None if a base is not found (or the bases loop)."""
    if id(cls) in inside:
        return None
    orders: list[list[Def]] = []
    for base in cls.node.bases:
        name = module.imports.qualify(base)
        if name in UNITTEST_CASES or _is_plain(base, name, module):
            continue
        found = _find_base(base, name, module)
        order = _linearization(found, found.module, inside | {id(cls)}) if found is not None else None
        if order is None:
            return None
        orders.append(order)
    merged = c3_merge([*orders, [order[0] for order in orders]])
    return None if merged is None else [cls, *merged]


def c3_merge(sequences: list[list[Def]]) -> Optional[list[Def]]:
    """C3's merge (Python's method resolution order): repeatedly take the first head that is
    in no other sequence's tail; None when there is no consistent order."""
    sequences = [list(sequence) for sequence in sequences if sequence]
    merged: list[Def] = []
    while sequences:
        head = next(
            (s[0] for s in sequences if not any(s[0] is other for rest in sequences for other in rest[1:])),
            None,
        )
        if head is None:
            return None
        merged.append(head)
        sequences = [s[1:] if s[0] is head else s for s in sequences]
        sequences = [s for s in sequences if s]
    return merged


def is_unittest_class(cls: Def, module: ModuleAnalysis) -> bool:
    return resolve_bases(cls, module).unittest


def _defines(cls: Def, names: tuple[str, ...]) -> bool:
    return any(child.name in names for child in cls.children) or any(
        isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in stmt.targets)
        for stmt in cls.node.body
    )


def _test_disabled(cls: Def) -> bool:
    """``__test__ = False`` in the class body."""
    for stmt in cls.node.body:
        if (
            isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__test__" for t in stmt.targets)
            and isinstance(stmt.value, ast.Constant)
            and not stmt.value.value
        ):
            return True
    return False


def is_collected_class(cls: Def, module: ModuleAnalysis) -> bool:
    """pytest collects module-level classes (and classes nested in collected ones) that are
    ``unittest.TestCase`` subclasses, or match ``python_classes`` and have no ``__init__``/``__new__``."""
    if not cls.is_class or cls.in_function or _test_disabled(cls):
        return False
    if cls.parent is not None and not (
        is_collected_class(cls.parent, module) and not is_unittest_class(cls.parent, module)
    ):
        return False
    bases = resolve_bases(cls, module)
    if bases.unittest:
        return True
    if not matches_prefix_or_glob(cls.name, module.settings.python_classes):
        return False
    if any(_generates_init(d, c.module) for c in [cls, *bases.known] for d in c.node.decorator_list):
        return False
    return not any(_defines(c, ("__init__", "__new__")) for c in [cls, *bases.known])


# Class decorators that write an ``__init__``, which makes pytest skip the class.
_INIT_GENERATORS = frozenset(
    {"dataclasses.dataclass", "attr.s", "attr.attrs", "attr.define", "attrs.define", "attrs.frozen"}
)


def _generates_init(decorator: ast.expr, module: ModuleAnalysis) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return module.imports.qualify(target) in _INIT_GENERATORS


def is_test_function(func: Def, module: ModuleAnalysis) -> bool:
    """A module-level function pytest collects as a test."""
    return (
        not func.is_class
        and func.parent is None
        and matches_prefix_or_glob(func.name, module.settings.python_functions)
        and not is_fixture(func, module)
    )


def is_fixture(func: Def, module: ModuleAnalysis) -> bool:
    for decorator in func.node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if module.imports.qualify(target) in ("pytest.fixture", "pytest_asyncio.fixture"):
            return True
    return False


def fixture_name(func: Def, module: ModuleAnalysis) -> str:
    for decorator in func.node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return func.name


def has_own_yield(func: Def) -> bool:
    """Whether the function body itself (not a nested function) contains ``yield``."""
    return not func.is_class and yields(func.node)  # type: ignore[arg-type]
