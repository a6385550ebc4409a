"""Big files checked a slice at a time, so that memory is bounded by the largest slice.

``ast.parse`` of a 10 MB test file builds about 1.3 GB of nodes. A file this big is read as
*chunks* of whole top-level statements instead, each parsed on its own; only a small summary of
the module (its top-level statements other than ``class``/``def``, the names of its top-level
definitions, what the rules need to know about all of it) is kept between chunks.

Where a chunk may end: at the start of a line that begins a new top-level statement. Cheap
candidates are lines starting with a character that can begin a statement (not blank, not a
comment, not a closing bracket, not ``else``/``elif``/``except``/``finally``, not the line after a
decorator); a candidate inside a string, brackets or a backslash continuation makes the text
before it fail to parse (an unterminated string or bracket, a continuation at the end of the
input), so a chunk that parses ends where the whole file's tokenizer is at top level too, and
the chunk parses exactly as that part of the whole file does. A chunk that does not parse is
extended; when the file's end is reached without a parse, the caller falls back to the whole
file (which reports the syntax error).

Each chunk is then analysed as a module of its own statements plus *context*: every top-level
statement that is not a definition (imports, assignments, ``pytestmark``, ``if`` blocks), and
the top-level definitions named in the chunk or in that context (bases, helpers, fixtures by
function or ``name=``), followed transitively, all in source order. Two facts depend on the
definitions that use a class, not on those it uses (a subclass whose teardown reads ``self``
after calling its base's, a fixture reading ``request.instance`` late): they are worked out for
the whole file while chunking. Findings are kept from the chunk that holds their line, with
lines mapped back to the file's.
"""

from __future__ import annotations

import ast
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from memsafe_fix.analysis.module import ModuleAnalysis
from memsafe_fix.config import Settings

# A file is read in chunks from this size on, each chunk about CHUNK_CHARS long.
CHUNKED_FROM = 512_000
CHUNK_CHARS = 256_000
# Context (statements of other chunks) larger than this many chunks' worth: the whole file is parsed.
MAX_CONTEXT_CHUNKS = 4

_CANDIDATE = re.compile(r"^(?=[^\s#)\]}])(?!(?:else|elif|except|finally)\b)", re.MULTILINE)
# Characters ``str.splitlines`` (the analysis's line list) breaks lines at but Python does not,
# and a ``\r`` not followed by ``\n``: their lines would be counted differently; such files are
# parsed whole.
_ODD_LINE_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]|\r(?!\n)")
_WORD = re.compile(r"[^\W\d]\w*")
_ASCII_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass
class Unit:
    """Top-level statements starting on one line: ``source[start:end]`` (its trailing blank and
    comment lines included), starting on line ``line`` of the file."""

    start: int
    end: int
    line: int
    # Names a definition can be looked up by (its name, and strings in its decorators, such as
    # a fixture's ``name=``); None for a unit that is not only definitions.
    names: Optional[frozenset[str]]
    # The line its first statement starts on (after leading comments at the top of the file);
    # None when it has none.
    first: Optional[int] = None


@dataclass
class Chunk:
    units: list[Unit]

    @property
    def start(self) -> int:
        return self.units[0].start

    @property
    def end(self) -> int:
        return self.units[-1].end

    @property
    def line(self) -> int:
        return self.units[0].line


@dataclass
class Plan:
    source: str
    chunks: list[Chunk]
    # Base names of classes whose ``teardown_method`` reads ``self`` after calling the base's.
    bases_read_after_super: frozenset[str] = frozenset()
    # A module-level function uses ``request.instance`` in its teardown.
    uses_instance_in_teardown: bool = False
    by_name: dict[str, list[Unit]] = field(default_factory=dict)


def wants_chunks(source: str) -> bool:
    return len(source) >= CHUNKED_FROM and _ODD_LINE_BREAKS.search(source) is None


def plan(source: str, settings: Settings, module_name: str, path: Optional[Path]) -> Optional[Plan]:
    """The file's chunks, or None when it is to be parsed whole (it does not split, or it has a
    syntax error, which the whole file's parse reports)."""
    from memsafe_fix.rules.release_state import module_reads_after_super, module_uses_instance_in_teardown

    if _ODD_LINE_BREAKS.search(source):
        return None
    candidates = _candidates(source)
    result = Plan(source, [])
    start, line, position = 0, 1, 0
    while start < len(source):
        size = CHUNK_CHARS
        while True:
            position = bisect_right(candidates, start + size - 1, position)
            end = candidates[position] if position < len(candidates) else len(source)
            text = source[start:end]
            try:
                tree = ast.parse(text)
                break
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                if end == len(source):
                    return None
                size *= 2
        chunk = Chunk(_units(tree, text, start, line))
        result.chunks.append(chunk)
        if not text.isascii() or "teardown_method" in text or "instance" in text:
            module = ModuleAnalysis(text, settings, module_name, path, tree)
            result.bases_read_after_super |= module_reads_after_super(module)
            result.uses_instance_in_teardown = result.uses_instance_in_teardown or module_uses_instance_in_teardown(
                module
            )
            release(module)
        del tree
        line += text.count("\n")
        start = end
    for chunk in result.chunks:
        for unit in chunk.units:
            for name in unit.names or ():
                result.by_name.setdefault(name, []).append(unit)
    return result


# The head of a definition: decorators (their strings may name a fixture), then ``def``/``class``.
_DEF_LINE = re.compile(r"^(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)", re.MULTILINE)
_STRING_NAME = re.compile(r"[\"']([^\W\d]\w*)[\"']")
_READ_LATE = re.compile(r"\.[\s\\]*(?:teardown_method|instance)\b")


def quick_plan(source: str, settings: Settings, module_name: str, path: Optional[Path]) -> Optional[Plan]:
    """The file's chunks from its text alone, without parsing it: each line where a chunk may
    end is taken to start a statement, and a unit starting with ``@``/``def``/``class`` to be a
    definition. ``ChunkAnalysis`` checks this against the parse of every chunk (``valid``);
    where it does not hold, use ``plan``, which parses to find the statements."""
    from memsafe_fix.rules.release_state import module_reads_after_super, module_uses_instance_in_teardown

    if _ODD_LINE_BREAKS.search(source):
        return None
    bounds = _candidates(source)
    if not bounds or _CANDIDATE.match(source) is None:
        bounds = bounds[1:]  # the first unit starts with comments: up to the second statement
    bounds = [0, *bounds, len(source)]
    result = Plan(source, [])
    chunk: list[Unit] = []
    size = 0
    line = 1
    first = _first_statement_line(source, len(source) if len(bounds) < 3 else bounds[1])
    for start, end in zip(bounds, bounds[1:]):
        text = source[start:end]
        names = _text_names(text)
        unit = Unit(start, end, line, names, line + first)
        first = 0
        if _READ_LATE.search(text) or not text.isascii():
            try:
                module = ModuleAnalysis(text, settings, module_name, path)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return None
            result.bases_read_after_super |= module_reads_after_super(module)
            result.uses_instance_in_teardown = result.uses_instance_in_teardown or module_uses_instance_in_teardown(
                module
            )
            release(module)
        chunk.append(unit)
        size += end - start
        if size >= CHUNK_CHARS:
            result.chunks.append(Chunk(chunk))
            chunk, size = [], 0
        line += text.count("\n")
    if chunk:
        result.chunks.append(Chunk(chunk))
    _index_names(result)
    return result


def _first_statement_line(source: str, end: int) -> int:
    """Lines before the first statement (comments and blank lines at the top of the file)."""
    match = _CANDIDATE.search(source, 0, end)
    return source.count("\n", 0, match.start()) if match else 0


def _text_names(text: str) -> Optional[frozenset[str]]:
    """A unit's names, read from its text when it looks like a definition."""
    match = _DEF_LINE.search(text) if text.startswith("@") else _DEF_LINE.match(text)
    if match is None:
        return None
    names = {match.group(1), *_STRING_NAME.findall(text, 0, match.start())}
    if not text.isascii():
        names = {unicodedata.normalize("NFKC", name) for name in names}
    return frozenset(names)


def _index_names(result: Plan) -> None:
    for chunk in result.chunks:
        for unit in chunk.units:
            for name in unit.names or ():
                result.by_name.setdefault(name, []).append(unit)


def _candidates(source: str) -> list[int]:
    """Offsets of the lines where a chunk may end: not after a decorator line."""
    found: list[int] = []
    after_decorator = False
    for match in _CANDIDATE.finditer(source):
        offset = match.start()
        if offset and not after_decorator:
            found.append(offset)
        after_decorator = source.startswith("@", offset)
    return found


def _units(tree: ast.Module, text: str, offset: int, first_line: int) -> list[Unit]:
    """The chunk's statements grouped by the line they start on."""
    line_starts = [0]
    line_starts += (m.end() for m in re.finditer("\n", text))
    groups: list[tuple[int, list[ast.stmt]]] = []
    for stmt in tree.body:
        begin = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
        if groups and groups[-1][0] == begin:
            groups[-1][1].append(stmt)
        else:
            groups.append((begin, [stmt]))
    units: list[Unit] = []
    for index, (begin, statements) in enumerate(groups):
        start = 0 if index == 0 else line_starts[begin - 1]
        end = line_starts[groups[index + 1][0] - 1] if index + 1 < len(groups) else len(text)
        names = None
        if all(isinstance(s, _DEFS) for s in statements):
            names = frozenset().union(*(_names(s) for s in statements))
        unit_line = first_line + (0 if index == 0 else begin - 1)
        units.append(Unit(offset + start, offset + end, unit_line, names, first_line + begin - 1))
    if not units:  # only comments and blank lines
        units.append(Unit(offset, offset + len(text), first_line, None))
    return units


def _names(stmt: ast.stmt) -> frozenset[str]:
    names = {stmt.name}  # type: ignore[attr-defined]
    for decorator in stmt.decorator_list:  # type: ignore[attr-defined]
        for node in ast.walk(decorator):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(unicodedata.normalize("NFKC", node.value))
    return frozenset(names)


def _words(text: str) -> set[str]:
    if text.isascii():
        return set(_ASCII_WORD.findall(text))  # the same words, 40 % faster than ``_WORD``
    words = set(_WORD.findall(text))
    words |= {unicodedata.normalize("NFKC", w) for w in words if not w.isascii()}
    return words


def contexts(plan: Plan) -> Iterator[tuple[Chunk, list[Unit]]]:
    """Each chunk with the units of other chunks its analysis needs, in source order: every
    unit that is not only definitions, and the definitions those or the chunk name."""
    others = [u for chunk in plan.chunks for u in chunk.units if u.names is None]
    named_by_others = _closure(plan, others, set(), set())
    for chunk in plan.chunks:
        own = {id(u) for u in chunk.units}
        named = _closure(plan, [_whole(chunk)], set(), own)
        units = [u for u in [*others, *named_by_others, *named] if id(u) not in own]
        units = list({id(u): u for u in units}.values())
        units.sort(key=lambda u: u.start)
        yield chunk, units


def _whole(chunk: Chunk) -> Unit:
    return Unit(chunk.start, chunk.end, chunk.line, None)


def _closure(plan: Plan, start: list[Unit], seen: set[int], exclude: set[int]) -> list[Unit]:
    """The definitions named in ``start`` (and in those, transitively), other than ``exclude``;
    ``seen`` collects them."""
    found: list[Unit] = []
    pending = list(start)
    names_seen: set[str] = set()
    while pending:
        unit = pending.pop()
        words = _words(plan.source[unit.start : unit.end]) - names_seen
        names_seen |= words
        for word in words:
            for other in plan.by_name.get(word, ()):
                if id(other) not in seen and id(other) not in exclude:
                    seen.add(id(other))
                    found.append(other)
                    pending.append(other)
    return found


class ChunkAnalysis(ModuleAnalysis):
    """A chunk and its context as one module, in the text of those units only; ``position``
    gives lines of the whole file."""

    def __init__(
        self, plan: Plan, chunk: Chunk, context: list[Unit], settings: Settings, module_name: str, path: Optional[Path]
    ) -> None:
        pieces = sorted([*context, _whole(chunk)], key=lambda u: u.start)
        texts: list[str] = []
        self._starts: list[int] = []  # first line of each piece in this module's text
        self._lines: list[int] = []  # ... and in the file
        # The first line of each unit's first statement in this module's text, and the unit.
        self._units: list[tuple[int, Unit]] = []
        line = 1
        for piece in pieces:
            text = plan.source[piece.start : piece.end]
            texts.append(text)
            self._starts.append(line)
            self._lines.append(piece.line)
            for unit in chunk.units if piece.start == chunk.start else [piece]:
                if unit.first is not None:
                    self._units.append((line + unit.first - piece.line, unit))
            line += text.count("\n")
        super().__init__("".join(texts), settings, module_name, path)

    def valid(self) -> bool:
        """Whether the units are this module's statements: each starts where one of them does,
        and a unit taken for definitions (looked up by name) holds only definitions so named."""
        starts = [line for line, _ in self._units]
        seen: set[int] = set()
        for stmt in self.tree.body:
            begin = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
            index = bisect_right(starts, begin) - 1
            if index < 0:
                return False
            line, unit = self._units[index]
            if unit.names is not None and not (isinstance(stmt, _DEFS) and stmt.name in unit.names):
                return False
            if begin != line and line not in seen:
                return False
            seen.add(line)
        return len(seen) == len(starts)

    def file_line(self, line: int) -> int:
        index = bisect_right(self._starts, line) - 1
        return self._lines[index] + line - self._starts[index]

    def position(self, node: ast.AST) -> tuple[int, int]:
        line, col = super().position(node)
        return self.file_line(line), col


def release(module: ModuleAnalysis) -> None:
    """Free a chunk's tree as soon as it is dropped (see ``ModuleAnalysis.release``)."""
    module.release()
