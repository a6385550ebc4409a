"""MSF004 async-patch.

## What it does
Adds `new_callable=AsyncMock` to `patch(...)`, `patch.object(...)` (from `unittest.mock` or
the `mock` backport, in any import spelling, as decorators, context managers or calls) and
pytest-mock's `mocker.patch(...)` / `mocker.patch.object(...)` when the patched target is
**proven** to be an `async def`. `AsyncMock` is spelled the way the file already imports mock
things: added to its `from unittest.mock import ...`, or `mock.AsyncMock`, or
`mocker.AsyncMock`.

Targets are resolved from source, without importing anything: dotted strings
(`"pkg.mod.Client.send"`) through the project's modules, its virtualenv's installed packages
and the standard library, following re-exports and class bases; `patch.object(Name, "attr")`
for imported or local classes and modules; and `patch.object(obj, "attr")` where `obj` is a
local or `self.` attribute assigned `Class(...)`, or a fixture of the same file returning
`Class(...)`, and attributes of such instances that their class's methods assign `Class(...)`
(`self.client = AsyncClient()` in `__init__`). A decorated `async def` counts only when its
decorators are known to keep it a coroutine function (`staticmethod`, `classmethod`,
`abstractmethod`, `typing.override`, a project decorator written as `@functools.wraps(func)
async def wrapper` or one that returns the function unchanged, like
`typing_extensions.override`'s shim, or one listed in `async-decorators`). Installed packages
are read from the project's virtualenv (`.venv`, `venv`, any folder right below the project
root with a `pyvenv.cfg`, `$VIRTUAL_ENV`, or the `python` setting).

`--verbose` lists the targets that could not be resolved, with the reason; they are never
findings.

## Why
The memory-safety pattern asks for explicit `new_callable=AsyncMock` on patches of async
methods: it documents intent and keeps the mock an `AsyncMock` if someone later adds a `spec`.
`patch` already returns an `AsyncMock` for an `async def` target on Python 3.8+, so on a proven
target the keyword does not change behaviour; on a **sync** target it would break the test
(calling the mock returns a coroutine), which is why names like `send_async` or
`create_async_engine` prove nothing.

Also reported: `new=MagicMock(...)` (or `Mock`) as the replacement of a proven async target
when the test itself awaits the mock (`with patch(..., new=Mock()) as m: await m()`, or an
`await` of the patched target or of the result of calling it), where that `await` fails.
Whether the code under test awaits it cannot be seen from the test (a mock handed to a mocked
`asyncio.create_task` never is), so nothing is said then.

## Example
```python
@patch("shop.payments.Gateway.charge")  # async def charge(...)
async def test_checkout(charge): ...
```
becomes
```python
@patch("shop.payments.Gateway.charge", new_callable=AsyncMock)
async def test_checkout(charge): ...
```

## Fix safety
Safe: only for targets proven async, and never on calls that pass `new_callable`, `new` (by
keyword or position), `autospec`, `spec` other than `True`, `spec_set`, or `*args`/`**kwargs`,
where the keyword would raise or change the mock. Replacing `new=MagicMock(...)` with
`new=AsyncMock(...)` changes what the mock returns, so that fix is applied only with
`--unsafe-fixes` (or `unsafe-fixes = true`). `# memsafe: ignore[MSF004]` or `# noqa: async-mock`
on any line of the call suppresses it.
"""

from __future__ import annotations

import ast
import bisect
import functools
from dataclasses import dataclass
from typing import Iterator, Optional

from memsafe_fix.analysis.imports import MOCK_MODULES
from memsafe_fix.analysis.mocks import MOCKER_FIXTURES
from memsafe_fix.analysis.module import Def, ModuleAnalysis
from memsafe_fix.analysis.targets import Resolution, TargetResolver, Verdict
from memsafe_fix.edits import AddArgument, Edit, Finding, Fix, ImportName, ReplaceCallee
from memsafe_fix.rules.base import Context, Rule

# Mocks whose calls return plain values: as ``new`` of an async target, ``await`` fails.
SYNC_MOCKS = frozenset({"Mock", "MagicMock", "NonCallableMock", "NonCallableMagicMock"})
# Keywords that make ``new_callable`` raise or change the mock patch creates.
EXCLUDING_KEYWORDS = frozenset({"new_callable", "new", "autospec", "spec_set"})


@dataclass(frozen=True)
class PatchCall:
    call: ast.Call
    # The mock module the patch comes from (``unittest.mock``/``mock``), or the pytest-mock
    # fixture name (``mocker``) it is called on.
    module: Optional[str]
    mocker: Optional[str]
    is_object: bool

    @property
    def new_position(self) -> int:
        """Where ``new`` is passed positionally: after the target (and the attribute)."""
        return 2 if self.is_object else 1


def patch_call(call: ast.Call, module: ModuleAnalysis) -> Optional[PatchCall]:
    """``call`` as a ``patch``/``patch.object`` call, or None."""
    func = call.func
    is_object = isinstance(func, ast.Attribute) and func.attr == "object"
    patch = func.value if is_object else func  # type: ignore[attr-defined]
    if isinstance(patch, ast.Attribute) and patch.attr == "patch" and isinstance(patch.value, ast.Name):
        receiver = patch.value.id
        if receiver in MOCKER_FIXTURES and receiver not in module.imports.bound:
            return PatchCall(call, None, receiver, is_object)
    name = module.imports.qualify(patch)
    for mock_module in MOCK_MODULES:
        if name == f"{mock_module}.patch":
            return PatchCall(call, mock_module, None, is_object)
    return None


def target_text(patch: PatchCall) -> str:
    """The target as written: ``pkg.mod.f`` for ``patch("pkg.mod.f")``, ``client.get`` for
    ``patch.object(client, "get")``."""
    call = patch.call
    target = call.args[0] if call.args else _keyword_value(call, "target")
    text = _string(target) if not patch.is_object else None
    if text is None and target is not None:
        text = ast.unparse(target)
    if patch.is_object:
        attribute = _string(call.args[1] if len(call.args) > 1 else _keyword_value(call, "attribute"))
        text = f"{text}.{attribute or '?'}"
    return text or "?"


def _calls_on_patch_lines(module: ModuleAnalysis) -> Iterator[tuple[ast.Call, Optional[Def]]]:
    """The calls on lines that mention ``patch``, each with the innermost ``class``/``def``
    whose body holds it (decorators, defaults and bases are outside the body: Python evaluates
    them in the enclosing scope). Subtrees that span none of those lines are skipped, which
    spares walking most of a large test file."""
    lines = [number for number, text in enumerate(module.lines, 1) if "patch" in text]
    if not lines:
        return
    stack: list[tuple[ast.AST, Optional[Def]]] = [(module.tree, None)]
    # A big test file spans a ``patch`` line in every class: this loop runs for every node of
    # those classes' patched methods, so it reads each node's fields itself (``child_nodes``
    # builds a list and a generator per node) and skips ``ctx`` fields.
    while stack:
        node, scope = stack.pop()
        inner = module.def_of(node) if isinstance(node, _DEFS) else None
        for name in _child_fields(type(node)):
            value = getattr(node, name, None)
            child_scope = inner if inner is not None and name == "body" else scope
            for child in value if isinstance(value, list) else (value,):
                if not isinstance(child, ast.AST) or isinstance(child, _NO_CALLS):
                    continue
                start = getattr(child, "lineno", None)
                if start is not None:
                    # A decorated definition starts at its first decorator, above its ``lineno``.
                    decorators = getattr(child, "decorator_list", None)
                    if decorators:
                        start = min(start, *(d.lineno for d in decorators))
                    first = bisect.bisect_left(lines, start)
                    if first == len(lines) or lines[first] > (child.end_lineno or start):
                        continue
                if isinstance(child, ast.Call):
                    yield child, child_scope
                stack.append((child, child_scope))


_DEFS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# Nodes with no call in or below them.
_NO_CALLS = (ast.expr_context, ast.Name, ast.Constant)


@functools.lru_cache(maxsize=None)
def _child_fields(kind: type) -> tuple[str, ...]:
    """The fields of a node type that may hold nodes with calls (all but ``ctx``), in order."""
    return tuple(name for name in kind._fields if name != "ctx")


def _test_awaits(patch: PatchCall, module: ModuleAnalysis, scope: Optional[Def]) -> bool:
    """Whether the test around a ``patch(..., new=Mock())`` visibly awaits the mock: an
    ``await`` whose expression calls it (by its ``with ... as`` name, or as the patched target is
    written: ``await engines.dispose(...)``, ``await client.fetch()``), or holds the result of
    such a call (``pending = fetch(); await pending``). What the code under test does with the
    mock is not visible here: a mock handed to a mocked ``asyncio.create_task`` is never
    awaited, so nothing is claimed about it."""
    call = patch.call
    test = scope  # the innermost definition whose body holds the call
    if test is None or test.is_class:  # a decorator: the test is the function it decorates
        test = next((d for d in module.defs if any(call is node for node in d.node.decorator_list)), None)
    if test is None or test.is_class:
        return False
    names = {
        item.optional_vars.id
        for node in ast.walk(test.node)
        if isinstance(node, (ast.With, ast.AsyncWith))
        for item in node.items
        if item.context_expr is call and isinstance(item.optional_vars, ast.Name)
    }
    target = call.args[0] if call.args else _keyword_value(call, "target")
    written = target_text(patch) if patch.is_object else _string(target)

    def calls_mock(node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        if isinstance(node.func, ast.Name) and node.func.id in names:
            return True
        return written is not None and written in (ast.unparse(node.func), module.imports.qualify(node.func))

    results = {
        t.id
        for node in ast.walk(test.node)
        if isinstance(node, ast.Assign) and calls_mock(node.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    return any(
        calls_mock(inner) or (isinstance(inner, ast.Name) and inner.id in results)
        for node in ast.walk(test.node)
        if isinstance(node, ast.Await)
        for inner in ast.walk(node.value)
    )


def _keyword_value(call: ast.Call, name: str) -> Optional[ast.expr]:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _string(node: Optional[ast.expr]) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class AsyncPatch(Rule):
    code = "MSF004"
    name = "async-patch"
    valid = (
        # A sync target keeps its MagicMock, whatever its name says.
        "from unittest.mock import patch\n\n\ndef send_async():\n    pass\n\n\n"
        "def test_a():\n    with patch(f'{__name__}.send_async'):\n        pass\n",
        # Already explicit.
        "from unittest.mock import AsyncMock, patch\n\n\nclass Client:\n    async def get(self):\n        pass\n\n\n"
        "def test_a():\n    with patch.object(Client, 'get', new_callable=AsyncMock):\n        pass\n",
    )
    invalid = (
        (
            "from unittest.mock import patch\n\n\nclass Client:\n    async def get(self):\n        pass\n\n\n"
            "def test_a():\n    with patch.object(Client, 'get'):\n        pass\n",
            "from unittest.mock import AsyncMock, patch\n\n\nclass Client:\n    async def get(self):\n        pass\n\n\n"
            "def test_a():\n    with patch.object(Client, 'get', new_callable=AsyncMock):\n        pass\n",
        ),
    )

    def check(self, context: Context) -> Iterator[Finding]:
        module = context.module
        if "patch" not in module.source:
            return
        resolver = TargetResolver(module)
        calls = sorted(_calls_on_patch_lines(module), key=lambda found: (found[0].lineno, found[0].col_offset))
        for call, scope in calls:
            patch = patch_call(call, module)
            if patch is None or not self._can_take_new_callable(patch):
                continue
            call = patch.call
            if module.suppressed(self.code, iter(range(call.lineno, (call.end_lineno or call.lineno) + 1))):
                continue
            resolution = self._resolve(patch, resolver, scope)
            if resolution is None:
                continue
            context.resolutions.append((call, target_text(patch), resolution))
            if resolution.verdict is not Verdict.ASYNC:
                continue
            new = _keyword_value(call, "new")
            if new is None and len(call.args) > patch.new_position:
                new = call.args[patch.new_position]
            if new is None:
                yield self._new_callable_finding(context, patch, resolution)
            elif (
                isinstance(new, ast.Call)
                and self._mock_class(new.func, patch, module) in SYNC_MOCKS
                and _test_awaits(patch, module, scope)
            ):
                yield self._sync_new_finding(context, patch, new, resolution)

    @staticmethod
    def _can_take_new_callable(patch: PatchCall) -> bool:
        call = patch.call
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return False  # ``*args``/``**kwargs`` could hold anything
        spec = _keyword_value(call, "spec")
        if spec is not None and not (isinstance(spec, ast.Constant) and spec.value is True):
            return False
        # ``new`` is allowed through: a sync mock as ``new`` of an async target is reported.
        return not any(k.arg in EXCLUDING_KEYWORDS - {"new"} for k in call.keywords)

    @staticmethod
    def _resolve(patch: PatchCall, resolver: TargetResolver, scope: Optional[Def]) -> Optional[Resolution]:
        call = patch.call
        target = call.args[0] if call.args else _keyword_value(call, "target")
        if target is None:
            return None
        if not patch.is_object:
            text = _string(target)
            if text is None:
                return Resolution(Verdict.UNKNOWN, f"target `{ast.unparse(target)}` is not a string literal")
            return resolver.resolve_string(text)
        attribute = _string(call.args[1] if len(call.args) > 1 else _keyword_value(call, "attribute"))
        if attribute is None:
            return Resolution(Verdict.UNKNOWN, "the attribute is not a string literal")
        return resolver.resolve_object(target, attribute, scope)

    @staticmethod
    def _mock_class(func: ast.expr, patch: PatchCall, module: ModuleAnalysis) -> Optional[str]:
        """``MagicMock`` for ``MagicMock``/``mock.MagicMock``/``mocker.MagicMock``."""
        if patch.mocker and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id == patch.mocker:
                return func.attr
        name = module.imports.qualify(func) or ""
        for mock_module in MOCK_MODULES:
            if name.startswith(mock_module + ".") and name.count(".") == mock_module.count(".") + 1:
                return name.rsplit(".", 1)[1]
        return None

    def _async_mock(self, context: Context, patch: PatchCall) -> Optional[tuple[str, tuple[Edit, ...]]]:
        """How to write ``AsyncMock`` in this file, and the import edit that needs."""
        if patch.mocker:
            return f"{patch.mocker}.AsyncMock", ()
        module = context.module
        for mock_module in (patch.module, *MOCK_MODULES):
            alias = module.imports.alias_for(f"{mock_module}.AsyncMock")
            if alias is not None:
                return alias, ()
        func = patch.call.func
        patch_node = func.value if patch.is_object else func  # type: ignore[attr-defined]
        if isinstance(patch_node, ast.Attribute):  # ``mock.patch`` -> ``mock.AsyncMock``
            return f"{ast.unparse(patch_node.value)}.AsyncMock", ()
        if "AsyncMock" in module.bindings(module.tree.body):
            return None  # the name is taken by something else
        assert patch.module is not None
        return "AsyncMock", (ImportName(patch.module, "AsyncMock"),)

    def _new_callable_finding(self, context: Context, patch: PatchCall, resolution: Resolution) -> Finding:
        call = patch.call
        # ``patch.object(agent, "fetch_card")`` names the method found, not the local variable.
        target = resolution.method if patch.is_object and resolution.method else target_text(patch)
        message = f"patch of async `{target}` should pass `new_callable=AsyncMock`"
        spelling = self._async_mock(context, patch)
        if spelling is None:
            return context.finding(self.code, call, message + " (`AsyncMock` is bound to something else here)")
        name, edits = spelling
        index = context.module.call_index[id(call)]
        add = AddArgument(index, ast.unparse(call.func), f"new_callable={name}")
        return context.finding(self.code, call, message, Fix((add, *edits)))

    def _sync_new_finding(self, context: Context, patch: PatchCall, new: ast.Call, resolution: Resolution) -> Finding:
        target = resolution.method if patch.is_object and resolution.method else target_text(patch)
        message = (
            f"`{ast.unparse(new.func)}` replaces async `{target}` and the test awaits it, which fails; use `AsyncMock`"
        )
        spelling = self._async_mock(context, patch)
        if spelling is None or not context.settings.unsafe_fixes:
            hint = " (unsafe fix available with --unsafe-fixes)" if spelling is not None else ""
            return context.finding(self.code, new, message + hint)
        name, edits = spelling
        if isinstance(new.func, ast.Attribute):  # ``mock.MagicMock`` -> ``mock.AsyncMock``
            name, edits = f"{ast.unparse(new.func.value)}.AsyncMock", ()
        index = context.module.call_index[id(new)]
        replace = ReplaceCallee(index, ast.unparse(new.func), name)
        return context.finding(self.code, new, message, Fix((replace, *edits)))
