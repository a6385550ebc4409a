"""One ``ast`` pass over a file, shared by every rule."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional, Union

from memsafe_fix.analysis.imports import ImportTable
from memsafe_fix.config import Settings

DefNode = Union[ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef]
# Nodes whose children can be statements: statements, ``except`` handlers, ``match`` cases.
_STATEMENT_CONTAINERS = (ast.stmt, ast.excepthandler) + ((ast.match_case,) if hasattr(ast, "match_case") else ())
_SUPPRESSION = re.compile(r"#\s*memsafe:\s*ignore(?:\[([A-Za-z0-9,\s]*)\])?")
# The seed pattern's own suppression for its async-mock check, honoured for MSF004.
NOQA_ASYNC_MOCK = "async-mock"
# noqa comments as ruff reads them, bare (every rule) or with codes (``MSF001, E501``), so that
# tools can share them (ruff's ``lint.external``).
_NOQA = re.compile(r"#\s*noqa\b(?::\s*([\w\-]+(?:[,\s]+[\w\-]+)*))?", re.IGNORECASE)
_MAY_SUPPRESS = re.compile(r"memsafe:|noqa", re.IGNORECASE)


@dataclass(eq=False)
class Def:
    """A ``class`` or ``def`` statement; ``index`` is its position in source order."""

    index: int
    node: DefNode
    module: "ModuleAnalysis" = field(repr=False)
    parent: Optional["Def"]
    # Directly in the parent's body (not inside an ``if``/``try`` there).
    direct: bool = True
    children: list["Def"] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, ast.ClassDef)

    @property
    def ancestors(self) -> Iterator["Def"]:
        """The enclosing definitions, innermost first."""
        parent = self.parent
        while parent is not None:
            yield parent
            parent = parent.parent

    @property
    def in_function(self) -> bool:
        return any(not parent.is_class for parent in self.ancestors)

    def methods(self) -> dict[str, "Def"]:
        """Functions defined in this class body (the last definition of a name wins); worked
        out once, the answer is shared."""
        found = self.__dict__.get("_methods")
        if found is None:
            found = self.__dict__["_methods"] = {child.name: child for child in self.children if not child.is_class}
        return found

    @cached_property
    def header_lines(self) -> range:
        """Lines from the first decorator to the end of the ``class``/``def`` line."""
        first = min([d.lineno for d in self.node.decorator_list] + [self.node.lineno])
        body_line = self.node.body[0].lineno
        return range(first, max(self.node.lineno, body_line - 1) + 1)


class ModuleAnalysis:
    # The quote string literals prefer in the file, when known beforehand (else worked out from ``source``).
    quote: Optional[str] = None

    def __init__(
        self,
        source: str,
        settings: Settings,
        module_name: str = "",
        path: Optional[Path] = None,
        tree: Optional[ast.Module] = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.module_name = module_name
        # Where the file is, to resolve the project modules it imports (None: nothing resolves).
        self.path = path
        self.tree = tree if tree is not None else ast.parse(source)
        self.imports = ImportTable.from_module(self.tree)
        self.defs: list[Def] = []
        self.top_level: list[Def] = []
        self._collect_defs(self.tree, None, True)
        self._suppressed = _suppressions(source, self.tree) if _MAY_SUPPRESS.search(source) else {}
        self._bindings: dict[int, dict[str, list[ast.stmt]]] = {}
        # ``collection.resolve_bases`` of the classes asked about (the key keeps the class alive).
        self.base_infos: dict[tuple[int, int], object] = {}
        self._self_assignments: dict[int, dict[str, list[ast.expr]]] = {}

    def _collect_defs(self, node: ast.AST, parent: Optional[Def], direct: bool) -> None:
        # ``class``/``def`` only occur in statement bodies, whose fields ``iter_child_nodes``
        # yields in source order, so this preorder walk numbers them as LibCST visits them
        # (``fixer.py`` checks that the names agree).
        # Definitions are only found in statement lists, which come in ``iter_child_nodes``'s order.
        for child in _statement_children(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                entry = Def(len(self.defs), child, self, parent, direct)
                self.defs.append(entry)
                (parent.children if parent else self.top_level).append(entry)
                self._collect_defs(child, entry, True)
            elif isinstance(child, _STATEMENT_CONTAINERS):
                self._collect_defs(child, parent, False)

    def def_of(self, node: ast.AST) -> Def:
        return self._def_by_node[id(node)]

    @cached_property
    def _def_by_node(self) -> dict[int, Def]:
        return {id(d.node): d for d in self.defs}

    def bindings(self, body: list[ast.stmt]) -> dict[str, list[ast.stmt]]:
        """The statements that bind each name in a module or class body, including those
        under ``if``/``try``/``with``/loops there (a name bound twice is ambiguous)."""
        key = id(body)
        if key not in self._bindings:
            self._bindings[key] = _bindings(body)
        return self._bindings[key]

    @cached_property
    def star_imports(self) -> list[str]:
        """Modules of top-level ``from module import *`` statements (relative ones keep their dots)."""
        return [
            "." * stmt.level + (stmt.module or "")
            for stmt in self.tree.body
            if isinstance(stmt, ast.ImportFrom) and any(alias.name == "*" for alias in stmt.names)
        ]

    @cached_property
    def call_index(self) -> dict[int, int]:
        """id() of each call -> its position among all calls, ordered by where they start and,
        for calls starting at the same place, outer first: the order LibCST visits them in."""
        return {id(call): index for index, call in enumerate(calls_in_visiting_order(self.tree))}

    def self_assignments(self, cls: Def) -> dict[str, list[ast.expr]]:
        """``self.name = value`` in the methods of ``cls``: name -> values (``None`` constants
        stand for augmented and annotation-only assignments). ``setattr(self, ...)`` is
        recorded under ``*``."""
        if cls.index not in self._self_assignments:
            self._self_assignments[cls.index] = _self_assignments(cls)
        return self._self_assignments[cls.index]

    @cached_property
    def may_setattr(self) -> bool:
        """Whether the file may call ``setattr`` (imported modules come without their text)."""
        return not self.source or "setattr" in self.source

    @cached_property
    def module_classes(self) -> dict[str, Def]:
        return {d.name: d for d in self.top_level if d.is_class}

    @cached_property
    def module_assignments(self) -> dict[str, ast.expr]:
        """Top-level ``NAME = value`` bindings, for markers and conditions kept in variables."""
        found: dict[str, ast.expr] = {}
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        found[target.id] = stmt.value
        return found

    def ignores_line(self, line: int) -> bool:
        """A bare ``# memsafe: ignore`` on ``line`` (every rule)."""
        return line in self._suppressed and self._suppressed[line] is None

    def suppressed(self, code: str, lines: Iterator[int]) -> bool:
        if not self._suppressed:
            return False
        for line in lines:
            codes = self._suppressed.get(line, ())
            if codes is None or code in codes:
                return True
        return False

    def position(self, node: ast.AST) -> tuple[int, int]:
        """1-based line and character column (``ast`` columns count UTF-8 bytes)."""
        line = self.lines[node.lineno - 1] if node.lineno <= len(self.lines) else ""
        col = len(line.encode("utf-8")[: node.col_offset].decode("utf-8", "replace"))
        return node.lineno, col + 1

    @cached_property
    def lines(self) -> list[str]:
        return self.source.splitlines()

    def release(self) -> None:
        """Drop everything this analysis holds, once the file is done: each definition knows
        its module, parent and children, and the caches here hold definitions, so without
        this the file's tree would be freed only by the cyclic collector (which the engine
        keeps off while a file is analysed; each collection after one walks all of it)."""
        for definition in self.defs:
            definition.__dict__.clear()
        self.__dict__.clear()


def calls_in_visiting_order(tree: ast.Module) -> list[ast.Call]:
    """The calls of ``tree`` ordered by where they start and, for calls starting at the same
    place, outer first: the order LibCST visits them in, which numbers call edits."""
    return sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Call)),
        key=lambda c: (c.lineno, c.col_offset, -(c.end_lineno or 0), -(c.end_col_offset or 0)),
    )


def _suppressions(source: str, tree: ast.Module) -> dict[int, Optional[frozenset[str]]]:
    """Lines carrying ``# memsafe: ignore`` or a bare ``# noqa`` (None: every rule), or
    ``# memsafe: ignore[MSF001,...]`` / ``# noqa: MSF001, ...`` (those codes; the seed
    pattern's ``# noqa: async-mock`` is MSF004)."""
    comments = _comments_from_tree(source, tree)
    if comments is None:
        comments = _comments_from_tokens(source)
    found: dict[int, Optional[frozenset[str]]] = {}
    for line, comment in comments:
        for codes in _suppressed_codes(comment):
            known = found.get(line, frozenset())
            found[line] = None if codes is None or known is None else known | codes
    return found


def _comments_from_tokens(source: str) -> list[tuple[int, str]]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    return [(token.start[0], token.string) for token in tokens if token.type == tokenize.COMMENT]


def _comments_from_tree(source: str, tree: ast.Module) -> Optional[list[tuple[int, str]]]:
    """The comments of the lines that may hold a suppression, without tokenizing the file: a
    comment starts at the first ``#`` of its line outside the string literals, whose places
    the tree gives. None when the tree's places cannot be trusted to tell: a line break other
    than ``\\n`` or a non-ASCII character (tokenize's lines and ``ast``'s byte columns would
    not match), an f-string on such a line, or a ``#`` inside a string over several lines (it
    may be a comment between the parts of an implicitly concatenated string)."""
    if "\r" in source or not source.isascii():
        return None
    lines = source.split("\n")
    wanted: list[int] = []
    line, seen = 1, 0
    for match in _MAY_SUPPRESS.finditer(source):
        line, seen = line + source.count("\n", seen, match.start()), match.start()
        if not wanted or wanted[-1] != line:
            wanted.append(line)
    counts = [0] * (len(lines) + 1)
    for line in wanted:
        counts[line] = 1
    for line in range(1, len(counts)):
        counts[line] += counts[line - 1]
    strings: dict[int, list[ast.expr]] = {}
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if start is not None and end is not None:
            for decorator in getattr(node, "decorator_list", ()):
                start = min(start, decorator.lineno)
            if counts[min(end, len(lines))] == counts[start - 1]:
                continue  # no wanted line in it
        if isinstance(node, ast.JoinedStr):
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                strings.setdefault(line, []).append(node)
            continue
        stack.extend(child_nodes(node))
    comments = []
    for line in wanted:
        text = lines[line - 1]
        column = text.find("#")
        while column >= 0:
            inside = [s for s in strings.get(line, ()) if _covers(s, line, column)]
            if not inside:
                comments.append((line, text[column:]))
                break
            if any(s.lineno != s.end_lineno for s in inside):
                return None
            column = text.find("#", column + 1)
    return comments


def _covers(node: ast.expr, line: int, column: int) -> bool:
    return (node.lineno, node.col_offset) <= (line, column) < (node.end_lineno or node.lineno, node.end_col_offset or 0)


def _suppressed_codes(comment: str) -> Iterator[Optional[frozenset[str]]]:
    """The codes each suppression in one comment names (None: every rule)."""
    noqa = _NOQA.search(comment)
    if noqa:
        if noqa.group(1) is None:
            yield None
        else:
            names = [name.upper() for name in re.split(r"[,\s]+", noqa.group(1)) if name]
            yield frozenset("MSF004" if name == NOQA_ASYNC_MOCK.upper() else name for name in names)
    match = _SUPPRESSION.search(comment)
    if match:
        codes = match.group(1)
        yield None if codes is None else frozenset(c.strip().upper() for c in codes.split(",") if c.strip())


_BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def _bindings(body: list[ast.stmt]) -> dict[str, list[ast.stmt]]:
    found: dict[str, list[ast.stmt]] = {}
    _add_bindings(list(body), found)
    return found


def _add_bindings(statements: list[ast.AST], found: dict[str, list[ast.stmt]]) -> None:
    # A module-level function, not one nested in ``_bindings``: a nested function that calls
    # itself is a reference cycle, which would keep ``found`` (and the statements in it, the
    # whole tree) alive until the cyclic collector runs.
    for stmt in statements:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not any(_is_overload(d) for d in stmt.decorator_list):  # stubs for type checkers
                found.setdefault(stmt.name, []).append(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                if alias.name != "*":
                    local = alias.asname or (alias.name.split(".")[0] if isinstance(stmt, ast.Import) else alias.name)
                    found.setdefault(local, []).append(stmt)
        else:
            # Names the statement binds itself: targets, loop variables, ``as`` names.
            if isinstance(stmt, ast.excepthandler) and stmt.name:
                found.setdefault(stmt.name, []).append(stmt)  # type: ignore[arg-type]
            for field_name, value in ast.iter_fields(stmt):
                if field_name in _BLOCK_FIELDS:
                    continue
                for item in value if isinstance(value, list) else [value]:
                    for node in ast.walk(item) if isinstance(item, ast.AST) else ():
                        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                            found.setdefault(node.id, []).append(stmt)  # type: ignore[arg-type]
            for block in _BLOCK_FIELDS:
                _add_bindings(getattr(stmt, block, None) or [], found)


def _is_overload(decorator: ast.expr) -> bool:
    return (isinstance(decorator, ast.Name) and decorator.id == "overload") or (
        isinstance(decorator, ast.Attribute) and decorator.attr == "overload"
    )


def _self_assignments(cls: Def) -> dict[str, list[ast.expr]]:
    found: dict[str, list[ast.expr]] = {}
    # Assignments are statements: without a ``setattr`` call in the file (imported modules
    # come without their text), walking statements only finds the same, in the same order.
    walk = _walk_outside_classes if cls.module.may_setattr else _statements_outside_classes
    for method in cls.children:
        if method.is_class:
            continue
        for node in walk(method.node):
            if isinstance(node, ast.Assign):
                pairs = [(target, node.value) for target in node.targets]
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                value = node.value if isinstance(node, ast.AnnAssign) and node.value is not None else None
                pairs = [(node.target, value if value is not None else ast.Constant(None))]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
                if node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "self":
                    found.setdefault("*", []).append(ast.Constant(None))
                continue
            else:
                continue
            for target, value in pairs:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    found.setdefault(target.attr, []).append(value)
    return found


def child_nodes(node: ast.AST) -> list[ast.AST]:
    """``list(ast.iter_child_nodes(node))``, in its order, without its two generators."""
    found: list[ast.AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            found.append(value)
        elif isinstance(value, list):
            found.extend(item for item in value if isinstance(item, ast.AST))
    return found


_STATEMENT_FIELDS = frozenset(("body", "orelse", "finalbody", "handlers", "cases"))


def _statement_children(node: ast.AST) -> Iterator[ast.AST]:
    """The statements (``except`` handlers, ``match`` cases) directly in ``node``, in order."""
    for name in node._fields:
        if name in _STATEMENT_FIELDS:
            value = getattr(node, name, None)
            if isinstance(value, list):
                yield from value


def _statements_outside_classes(node: ast.AST) -> Iterator[ast.AST]:
    """The statements of ``_walk_outside_classes(node)`` (and its ``except`` handlers and
    ``match`` cases), in its order, without walking expressions."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for name in current._fields:
            if name in ("body", "orelse", "finalbody", "handlers", "cases"):
                value = getattr(current, name, None)
                if isinstance(value, list):
                    stack.extend(child for child in value if not isinstance(child, ast.ClassDef))


def _walk_outside_classes(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without the bodies of classes defined inside ``node``: their ``self`` is
    another object (a helper class written in a test method)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(child for child in child_nodes(current) if not isinstance(child, ast.ClassDef))


def returns_its_argument(function: Union[ast.FunctionDef, ast.AsyncFunctionDef]) -> bool:
    """A plain ``def`` whose every ``return`` gives back its first parameter, never rebound:
    a decorator that returns the function unchanged (``typing_extensions.override``'s shim,
    which only sets ``__override__`` on it)."""
    params = [*function.args.posonlyargs, *function.args.args]
    if not isinstance(function, ast.FunctionDef) or not params:
        return False
    name = params[0].arg
    # ``return`` is a statement: the statements alone settle most functions (a test, a
    # fixture) before the walk of every expression for ``yield`` and rebindings.
    returns = [node for node in statements_outside_functions(function.body) if isinstance(node, ast.Return)]
    if not returns or not all(isinstance(r.value, ast.Name) and r.value.id == name for r in returns):
        return False
    if yields(function):
        return False
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
            return False
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(child_nodes(node))
    return True


def statements_outside_functions(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The statements (``except`` handlers, ``match`` cases) in ``body``, nested ones included,
    but not those of the functions and classes defined there."""
    stack: list[ast.AST] = list(body)
    while stack:
        current = stack.pop()
        yield current
        if not isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(_statement_children(current))


def yields(function: Union[ast.FunctionDef, ast.AsyncFunctionDef]) -> bool:
    """Whether the function's own body (not a function nested in it) contains ``yield``."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(child_nodes(node))
    return False
