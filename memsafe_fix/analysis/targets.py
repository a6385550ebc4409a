"""Is the target of a ``patch`` an ``async def``? Decided from source, never by importing.

A target is a dotted string (``"pkg.mod.Client.send"``) or an object and an attribute name
(``patch.object(Client, "send")``). Modules are looked up under the project's source roots and
in the installed packages of the project's virtualenv and of this interpreter (see
``project.find_module``), each parsed once with ``ast``. Names are followed through imports,
re-exports (``from .x import y``, ``from x import *``) and class bases.

The answer is a ``Verdict``: ``ASYNC`` only when the target is proven to be a coroutine
function, ``NOT_ASYNC`` when it is proven not to be one, ``UNKNOWN`` otherwise, with the reason.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Optional, Union

from memsafe_fix.analysis.collection import c3_merge, fixture_name, has_own_yield, is_fixture
from memsafe_fix.analysis.imports import PLAIN_BASES
from memsafe_fix.analysis.module import Def, ModuleAnalysis, child_nodes, returns_its_argument
from memsafe_fix.analysis.project import conftests, find_module, load_module

# Decorators that return the function they are given (or a descriptor that calls it unchanged).
TRANSPARENT_DECORATORS = frozenset(
    {
        "staticmethod",
        "classmethod",
        "abc.abstractmethod",
        "typing.override",
        "typing_extensions.override",
        "typing.final",
        "typing_extensions.final",
        "typing.no_type_check",
    }
)
WRAPS = frozenset({"functools.wraps"})
# How deep imports, re-exports and bases are followed before giving up.
MAX_DEPTH = 8


class Verdict(Enum):
    ASYNC = "async"
    NOT_ASYNC = "not async"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Resolution:
    verdict: Verdict
    # What the target turned out to be ("async def pkg.mod.f"), or why it is unknown.
    detail: str
    # The class and method found (``RemoteAgent.fetch_card``), for a method.
    method: str = ""


@dataclass(frozen=True)
class Unknown:
    reason: str


@dataclass(frozen=True)
class Instance:
    """An instance of ``cls``: its attributes are looked up on the class."""

    cls: Def


Symbol = Union[ModuleAnalysis, Def, Instance, Unknown]


class TargetResolver:
    """Resolves ``patch`` targets for one test module."""

    def __init__(self, module: ModuleAnalysis) -> None:
        self.module = module
        self.async_decorators = frozenset(module.settings.async_decorators)
        self._strings: dict[str, Resolution] = {}

    # --- the two forms of target ---------------------------------------------------------

    def resolve_string(self, target: str) -> Resolution:
        """``patch("pkg.mod.Class.method")``: the longest importable prefix, then attributes
        (once per target and module)."""
        if target not in self._strings:
            self._strings[target] = self.verdict(self.symbol(target))
        return self._strings[target]

    def symbol(self, dotted: str) -> Symbol:
        parts = dotted.split(".")
        if len(parts) < 2 or not all(part.isidentifier() for part in parts):
            return Unknown(f"`{dotted}` is not a dotted name")
        for cut in range(len(parts) - 1, 0, -1):
            found = self._module(".".join(parts[:cut]), self.module)
            if found is not None:
                symbol: Symbol = found
                for name in parts[cut:]:
                    symbol = self.member(symbol, name, 0)
                return symbol
        return Unknown(f"module of `{dotted}` not found")

    def resolve_object(self, expr: ast.expr, attribute: str, scope: Optional[Def]) -> Resolution:
        """``patch.object(expr, "attribute")`` where ``expr`` is written in ``scope``."""
        return self.verdict(self.member(self.expression(expr, scope), attribute, 0))

    # --- verdicts --------------------------------------------------------------------------

    def verdict(self, symbol: Symbol) -> Resolution:
        if isinstance(symbol, Unknown):
            return Resolution(Verdict.UNKNOWN, symbol.reason)
        if isinstance(symbol, Instance):
            return Resolution(Verdict.NOT_ASYNC, f"an instance of `{symbol.cls.name}`")
        if isinstance(symbol, ModuleAnalysis):
            return Resolution(Verdict.NOT_ASYNC, f"module `{symbol.module_name}`")
        if symbol.is_class:
            return Resolution(Verdict.NOT_ASYNC, f"class `{symbol.name}`")
        node = symbol.node
        where = f"`{symbol.module.module_name}.{symbol.name}`"
        if node.decorator_list and _is_property(node.decorator_list[0], symbol.module):
            # ``patch`` replaces the property object, which is not a coroutine function.
            return Resolution(Verdict.NOT_ASYNC, f"property {where}")
        if isinstance(node, ast.FunctionDef):
            if all(self._transparent(d, symbol.module) for d in node.decorator_list):
                return Resolution(Verdict.NOT_ASYNC, f"def {where}")
            return Resolution(Verdict.UNKNOWN, f"def {where} is decorated")
        if has_own_yield(symbol):
            # ``patch`` makes a MagicMock for an async generator function, and so must we.
            return Resolution(Verdict.NOT_ASYNC, f"async generator {where}")
        for decorator in node.decorator_list:
            if not (self._transparent(decorator, symbol.module) or self._wraps_async(decorator, symbol.module)):
                return Resolution(Verdict.UNKNOWN, f"async def {where} is decorated with `{ast.unparse(decorator)}`")
        owner = symbol.parent
        method = f"{owner.name}.{symbol.name}" if owner is not None and owner.is_class else ""
        return Resolution(Verdict.ASYNC, f"async def {where}", method)

    def _transparent(self, decorator: ast.expr, module: ModuleAnalysis) -> bool:
        """A decorator that returns the function itself (``@wraps(f)`` does, and project
        decorators written that way), or one the ``async-decorators`` setting vouches for."""
        if isinstance(decorator, ast.Call):
            return module.imports.qualify(decorator.func) in WRAPS or self._vouched_for(decorator.func, module)
        return (
            module.imports.qualify(decorator) in TRANSPARENT_DECORATORS
            or self._vouched_for(decorator, module)
            or self._returns_its_argument(decorator, module)
        )

    def _returns_its_argument(self, decorator: ast.expr, module: ModuleAnalysis) -> bool:
        """A decorator defined as ``def d(f): ...; return f``, or a name bound only to such
        decorators and transparent ones (``try: from typing import override`` with a shim under
        ``except ImportError``, or one import per Python version)."""
        if not isinstance(decorator, ast.Name):
            found = self.member_path(decorator, module)
            # A class used as a decorator (``@decorators.Retry``) makes an instance, not a coroutine function.
            return isinstance(found, Def) and not found.is_class and returns_its_argument(found.node)  # type: ignore[arg-type]
        return self._transparent_name(module, decorator.id, 0)

    def _transparent_name(self, module: ModuleAnalysis, name: str, depth: int) -> bool:
        bindings = module.bindings(module.tree.body).get(name, [])
        return bool(bindings) and all(self._binds_transparent(b, name, module, depth) for b in bindings)

    def _binds_transparent(self, binding: ast.stmt, name: str, module: ModuleAnalysis, depth: int) -> bool:
        if isinstance(binding, ast.FunctionDef):
            return returns_its_argument(binding)
        if not isinstance(binding, (ast.Import, ast.ImportFrom)) or depth > MAX_DEPTH:
            return False
        dotted = _import_target(binding, name)
        if dotted in TRANSPARENT_DECORATORS:
            return True
        split = _split_import(dotted)
        holder = self._module(split[0], module) if split else None
        return isinstance(holder, ModuleAnalysis) and self._transparent_name(holder, split[1], depth + 1)

    def _vouched_for(self, expr: ast.expr, module: ModuleAnalysis) -> bool:
        """Whether ``expr`` is one of the ``async-decorators``, by name or by definition
        (a relative import of it counts too)."""
        if not self.async_decorators:
            return False
        if module.imports.qualify(expr) in self.async_decorators:
            return True
        found = self.member_path(expr, module)
        return isinstance(found, Def) and id(found) in self._vouched_defs

    @cached_property
    def _vouched_defs(self) -> frozenset[int]:
        return frozenset(id(s) for s in map(self.symbol, self.async_decorators) if isinstance(s, Def))

    def _wraps_async(self, decorator: ast.expr, module: ModuleAnalysis) -> bool:
        """A project decorator written as ``@wraps(func) async def wrapper`` (or a factory
        returning such a decorator): it keeps an ``async def`` a coroutine function."""
        factory = isinstance(decorator, ast.Call)
        func = self.member_path(decorator.func if factory else decorator, module)  # type: ignore[attr-defined]
        if not isinstance(func, Def) or func.is_class:
            return False
        decorating = _returned_def(func) if factory else func
        return decorating is not None and _returns_wrapping_async(decorating)

    # --- names -----------------------------------------------------------------------------

    def _module(self, dotted: str, importer: ModuleAnalysis) -> Union[ModuleAnalysis, Unknown, None]:
        """The module ``dotted`` imported from ``importer``: None when there is no such file,
        ``Unknown`` when it cannot be parsed (newer syntax than this Python's, say)."""
        if importer.path is None:
            return None
        path = find_module(dotted, importer.path.parent, importer.settings, installed=True)
        if path is None:
            return None
        found = load_module(path, importer.settings)
        return found if found is not None else Unknown(f"cannot parse `{path.name}` of module `{dotted}`")

    def member_path(self, expr: ast.expr, module: ModuleAnalysis) -> Symbol:
        """What a module-level name or dotted attribute chain in ``module`` refers to."""
        if isinstance(expr, ast.Attribute):
            return self.member(self.member_path(expr.value, module), expr.attr, 0)
        if isinstance(expr, ast.Name):
            return self.member(module, expr.id, 0)
        return Unknown(f"`{ast.unparse(expr)}` is not a name")

    def member(self, symbol: Symbol, name: str, depth: int) -> Symbol:
        if isinstance(symbol, Unknown):
            return symbol
        if depth > MAX_DEPTH:
            return Unknown(f"`{name}` is re-exported too many times")
        if isinstance(symbol, Instance):
            return self._class_member(symbol.cls, name, depth, instance=True)
        if isinstance(symbol, ModuleAnalysis):
            return self._module_member(symbol, name, depth)
        if symbol.is_class:
            return self._class_member(symbol, name, depth)
        return Unknown(f"`{name}` of function `{symbol.name}`")

    def _module_member(self, module: ModuleAnalysis, name: str, depth: int) -> Symbol:
        bindings = _alternatives(module.bindings(module.tree.body).get(name, []))
        if len(bindings) > 1:
            return Unknown(f"`{name}` is bound more than once in `{module.module_name}`")
        if bindings:
            return self._bound(bindings[0], module, name, depth)
        for star in reversed(module.star_imports):  # a later ``import *`` wins
            source = self._module(star, module)
            if (
                isinstance(source, ModuleAnalysis)
                and name in source.bindings(source.tree.body)
                and not name.startswith("_")
            ):
                return self._module_member(source, name, depth + 1)
        if module.path is not None and module.path.name == "__init__.py":
            submodule = self._module(f".{name}", module)
            if submodule is not None:
                return submodule
        return Unknown(f"`{name}` not found in `{module.module_name}`")

    def _bound(self, binding: ast.AST, module: ModuleAnalysis, name: str, depth: int) -> Symbol:
        if isinstance(binding, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            return module.def_of(binding)
        if isinstance(binding, (ast.Import, ast.ImportFrom)):
            return self._imported(_import_target(binding, name), module, depth + 1)
        return Unknown(f"`{name}` is assigned in `{module.module_name}`")

    def _imported(self, dotted: str, importer: ModuleAnalysis, depth: int) -> Symbol:
        """What an import of ``dotted`` in ``importer`` binds: a module, or a name in one."""
        found = self._module(dotted, importer)
        if found is not None:
            return found
        split = _split_import(dotted)
        if split is None:
            return Unknown(f"module `{dotted}` not found")
        parent, name = split
        holder = self._module(parent, importer)
        if holder is None:
            return Unknown(f"module `{parent}` not found")
        if isinstance(holder, Unknown):
            return holder
        return self.member(holder, name, depth)

    def _class_member(self, cls: Def, name: str, depth: int, instance: bool = False) -> Symbol:
        """``name`` looked up on a class along its method resolution order; on an
        ``instance``, an attribute its methods assign on ``self`` when the class has none."""
        for klass in self._mro(cls, depth):
            if isinstance(klass, Unknown):
                return klass  # a base that cannot be read could define ``name`` first
            bindings = klass.module.bindings(klass.node.body).get(name, [])
            if instance:  # ``client: Client`` in the body only annotates the instance attribute
                bindings = [b for b in bindings if not (isinstance(b, ast.AnnAssign) and b.value is None)]
            bindings = _alternatives(bindings)
            if len(bindings) > 1:
                return Unknown(f"`{name}` is bound more than once in class `{klass.name}`")
            if bindings:
                binding = bindings[0]
                if isinstance(binding, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    return klass.module.def_of(binding)
                return Unknown(f"`{klass.name}.{name}` is assigned")
        if instance:
            return self._instance_attribute(cls, name, depth)
        return Unknown(f"no `{name}` in class `{cls.name}`")

    def _instance_attribute(self, cls: Def, name: str, depth: int) -> Symbol:
        """``self.name = Class(...)`` in the methods of ``cls`` and its bases (``__init__``
        usually): an instance of ``Class`` when every such assignment agrees."""
        values: list[Symbol] = []
        for klass in self._mro(cls, depth):
            if isinstance(klass, Unknown):
                return klass
            assigned = klass.module.self_assignments(klass)
            if "*" in assigned:
                return Unknown(f"`{klass.name}` sets attributes with `setattr`")
            values += [self._instance_of(value, None, klass.module) for value in assigned.get(name, [])]
        if not values:
            return Unknown(f"no `{name}` in class `{cls.name}`")
        return self._agreeing(values, f"{cls.name}().{name}")

    def _mro(self, cls: Def, depth: int) -> list[Union[Def, Unknown]]:
        """The method resolution order as far as the source shows it: Python's C3
        linearization of the bases found. A base that cannot be found ends it (as an
        ``Unknown``); with several bases, one unknown anywhere above makes the order unknown
        after the first base, since its hidden bases could reorder the rest."""
        if depth > MAX_DEPTH:
            return [cls, Unknown(f"the bases of `{cls.name}` go too deep")]
        bases: list[Union[Def, Unknown]] = []
        for base in cls.node.bases:
            qualified = cls.module.imports.qualify(base)
            if qualified in PLAIN_BASES or (isinstance(base, ast.Name) and _is_builtin(base.id, cls.module)):
                continue
            if isinstance(base, ast.Subscript) and cls.module.imports.qualify(base.value) in PLAIN_BASES:
                continue
            resolved = self.member_path(base, cls.module)
            found = isinstance(resolved, Def) and resolved.is_class and resolved is not cls
            bases.append(resolved if found else Unknown(f"base `{ast.unparse(base)}` of `{cls.name}` not found"))
        if len(bases) == 1:
            only = bases[0]
            return [cls, only] if isinstance(only, Unknown) else [cls, *self._mro(only, depth + 1)]
        orders: list[list[Def]] = []
        for base in bases:
            order = [base] if isinstance(base, Unknown) else self._mro(base, depth + 1)
            unknown = next((k for k in order if isinstance(k, Unknown)), None)
            if unknown is not None:
                # Python's order always starts with the class and its first base's own body.
                first = bases[0]
                return [cls, unknown] if isinstance(first, Unknown) else [cls, first, unknown]
            orders.append(order)  # type: ignore[arg-type]
        merged = c3_merge([*orders, bases])  # type: ignore[list-item]
        if merged is None:
            return [cls, Unknown(f"the bases of `{cls.name}` have no consistent order")]
        return [cls, *merged]

    # --- expressions in test code ----------------------------------------------------------

    def expression(self, expr: ast.expr, scope: Optional[Def]) -> Symbol:
        """What the first argument of ``patch.object`` refers to, written in ``scope``."""
        if isinstance(expr, ast.Call):
            if isinstance(expr.func, ast.Name) and expr.func.id == "type" and len(expr.args) == 1:
                instance = self.expression(expr.args[0], scope)  # ``type(obj)``: the class
                return instance.cls if isinstance(instance, Instance) else instance
            return self._instance_of(expr, scope)
        if isinstance(expr, ast.Name):
            if expr.id == "self" and scope is not None and scope.parent is not None and scope.parent.is_class:
                return Instance(scope.parent)
            for function in _enclosing_functions(scope):
                values = _local_values(function, expr.id)
                if values:
                    return self._agreeing([self._instance_of(v, function) for v in values], expr.id)
                if expr.id in _parameters(function):
                    return self._fixture_value(expr.id, function)
            return self.member_path(expr, self.module)
        if isinstance(expr, ast.Attribute):
            if isinstance(expr.value, ast.Name) and expr.value.id == "self" and scope is not None:
                cls = scope.parent
                if cls is not None and cls.is_class:
                    values = cls.module.self_assignments(cls).get(expr.attr, [])
                    if values:
                        return self._agreeing([self._instance_of(v, None) for v in values], f"self.{expr.attr}")
                    return Unknown(f"`self.{expr.attr}` is not assigned in `{cls.name}`")
            return self.member(self.expression(expr.value, scope), expr.attr, 0)
        return Unknown(f"`{ast.unparse(expr)}` is not a name")

    def _instance_of(self, value: ast.expr, scope: Optional[Def], module: Optional[ModuleAnalysis] = None) -> Symbol:
        """What ``value`` (written in ``scope`` of ``module``) is an instance of."""
        module = module or self.module
        if isinstance(value, ast.Name) and scope is not None and not scope.is_class:
            values = _local_values(scope, value.id)  # ``client = Client(); yield client``
            if values:
                return self._agreeing([self._instance_of(v, None, module) for v in values], value.id)
        if isinstance(value, ast.Call):
            cls = self.member_path(value.func, module)
            if isinstance(cls, Def) and cls.is_class:
                return Instance(cls)
            return Unknown(f"`{ast.unparse(value.func)}(...)` is not a known class")
        return Unknown(f"`{ast.unparse(value)}` is not a call of a class")

    def _fixture_value(self, name: str, function: Def) -> Symbol:
        """A parameter filled by a fixture that returns or yields ``Class(...)``: the test's
        class's or module's own fixture, else the nearest ``conftest.py``'s, as pytest picks."""
        candidates = [d for d in function.parent.children] if function.parent and function.parent.is_class else []
        for module in [self.module, *conftests(self.module)]:
            candidates += [d for d in module.top_level]
            fixtures = [
                d
                for d in candidates
                if not d.is_class and is_fixture(d, d.module) and fixture_name(d, d.module) == name
            ]
            if len(fixtures) > 1:
                return Unknown(f"fixture `{name}` is defined more than once in `{module.module_name}`")
            if fixtures:
                values = _produced_values(fixtures[0])
                if not values:
                    return Unknown(f"fixture `{name}` returns nothing recognisable")
                return self._agreeing([self._instance_of(v, fixtures[0], fixtures[0].module) for v in values], name)
            candidates = []
        return Unknown(f"fixture `{name}` not found")

    @staticmethod
    def _agreeing(symbols: list[Symbol], name: str) -> Symbol:
        first = symbols[0]
        if isinstance(first, Unknown):
            return first
        if any(not isinstance(s, Instance) or s.cls is not getattr(first, "cls", None) for s in symbols):
            return Unknown(f"`{name}` is assigned different things")
        return first


PROPERTIES = frozenset({"property", "functools.cached_property"})


def _is_property(decorator: ast.expr, module: ModuleAnalysis) -> bool:
    """``@property``, ``@cached_property``, or ``@name.setter``/``.getter``/``.deleter``."""
    if isinstance(decorator, ast.Attribute) and decorator.attr in ("setter", "getter", "deleter"):
        return True
    return module.imports.qualify(decorator) in PROPERTIES


def _alternatives(bindings: list[ast.stmt]) -> list[ast.stmt]:
    """Undecorated defs of one kind (all ``async`` or none) bound under ``if``/``else``
    branches agree on async-ness: any one of them stands for all."""
    if len(bindings) > 1 and all(
        type(b) is type(bindings[0]) and isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) and not b.decorator_list
        for b in bindings
    ):
        return bindings[-1:]
    return bindings


def _import_target(statement: Union[ast.Import, ast.ImportFrom], name: str) -> str:
    """The dotted name an import statement binds to local ``name``."""
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            if alias.asname == name:
                return alias.name
        return name  # ``import a.b`` binds ``a``
    module = "." * statement.level + (statement.module or "")
    alias = next(a for a in statement.names if (a.asname or a.name) == name)
    return f"{module}{'' if module.endswith('.') else '.'}{alias.name}"


def _split_import(dotted: str) -> Optional[tuple[str, str]]:
    """``pkg.mod.name`` -> (``pkg.mod``, ``name``); ``.name`` -> (``.``, ``name``)."""
    stripped = dotted.lstrip(".")
    level = len(dotted) - len(stripped)
    if "." in stripped:
        parent, name = dotted.rsplit(".", 1)
        return parent, name
    return ("." * level, stripped) if level else None


def _is_builtin(name: str, module: ModuleAnalysis) -> bool:
    return name not in module.bindings(module.tree.body) and isinstance(getattr(builtins, name, None), type)


def _enclosing_functions(scope: Optional[Def]) -> list[Def]:
    functions = []
    while scope is not None and not scope.is_class:
        functions.append(scope)
        scope = scope.parent
    return functions


def _parameters(function: Def) -> set[str]:
    args = function.node.args
    return {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}


def _own_nodes(function: Def) -> list[ast.AST]:
    """The nodes of a function body, not descending into nested functions and classes."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = list(function.node.body)
    while stack:
        node = stack.pop()
        found.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(child_nodes(node))
    return found


def _local_values(function: Def, name: str) -> list[ast.expr]:
    """Values assigned to local ``name`` by plain ``name = value`` statements; any other
    binding (a loop, ``with ... as``, unpacking) adds an unknowable value. Worked out for
    every name in one walk of the function (a test patches several objects), the answer
    is shared, not to be changed."""
    found = function.__dict__.get("_local_values")
    if found is None:
        found = function.__dict__["_local_values"] = _all_local_values(function)
    return found.get(name, [])


def _all_local_values(function: Def) -> dict[str, list[ast.expr]]:
    values: dict[str, list[ast.expr]] = {}
    stores: dict[str, int] = {}
    for node in _own_nodes(function):
        if isinstance(node, ast.Assign):
            for name in dict.fromkeys(t.id for t in node.targets if isinstance(t, ast.Name)):
                values.setdefault(name, []).append(node.value)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            stores[node.id] = stores.get(node.id, 0) + 1
    for name, count in stores.items():
        if count > len(values.get(name, ())):
            values.setdefault(name, []).append(ast.Constant(None))
    return values


def _produced_values(fixture: Def) -> list[ast.expr]:
    return [
        node.value
        for node in _own_nodes(fixture)
        if isinstance(node, (ast.Return, ast.Yield)) and node.value is not None
    ]


def _returned_def(function: Def) -> Optional[Def]:
    """The nested function ``function`` returns (``def deco(f): ...; return wrapper``)."""
    returned = {n.value.id for n in _own_nodes(function) if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)}
    inner = [child for child in function.children if not child.is_class and child.name in returned]
    return inner[0] if len(inner) == 1 else None


COROUTINE_CHECKS = frozenset({"inspect.iscoroutinefunction", "asyncio.iscoroutinefunction"})


def _returned_for_async(function: Def) -> Optional[Def]:
    """The nested function a dispatching decorator returns for an ``async def``: the one
    returned under ``if inspect.iscoroutinefunction(func):`` (or a variable holding that)."""
    params = [*function.node.args.posonlyargs, *function.node.args.args]
    if not params:
        return None
    for node in _own_nodes(function):
        if isinstance(node, ast.If) and _checks_coroutine(node.test, params[0].arg, function, 0):
            returned = next((s.value for s in node.body if isinstance(s, ast.Return)), None)
            inner = [c for c in function.children if isinstance(returned, ast.Name) and c.name == returned.id]
            return inner[0] if len(inner) == 1 and not inner[0].is_class else None
    return None


def _checks_coroutine(test: ast.expr, param: str, function: Def, depth: int) -> bool:
    """``iscoroutinefunction(param)``, ``... is True``, or a local assigned one of those."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Is):
        right = test.comparators[0]
        return (
            isinstance(right, ast.Constant)
            and right.value is True
            and _checks_coroutine(test.left, param, function, depth)
        )
    if isinstance(test, ast.Name) and depth == 0:
        values = _local_values(function, test.id)
        return len(values) == 1 and _checks_coroutine(values[0], param, function, depth + 1)
    return (
        isinstance(test, ast.Call)
        and function.module.imports.qualify(test.func) in COROUTINE_CHECKS
        and len(test.args) == 1
        and isinstance(test.args[0], ast.Name)
        and test.args[0].id == param
    )


def _returns_wrapping_async(function: Def) -> bool:
    inner = _returned_def(function) or _returned_for_async(function)
    if inner is None or not isinstance(inner.node, ast.AsyncFunctionDef) or has_own_yield(inner):
        return False
    qualify = function.module.imports.qualify
    return (
        any(isinstance(d, ast.Call) and qualify(d.func) in WRAPS for d in inner.node.decorator_list)
        and len(inner.node.decorator_list) == 1
    )
