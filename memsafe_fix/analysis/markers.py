"""pytest markers as written in source: decorators, class ``pytestmark`` and module ``pytestmark``."""

from __future__ import annotations

import ast
from typing import Callable, Optional

from memsafe_fix.analysis.imports import ImportTable
from memsafe_fix.analysis.module import Def, ModuleAnalysis, child_nodes

XDIST_WORKER_VARIABLE = "PYTEST_XDIST_WORKER"


def _resolve(expr: ast.expr, module: ModuleAnalysis) -> ast.expr:
    """Follow a bare name to its module-level value (``slow = pytest.mark.performance``)."""
    if isinstance(expr, ast.Name) and expr.id in module.module_assignments:
        return module.module_assignments[expr.id]
    return expr


def marker_name(expr: ast.expr, module: ModuleAnalysis) -> Optional[str]:
    """``performance`` for ``@pytest.mark.performance``, ``@mark.performance(...)`` and the like."""
    expr = _resolve(expr, module)
    if isinstance(expr, ast.Call):
        expr = expr.func
    name = module.imports.qualify(expr)
    if name and name.startswith("pytest.mark.") and name.count(".") == 2:
        return name.rsplit(".", 1)[1]
    return None


def pytestmark_assignment(body: list[ast.stmt]) -> Optional[ast.Assign]:
    """The last ``pytestmark = ...`` directly in ``body``, which is the one pytest sees."""
    found = None
    for stmt in body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets):
            found = stmt
    return found


def pytestmark_marks(body: list[ast.stmt]) -> list[ast.expr]:
    assignment = pytestmark_assignment(body)
    if assignment is None:
        return []
    value = assignment.value
    return list(value.elts) if isinstance(value, (ast.List, ast.Tuple)) else [value]


def is_xdist_skip(expr: ast.expr, module: ModuleAnalysis) -> bool:
    """A ``skipif`` whose condition mentions ``PYTEST_XDIST_WORKER`` in any spelling
    (``os.getenv``, ``os.environ.get``, ``in os.environ``, a string condition, a variable)."""
    expr = _resolve(expr, module)
    if marker_name(expr, module) != "skipif" or not isinstance(expr, ast.Call):
        return False
    conditions = [*expr.args, *(k.value for k in expr.keywords if k.arg == "condition")]
    for condition in conditions:
        for node in ast.walk(_resolve(condition, module)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and XDIST_WORKER_VARIABLE in node.value:
                return True
    return False


def marks_of(scope: Optional[Def], module: ModuleAnalysis) -> list[ast.expr]:
    """Markers applied directly at one level: a def's decorators plus a class's ``pytestmark``,
    or, for ``scope=None``, the module's ``pytestmark``."""
    if scope is None:
        return pytestmark_marks(module.tree.body)
    marks = list(scope.node.decorator_list)
    if scope.is_class:
        marks += pytestmark_marks(scope.node.body)
    return marks


def used_markers(module: ModuleAnalysis) -> frozenset[str]:
    """Every ``pytest.mark.NAME`` the file mentions, in any import spelling."""
    source = module.source
    if source and source.isascii() and "mark" not in source:
        return frozenset()  # every spelling names ``mark`` (non-ASCII names fold to it)
    found = set()
    qualify = module.imports.qualify
    # Lines 1..n with a name a marker chain can start from: ``pytest.mark.x`` starts with a
    # name bound to ``pytest`` (or unbound ``pytest``), ``mark.x`` with one bound to
    # ``pytest.mark``, and that name's line is within the lines of every node around the
    # chain. So a node whose lines have none holds no marker and is not walked (most of a
    # file's nodes are so skipped).
    hits = _lines_naming(source, _marker_roots(module.imports)) if source and source.isascii() else None
    # ``ast.walk``'s nodes in another order (the answer is a set), without its generators.
    stack: list[ast.AST] = [module.tree]
    while stack:
        node = stack.pop()
        if hits is not None and not _may_name(node, hits):
            continue
        if isinstance(node, ast.JoinedStr):
            # Before Python 3.12 the positions inside an f-string can be wrong: walk it whole.
            found.update(filter(None, (_marker(inner, qualify) for inner in ast.walk(node))))
            continue
        marker = _marker(node, qualify)
        if marker is not None:
            found.add(marker)
        stack.extend(child_nodes(node))
    return frozenset(found)


def _marker(node: ast.AST, qualify: Callable[[ast.expr], Optional[str]]) -> Optional[str]:
    """``x`` for a ``pytest.mark.x`` attribute node, in any import spelling."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
        name = qualify(node)
        if name and name.startswith("pytest.mark.") and name.count(".") == 2:
            return node.attr
    return None


def _may_name(node: ast.AST, hits: list[int]) -> bool:
    """Whether the lines of ``node`` (from its first decorator) have a counted line."""
    start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    if start is None or end is None or not 0 < start <= end < len(hits):
        return True
    for decorator in getattr(node, "decorator_list", ()):
        start = min(start, decorator.lineno)
    return hits[end] != hits[start - 1]


def _marker_roots(imports: ImportTable) -> set[str]:
    """The names a ``pytest.mark.NAME`` chain can start from (``ImportTable.qualify``)."""
    return {"pytest", *(name for name, dotted in imports.bound.items() if dotted in ("pytest", "pytest.mark"))}


def _lines_naming(source: str, names: set[str]) -> list[int]:
    """``counts[n]``: how many of lines 1..n have one of ``names`` in their text (``counts[0]``
    is 0), split as Python counts lines (``str.splitlines`` also splits at form feeds)."""
    counts = [0]
    for line in source.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        counts.append(counts[-1] + any(name in line for name in names))
    return counts


def registered_markers(tree: ast.Module) -> frozenset[str]:
    """Markers a conftest registers with ``config.addinivalue_line("markers", "NAME: ...")``."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "addinivalue_line"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            and node.args[0].value == "markers"  # type: ignore[attr-defined]
        ):
            found.add(marker_line_name(node.args[1].value))  # type: ignore[attr-defined]
    return frozenset(found)


def marker_line_name(line: str) -> str:
    """The marker a ``markers`` line registers, split as pytest does (``name(args): help``)."""
    return line.split(":")[0].split("(")[0].strip()
