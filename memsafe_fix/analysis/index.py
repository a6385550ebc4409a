"""The index of imported modules, shared by every worker process of a run.

The modules test files import (to resolve base classes and ``patch`` targets) are parsed with
``ast`` once per run: the first process that needs one stores its trimmed tree in the run's
index folder, where the other processes load it. ``engine.run`` creates that folder for a
parallel run (private: ``mkdtemp``'s 0700, owned by the process) and hands it to its workers
with ``use_folder``; nothing from outside the run (no environment variable) can point the
index at another folder, so no pickle the run did not write is ever loaded.
Trimming drops what no rule reads in an imported module, the bodies of plain functions (but for
their ``self.x = ...`` assignments), which also makes loading a stored tree several times faster
than parsing the source again. Kept: module and class bodies, signatures and decorators, whether
a function yields, the bodies of functions that define functions (decorators, fixture
factories), of functions that return their argument unchanged (decorator shims) and of teardown
methods; a ``conftest.py`` is kept whole, since its fixtures' bodies are read. Every process trims the
same way, whether the index folder is there or not, so results never depend on it.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

from memsafe_fix.analysis.module import returns_its_argument, statements_outside_functions, yields

# Methods whose bodies the rules read in imported base classes (MSF002, MSF006).
KEPT_BODIES = frozenset({"teardown_method", "tearDown"})

FunctionNode = Union[ast.FunctionDef, ast.AsyncFunctionDef]

# The folder of the run's shared index, in a worker process of a parallel run (else None).
_folder: Optional[str] = None


def use_folder(folder: Optional[str]) -> None:
    """Share the index in ``folder``, which this run created (``engine.run``'s workers)."""
    global _folder
    _folder = folder


def load_tree(path: Path) -> ast.Module:
    """The trimmed tree of the module at ``path``. Raises ``OSError``, ``UnicodeDecodeError``,
    ``SyntaxError`` or ``ValueError`` for a file that cannot be read or parsed."""
    entry = Path(_folder) / f"{_key(path)}.pickle" if _folder else None
    if entry is not None and entry.is_file():
        try:
            tree = pickle.loads(entry.read_bytes())
            if isinstance(tree, ast.Module):
                return tree
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
            pass  # being written by another process, or damaged: parse it here
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    if path.name != "conftest.py":
        # Split as Python counts lines (``str.splitlines`` also splits at form feeds).
        tree = _Trimmer(source.replace("\r\n", "\n").replace("\r", "\n").split("\n")).visit(tree)
    if entry is not None:
        _store(entry, tree)
    return tree


def _key(path: Path) -> str:
    stat = path.stat()
    identity = f"{path.resolve()}\0{stat.st_mtime_ns}\0{stat.st_size}\0{sys.version_info[:2]}"
    return hashlib.sha1(identity.encode()).hexdigest()


def _store(entry: Path, tree: ast.Module) -> None:
    """Write atomically, so another process never loads half a tree."""
    try:
        fd, temporary = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(tree, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, entry)
    except OSError:
        pass  # the index is an optimisation: a process that cannot write it parses again


def _self_assignments(function: FunctionNode) -> list[ast.stmt]:
    """The ``self.x = ...`` (and ``setattr(self, ...)``) statements of a method body, wherever
    they are in it: MSF004 reads what an instance's attributes are (``self.client = Client()``
    in ``__init__``). Assignments are statements, so only statements are walked."""
    found: list[ast.stmt] = []
    for node in statements_outside_functions(function.body):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and _is_self(t.value) for t in targets):
                found.append(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Name) and call.func.id == "setattr" and call.args and _is_self(call.args[0]):
                found.append(node)
    return sorted(found, key=lambda stmt: (stmt.lineno, stmt.col_offset))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a body and of the blocks in it (``if``/``try``/``with``...)."""
    for stmt in body:
        yield stmt
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                yield from _statements(getattr(stmt, block, None) or [])


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


class _Trimmer:
    """Trims a module's tree in place, visiting statements only: definitions occur only in
    statement lists, so expressions (most of a tree) are never walked. ``lines`` is the
    module's source, split into lines, to rule questions out from a function's text."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def visit(self, tree: ast.Module) -> ast.Module:
        self._body(tree.body)
        return tree

    def _body(self, body: list[ast.stmt]) -> None:
        for stmt in statements_outside_functions(body):
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._function(stmt)
            elif isinstance(stmt, ast.ClassDef):
                self._body(stmt.body)

    def _function(self, node: FunctionNode) -> None:
        # Each question below is about a keyword or name in the body, so the body's text
        # settles it when the word is not there, without walking the statements.
        text = "\n".join(self.lines[node.body[0].lineno - 1 : node.end_lineno or len(self.lines)])
        if (
            node.name in KEPT_BODIES
            or (
                "def" in text
                and any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) for s in _statements(node.body))
            )
            or ("return" in text and returns_its_argument(node))
        ):
            self._body(node.body)
            return
        # A body that yields stays a generator body: MSF004 tells async generators apart.
        stand_in = ast.Expr(ast.Yield(None)) if "yield" in text and yields(node) else ast.Pass()
        kept = _self_assignments(node) if "self" in text else []
        node.body = [ast.fix_missing_locations(ast.copy_location(stand_in, node.body[0])), *kept]
