"""Apply planned edits to a file with LibCST, in one pass, keeping everything the edits do not
touch (comments, blank lines, quotes, line endings) byte for byte. Only the top-level statements
the edits touch are parsed (see "splicing" below), the whole file where that could differ.

The guarantees stay where they were: the caller (``engine.fix_source``) compiles the fixed
text and analyses it again (no fix may be left, and the findings reported are that text's);
a slice must print back exactly as it was read, as the whole file had to."""

from __future__ import annotations

import ast
import bisect
import io
import re
import sys
import tokenize
import unicodedata
from collections import defaultdict
from typing import Iterable, Optional, Sequence, Union

import libcst as cst

from memsafe_fix.analysis.module import calls_in_visiting_order
from memsafe_fix.edits import (
    AddArgument,
    AppendStatements,
    Edit,
    ExtendPytestmark,
    Fix,
    FixError,
    ImportName,
    InsertDecorator,
    InsertMethod,
    InsertModuleStatement,
    LossySource,
    ReplaceCallee,
)

__all__ = ["FixError", "LossySource", "apply_fixes"]

DefNode = Union[cst.ClassDef, cst.FunctionDef]
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) or frozenset(
    {"abc", "asyncio", "collections", "contextlib", "functools", "gc", "io", "json", "logging", "os", "pathlib",
     "re", "sys", "tempfile", "time", "typing", "unittest", "warnings"}
)  # fmt: skip


def _same_name(cst_name: str, ast_name: str) -> bool:
    """``ast`` normalizes identifiers (NFKC: ``helper_\ufb01x`` is ``helper_fix``); LibCST keeps them as written."""
    return unicodedata.normalize("NFKC", cst_name) == ast_name


def _parse_keeping_bytes(source: str) -> tuple[cst.Module, str]:
    """The LibCST module of ``source``, and what its code lacks at the end: the final ``\r`` of
    a file whose lines end in a lone CR, which LibCST drops (and nothing else: any other loss
    raises ``LossySource``)."""
    module = cst.parse_module(source)
    code = module.code
    if code == source:
        return module, ""
    if source.endswith("\r") and not source.endswith("\r\n") and code == source[:-1]:
        return module, "\r"
    kept = code.split("\n")
    line = next((n for n, (a, b) in enumerate(zip(source.split("\n"), kept), 1) if a != b), len(kept))
    raise LossySource(line)


def apply_fixes(
    source: str,
    fixes: Iterable[Fix],
    def_names: Sequence[str],
    first_party: frozenset[str] = frozenset(),
    tree: Optional[ast.Module] = None,
    def_nodes: Sequence[ast.stmt] = (),
) -> str:
    """``def_names``: the names of all ``class``/``def`` statements in source order, as the
    analysis numbered them; ``first_party``: top-level names of the project's own modules,
    which isort-style import sections keep apart from third-party imports. With ``tree`` (the
    ``ast`` of ``source``) and ``def_nodes`` (its ``class``/``def`` statements, in the order
    of ``def_names``), LibCST parses only the top-level statements the edits touch (see
    ``_apply_spliced``); the text is the same as when it parses the whole file."""
    fixes = list(fixes)
    if tree is not None:
        try:
            spliced = _apply_spliced(source, fixes, def_names, first_party, tree, def_nodes)
        except Exception:
            # Whatever goes wrong on a slice (a parse error, an edit that does not match) is
            # decided by the whole-file path, which raises the same errors as before.
            spliced = None
        if spliced is not None:
            return spliced
    module, lost_ending = _parse_keeping_bytes(source)
    return _apply_to_module(module, fixes, def_names, first_party)[0].code + lost_ending


def _apply_to_module(
    module: cst.Module,
    fixes: Sequence[Fix],
    def_names: Sequence[str],
    first_party: frozenset[str],
    first_def: int = 0,
    first_call: int = 0,
    subtree_end: Optional[Sequence[int]] = None,
) -> tuple[cst.Module, bool]:
    """``module`` with the edits of ``fixes`` applied, and whether every edit addressed to a
    definition found it; ``first_def``/``first_call``: the definition and call index of its
    first ``class``/``def`` and call, when it is a slice of the file the analysis numbered;
    ``subtree_end``: see ``_EditApplier``."""
    edits = [edit for fix in fixes for edit in fix.edits]
    imports = list(dict.fromkeys(name for fix in fixes for name in fix.imports))
    applier = _EditApplier(edits, def_names, first_def, first_call, subtree_end)
    updated = module.visit(applier)
    body = list(updated.body)
    for edit in dict.fromkeys(e for e in edits if isinstance(e, ImportName)):
        body = _add_imported_name(body, edit)
    for name in imports:
        body = _insert_import(body, name, first_party)
    module_statements = [e for e in edits if isinstance(e, InsertModuleStatement)]
    for edit in module_statements:
        body = _insert_after_imports(body, edit.code)
    return updated.with_changes(body=body), not any(applier.edits.values())


# --- splicing ------------------------------------------------------------------------------
#
# LibCST's parse and print cost most of a fix, and a fix usually touches a few statements of a
# long file. So the file is cut, at line breaks, into slices of whole top-level statements:
# each statement an edit touches (its decorators, its body and the comments and blank lines
# after it, up to the next top-level statement), and for edits of the module's imports, the
# file's head up to the statement after the import block (and the module's last
# ``pytestmark``, the first ``from module import`` ImportName extends). A class or function
# that only gets decorators is sliced up to the end of its header, with a placeholder body.
# Each slice is parsed as a module, edited as the whole module would be, printed, and put
# back in place.
#
# A top-level statement starts a line with no open bracket and no indentation before it, so
# LibCST parses it (with the lines owned by its blocks) the same alone as inside the file: the
# text between the slices is what the whole-file path would print unchanged. Where that
# cannot be shown cheaply the whole file is parsed as before: a file whose lines do not all
# end alike in LF or CRLF (LibCST prints the newlines that are the module's default as it,
# which a slice must then share), a form feed anywhere (LibCST may drop one),
# a statement sharing a line with the one before or after it (``;``), a statement whose first
# line is not where ``ast`` says (``@(`` decorators, a parenthesized expression statement), a
# slice that does not print back as it was, or whose indentation unit (which new blocks get)
# differs from the file's; and any error, which the whole-file path then reports as before.


def _apply_spliced(
    source: str,
    fixes: Sequence[Fix],
    def_names: Sequence[str],
    first_party: frozenset[str],
    tree: ast.Module,
    def_nodes: Sequence[ast.stmt],
) -> Optional[str]:
    """The fixed text, from slices of ``source``; None when it must be parsed whole."""
    if len(def_nodes) != len(def_names):
        return None
    def_lines = [node.lineno for node in def_nodes]
    subtree_end = [bisect.bisect_right(def_lines, node.end_lineno or 0, i + 1) for i, node in enumerate(def_nodes)]
    crlf = source.count("\r\n")
    newline = "\r\n" if crlf else "\n"
    if source.count("\r") != crlf or (crlf and source.count("\n") != crlf) or "\f" in source or not tree.body:
        return None  # lone or mixed carriage returns, form feeds: see above
    statements = tree.body
    line_starts = [0] + [match.end() for match in re.finditer("\n", source)]
    first_lines = [_first_line(stmt, source, line_starts) for stmt in statements]
    # Where each statement starts, for finding the statement of a line: a decorator line left
    # out where unsure falls in no statement.
    starts = [line or stmt.lineno for line, stmt in zip(first_lines, statements)]
    edits = [edit for fix in fixes for edit in fix.edits]

    def statement_of(line: int) -> int:
        index = bisect.bisect_right(starts, line) - 1
        if index < 0 or line > statements[index].end_lineno:  # type: ignore[operator]
            raise FixError(f"line {line} is in no top-level statement")
        return index

    call_lines: list[int] = []
    if any(isinstance(edit, (AddArgument, ReplaceCallee)) for edit in edits):
        call_lines = [call.lineno for call in calls_in_visiting_order(tree)]
    # Each edit's top-level statement; the module's (None) go to the head of the file.
    owner: list[Optional[int]] = []
    for edit in edits:
        if isinstance(edit, (AddArgument, ReplaceCallee)):
            owner.append(statement_of(call_lines[edit.call]))
        elif isinstance(edit, (ImportName, InsertModuleStatement)) or getattr(edit, "target", None) is None:
            owner.append(None)
        else:
            owner.append(statement_of(def_lines[edit.target]))  # type: ignore[union-attr]
    head_end = -1
    if any(fix.imports for fix in fixes) or None in owner:
        head_end = _head_end(statements, edits)
        if head_end is None:
            return None
    # [first, last] top-level statement of each slice, in order, overlapping ones merged.
    spans: list[list[int]] = [[0, head_end]] if head_end >= 0 else []
    for index in sorted({index for index in owner if index is not None}):
        if spans and index <= spans[-1][1]:
            continue
        spans.append([index, index])
    for first, last in spans:
        if first > 0 and (first_lines[first] is None or first_lines[first] <= statements[first - 1].end_lineno):  # type: ignore[operator]
            return None
        if last + 1 < len(statements) and (
            first_lines[last + 1] is None or first_lines[last + 1] <= statements[last].end_lineno  # type: ignore[operator]
        ):
            return None
    indent = _default_indent(source)
    pieces: list[str] = []
    done = 0
    for first, last in spans:
        start = 0 if first == 0 else line_starts[starts[first] - 1]
        end = line_starts[starts[last + 1] - 1] if last + 1 < len(statements) else len(source)
        in_slice = [edit for edit, index in zip(edits, owner) if index is not None and first <= index <= last]
        # A class (or function) that ends the slice and at most gets decorators (the one after
        # the imports gets blank lines above): its lines up to the end of its header, with a
        # placeholder body, rather than all of it.
        stub = ""
        if all(_decorates(edit, statements[last], def_lines) for edit, index in zip(edits, owner) if index == last):
            header_end = _header_end(statements[last], source, line_starts)
            if header_end is not None:
                end, stub = line_starts[header_end], f"{indent}pass{newline}"
        text = source[start:end] + stub
        if text.rstrip("\r\n").endswith("\\"):
            return None  # a line continuation into the next statement's lines
        module = cst.parse_module(text)
        if module.code != text or module.default_indent != indent or module.default_newline != newline:
            return None
        if stub and not _is_stub(module.body[-1]):
            return None
        slice_fixes = [Fix(tuple(in_slice))]
        if first == 0 and head_end >= 0:
            in_slice += [edit for edit, index in zip(edits, owner) if index is None]
            slice_fixes = [Fix(tuple(in_slice), tuple(name for fix in fixes for name in fix.imports))]
            block_end = _import_block(list(module.body))[1]
            if block_end >= len(module.body) and last + 1 < len(statements):
                return None  # the import block may go on after the slice
        first_def = bisect.bisect_left(def_lines, starts[first]) if first else 0
        first_call = bisect.bisect_left(call_lines, starts[first]) if first else 0
        fixed, every_edit_applied = _apply_to_module(
            module, slice_fixes, def_names, first_party, first_def, first_call, subtree_end
        )
        code = fixed.code
        if not every_edit_applied or not code.endswith(stub):
            return None
        pieces += [source[done:start], code[: len(code) - len(stub)]]
        done = end
    return "".join(pieces) + source[done:]


def _decorates(edit: Edit, stmt: ast.stmt, def_lines: Sequence[int]) -> bool:
    """Whether ``edit`` inserts a decorator of ``stmt`` itself (a top-level class or def)."""
    return isinstance(edit, InsertDecorator) and def_lines[edit.target] == stmt.lineno


def _header_end(stmt: ast.stmt, source: str, line_starts: Sequence[int]) -> Optional[int]:
    """The last line of a ``class``/``def`` statement's header (up to its colon), when its
    body starts on a later line: the last line before the body's first statement that is not
    blank or a comment. A wrong guess (a ``#`` line in a string) fails to parse as a header."""
    body = getattr(stmt, "body", None)
    if not isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or not body:
        return None
    line = min([d.lineno for d in getattr(body[0], "decorator_list", [])] + [body[0].lineno]) - 1
    while line > stmt.lineno and source[line_starts[line - 1] : line_starts[line]].lstrip()[:1] in ("", "#"):
        line -= 1
    return line if line >= stmt.lineno else None


def _is_stub(stmt: cst.BaseStatement) -> bool:
    """Whether ``stmt`` is a ``class``/``def`` whose body is only the placeholder ``pass``."""
    if not isinstance(stmt, (cst.ClassDef, cst.FunctionDef)):
        return False
    block = stmt.body
    return (
        isinstance(block, cst.IndentedBlock)
        and len(block.body) == 1
        and isinstance(block.body[0], cst.SimpleStatementLine)
        and [type(s) for s in block.body[0].body] == [cst.Pass]
        and not block.footer
    )


def _first_line(stmt: ast.stmt, source: str, line_starts: Sequence[int]) -> Optional[int]:
    """The line a top-level statement starts on (its first decorator's), when sure of it:
    ``ast`` places a statement where its first token after any opening bracket is."""
    if stmt.col_offset != 0:
        return None  # ``(call())``
    decorators = getattr(stmt, "decorator_list", None)
    if not decorators:
        return stmt.lineno
    line = decorators[0].lineno
    return line if source.startswith("@", line_starts[line - 1]) else None  # not ``@(`` or ``@\\``


def _head_end(statements: Sequence[ast.stmt], edits: Sequence[Edit]) -> Optional[int]:
    """The last top-level statement the module's edits may touch: the one after the leading
    docstring and imports (new imports and statements give it blank lines above), the first
    ``from module import`` of each ``ImportName``, the last ``pytestmark =`` (a module's
    ``ExtendPytestmark``); None when one is missing (the whole-file path reports that)."""
    last = 0
    while last < len(statements) and (
        isinstance(statements[last], (ast.Import, ast.ImportFrom)) or (last == 0 and _is_ast_docstring(statements[0]))
    ):
        last += 1
    last = min(last, len(statements) - 1)
    for edit in edits:
        if isinstance(edit, ImportName):
            found = [
                i
                for i, stmt in enumerate(statements)
                if isinstance(stmt, ast.ImportFrom)
                and stmt.level == 0
                and stmt.module == edit.module
                and all(alias.name != "*" for alias in stmt.names)
            ]
        elif isinstance(edit, ExtendPytestmark) and edit.target is None:
            found = [
                i
                for i, stmt in enumerate(statements)
                if isinstance(stmt, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == "pytestmark" for target in stmt.targets)
            ][-1:]
        else:
            continue
        if not found:
            return None
        last = max(last, found[0])
    return last


def _is_ast_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _default_indent(source: str) -> Optional[str]:
    """The indentation LibCST gives new blocks in ``source``: its first indented block's (None
    when the file does not tokenize)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.INDENT:
                return token.string
    except (tokenize.TokenError, SyntaxError):
        return None
    return "    "


def _blank() -> cst.EmptyLine:
    return cst.EmptyLine(indent=False, whitespace=cst.SimpleWhitespace(""), comment=None)


def _ensure_blank_lines(stmt: cst.CSTNode, count: int) -> cst.CSTNode:
    """Give ``stmt`` at least ``count`` blank lines above it (and above its comments)."""
    leading = list(stmt.leading_lines)
    blanks = 0
    while blanks < len(leading) and leading[blanks].comment is None:
        blanks += 1
    if blanks >= count:
        return stmt
    return stmt.with_changes(leading_lines=[_blank()] * (count - blanks) + leading)


def _as_indented(block: cst.BaseSuite) -> cst.IndentedBlock:
    """``def f(): pass`` -> an indented block, so statements can be added to it."""
    if isinstance(block, cst.IndentedBlock):
        return block
    assert isinstance(block, cst.SimpleStatementSuite)
    return cst.IndentedBlock(body=[cst.SimpleStatementLine(body=list(block.body))], header=block.trailing_whitespace)


def _is_placeholder(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(s, cst.Pass) or (isinstance(s, cst.Expr) and isinstance(s.value, cst.Ellipsis)) for s in stmt.body
    )


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


class _EditApplier(cst.CSTTransformer):
    """Applies the edits in one pass. With ``subtree_end`` (for each definition index, the
    index after the definitions nested in it), the children of a definition that holds no
    edited definition are not visited once no call edit is left (their numbers are skipped):
    the visit costs more than the parse."""

    def __init__(
        self,
        edits: Sequence[Edit],
        def_names: Sequence[str],
        first_def: int = 0,
        first_call: int = 0,
        subtree_end: Optional[Sequence[int]] = None,
    ) -> None:
        self.def_names = def_names
        self.subtree_end = subtree_end
        # Definitions whose nodes ``_leave`` must see: edited ones, and those ``InsertMethod`` places after.
        self.targets = sorted(
            {e.target for e in edits if getattr(e, "target", None) is not None}
            | {e.after for e in edits if isinstance(e, InsertMethod) and e.after is not None}
        )
        self.edits: dict[Optional[int], list[Edit]] = defaultdict(list)
        self.call_edits: dict[int, list[Union[AddArgument, ReplaceCallee]]] = defaultdict(list)
        for edit in edits:
            if isinstance(edit, (AddArgument, ReplaceCallee)):
                self.call_edits[edit.call].append(edit)
            elif not isinstance(edit, (InsertModuleStatement, ImportName)):
                self.edits[edit.target].append(edit)
        self.next_call = first_call
        # id() of each original call node -> its call index (see ``AddArgument``).
        self.call_of: dict[int, int] = {}
        self.next_index = first_def
        self.open_defs: list[int] = []
        # id() of each (updated) def node placed in the tree -> its definition index. The nodes
        # stay alive in the tree being built, so their ids stay unique.
        self.index_of: dict[int, int] = {}

    def _enter(self, node: DefNode) -> None:
        index = self.next_index
        if index >= len(self.def_names) or not _same_name(node.name.value, self.def_names[index]):
            raise FixError(f"definition #{index} (`{node.name.value}`) does not match the analysis")
        self.open_defs.append(index)
        self.next_index += 1

    def _descends(self) -> bool:
        """Whether the children of the definition just entered need visiting."""
        if self.subtree_end is None or self.call_edits:
            return True
        index = self.open_defs[-1]
        end = self.subtree_end[index]
        position = bisect.bisect_right(self.targets, index)
        if position < len(self.targets) and self.targets[position] < end:
            return True
        self.next_index = end
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self._enter(node)
        return self._descends()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._enter(node)
        return self._descends()

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        return self._leave(updated_node)

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        return self._leave(updated_node)

    def visit_Call(self, node: cst.Call) -> None:
        self.call_of[id(node)] = self.next_call
        self.next_call += 1

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        for edit in self.call_edits.pop(self.call_of[id(original_node)], []):
            callee = cst.Module([]).code_for_node(updated_node.func)
            if not _same_name("".join(callee.split()), "".join(edit.callee.split())):
                raise FixError(f"call #{edit.call} calls `{callee}`, not `{edit.callee}` as the analysis found")
            if isinstance(edit, ReplaceCallee):
                updated_node = updated_node.with_changes(func=cst.parse_expression(edit.code))
            else:
                updated_node = updated_node.with_changes(args=_add_argument(updated_node, edit.code))
        return updated_node

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if self.call_edits:
            raise FixError(f"call #{min(self.call_edits)} not found")
        for edit in self.edits.pop(None, []):
            assert isinstance(edit, ExtendPytestmark)
            updated_node = updated_node.with_changes(body=_extend_pytestmark(list(updated_node.body), edit.code))
        return updated_node

    def _leave(self, node: DefNode) -> DefNode:
        index = self.open_defs.pop()
        edits = self.edits.pop(index, [])
        decorators = [e for e in edits if isinstance(e, InsertDecorator)]
        if decorators:
            node = node.with_changes(decorators=_insert_decorators(node.decorators, decorators))
        for edit in edits:
            if isinstance(edit, AppendStatements):
                node = node.with_changes(body=_append_statements(node.body, edit.code, edit.before))
            elif isinstance(edit, InsertMethod):
                node = node.with_changes(body=self._insert_method(node.body, edit))
            elif isinstance(edit, ExtendPytestmark):
                body = _as_indented(node.body)
                node = node.with_changes(body=body.with_changes(body=_extend_pytestmark(list(body.body), edit.code)))
        self.index_of[id(node)] = index
        return node

    def _insert_method(self, suite: cst.BaseSuite, edit: InsertMethod) -> cst.IndentedBlock:
        block = _as_indented(suite)
        body = list(block.body)
        if edit.after is not None:
            positions = [i for i, stmt in enumerate(body) if self.index_of.get(id(stmt)) == edit.after]
            if not positions:
                raise FixError(f"method #{edit.after} not found in its class")
            position = positions[0] + 1
        else:
            position = 0
            while position < len(body) and isinstance(body[position], cst.SimpleStatementLine):
                position += 1
        method = cst.parse_statement(edit.code)
        if block.indent is not None and isinstance(method, cst.FunctionDef):
            # Indented like the class body, not like the file's first block (LibCST's default).
            method = method.with_changes(body=method.body.with_changes(indent=block.indent))
        if position > 0:
            method = _ensure_blank_lines(method, 1)
        if position < len(body):
            body[position] = _ensure_blank_lines(body[position], 1)
        body.insert(position, method)
        return block.with_changes(body=body)


def _separator(whitespace: cst.BaseParenthesizableWhitespace) -> cst.BaseParenthesizableWhitespace:
    """The whitespace after a comma between items, modelled on ``whitespace``: a line break
    (without its comment) where the items are one a line, else one space."""
    if isinstance(whitespace, cst.ParenthesizedWhitespace):
        return cst.ParenthesizedWhitespace(indent=whitespace.indent, last_line=whitespace.last_line)
    return cst.SimpleWhitespace(" ")


def _split_line_end(
    whitespace: cst.BaseParenthesizableWhitespace, separator: cst.BaseParenthesizableWhitespace
) -> tuple[cst.BaseParenthesizableWhitespace, cst.BaseParenthesizableWhitespace]:
    """Whitespace ending the last item (its comment, the line break, the indentation of the
    closing bracket) split in two around a new last item: the first keeps the comment and
    indents like ``separator``, the second closes the bracket as ``whitespace`` did."""
    if isinstance(whitespace, cst.ParenthesizedWhitespace) and isinstance(separator, cst.ParenthesizedWhitespace):
        closing = cst.ParenthesizedWhitespace(indent=whitespace.indent, last_line=whitespace.last_line)
        return whitespace.with_changes(indent=separator.indent, last_line=separator.last_line), closing
    return separator, whitespace


def _add_argument(call: cst.Call, code: str) -> list[cst.Arg]:
    """The call's arguments with ``code`` (``name=value``) appended, in the call's layout: a
    call written one argument a line gets one more line, comments stay where they were."""
    new = cst.parse_expression(f"f({code})").args[0]  # type: ignore[attr-defined]
    args = list(call.args)
    if not args:
        return [new]
    last = args[-1]
    previous = args[-2].comma.whitespace_after if len(args) > 1 else call.whitespace_before_args  # type: ignore[union-attr]
    separator = _separator(previous)
    if isinstance(last.comma, cst.Comma):  # a trailing comma stays trailing
        before, closing = _split_line_end(last.comma.whitespace_after, separator)
        args[-1] = last.with_changes(comma=last.comma.with_changes(whitespace_after=before))
        return [*args, new.with_changes(comma=cst.Comma(whitespace_after=closing))]
    before, closing = _split_line_end(last.whitespace_after_arg, separator)
    if isinstance(before, cst.SimpleWhitespace):
        before = separator  # ``f(a )``: the space after the comma, not the one before ``)``
    args[-1] = last.with_changes(
        comma=cst.Comma(whitespace_after=before), whitespace_after_arg=cst.SimpleWhitespace("")
    )
    return [*args, new.with_changes(whitespace_after_arg=closing)]


def _import_sort_key(alias: cst.ImportAlias) -> tuple[int, str]:
    """isort's and ruff's default ``force-sort-within-sections = false`` order-by-type:
    CONSTANTS, then Classes, then functions."""
    name = cst.Module([]).code_for_node(alias.name)
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return kind, name.lower()


def _add_imported_name(body: list[cst.BaseStatement], edit: ImportName) -> list[cst.BaseStatement]:
    for position, stmt in enumerate(body):
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            continue
        node = stmt.body[0]
        if (
            isinstance(node, cst.ImportFrom)
            and not node.relative
            and node.module is not None
            and cst.Module([]).code_for_node(node.module) == edit.module
            and not isinstance(node.names, cst.ImportStar)
        ):
            names = list(node.names)
            new = cst.ImportAlias(name=cst.Name(edit.name))
            keys = [_import_sort_key(alias) for alias in names]
            index = len(names)
            if keys == sorted(keys):
                index = next((i for i, key in enumerate(keys) if key > _import_sort_key(new)), len(names))
            previous = names[0].comma.whitespace_after if len(names) > 1 else None  # type: ignore[union-attr]
            if previous is None:
                previous = node.lpar.whitespace_after if node.lpar else cst.SimpleWhitespace(" ")
            separator = _separator(previous)
            rpar = node.rpar
            if index < len(names):
                names.insert(index, new.with_changes(comma=cst.Comma(whitespace_after=separator)))
            elif isinstance(names[-1].comma, cst.Comma):  # a trailing comma stays trailing
                last = names[-1]
                before, closing = _split_line_end(last.comma.whitespace_after, separator)
                names[-1] = last.with_changes(comma=last.comma.with_changes(whitespace_after=before))
                names.append(new.with_changes(comma=cst.Comma(whitespace_after=closing)))
            else:
                before, closing = separator, None
                if rpar is not None:
                    before, closing = _split_line_end(rpar.whitespace_before, separator)
                    rpar = rpar.with_changes(whitespace_before=closing)
                names[-1] = names[-1].with_changes(comma=cst.Comma(whitespace_after=before))
                names.append(new)
            node = node.with_changes(names=names, rpar=rpar)
            body[position] = stmt.with_changes(body=[node])
            return body
    raise FixError(f"`from {edit.module} import ...` not found")


def _insert_decorators(existing: Sequence[cst.Decorator], edits: list[InsertDecorator]) -> list[cst.Decorator]:
    result: list[cst.Decorator] = []
    for position in range(len(existing) + 1):
        result += [cst.Decorator(decorator=cst.parse_expression(e.code)) for e in edits if e.position == position]
        if position < len(existing):
            result.append(existing[position])
    return result


def _append_statements(suite: cst.BaseSuite, code: str, before: Optional[str] = None) -> cst.IndentedBlock:
    block = _as_indented(suite)
    body = list(block.body)
    new = list(cst.parse_module(code).body)
    if any(_is_placeholder(stmt) for stmt in body) and all(_is_placeholder(s) or _is_docstring(s) for s in body):
        placeholder = next(i for i, stmt in enumerate(body) if _is_placeholder(stmt))
        new[0] = new[0].with_changes(leading_lines=body[placeholder].leading_lines)
        del body[placeholder]
    position = len(body)
    last = body[-1] if body else None
    if isinstance(last, cst.SimpleStatementLine) and any(isinstance(s, cst.Return) for s in last.body):
        position -= 1
    previous = body[position - 1] if position > 0 else None
    if before is not None and isinstance(previous, cst.SimpleStatementLine) and len(previous.body) == 1:
        call = previous.body[0].value if isinstance(previous.body[0], cst.Expr) else None
        if isinstance(call, cst.Call) and "".join(cst.Module([]).code_for_node(call.func).split()) == before:
            position -= 1  # the comments above the call stay with it
    body[position:position] = new
    return block.with_changes(body=body)


def _extend_pytestmark(body: list[cst.BaseStatement], code: str) -> list[cst.BaseStatement]:
    for position in range(len(body) - 1, -1, -1):
        stmt = body[position]
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small_index, small in enumerate(stmt.body):
            if isinstance(small, cst.Assign) and any(
                isinstance(t.target, cst.Name) and t.target.value == "pytestmark" for t in small.targets
            ):
                new_small = small.with_changes(value=_add_element(small.value, cst.parse_expression(code)))
                new_stmt = stmt.with_changes(body=[*stmt.body[:small_index], new_small, *stmt.body[small_index + 1 :]])
                return [*body[:position], new_stmt, *body[position + 1 :]]
    raise FixError("`pytestmark` assignment not found")


def _newline_indent(depth: int) -> cst.ParenthesizedWhitespace:
    """A line break inside brackets, ``depth`` levels deeper than the statement."""
    return cst.ParenthesizedWhitespace(indent=True, last_line=cst.SimpleWhitespace("    " * depth))


def _exploded(call: cst.BaseExpression, depth: int) -> cst.BaseExpression:
    """A call with one argument a line (black's style), at ``depth`` inside brackets."""
    if not isinstance(call, cst.Call) or not call.args:
        return call
    args = [arg.with_changes(comma=cst.Comma(whitespace_after=_newline_indent(depth + 1))) for arg in call.args]
    args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=_newline_indent(depth)))
    return call.with_changes(whitespace_before_args=_newline_indent(depth + 1), args=args)


def _add_element(value: cst.BaseExpression, mark: cst.BaseExpression) -> cst.List:
    """``value`` (a marker or a list of markers) as a list with ``mark`` appended, one marker
    a line. A list already written one element a line keeps its own layout."""
    mark = _exploded(mark, 1)
    if isinstance(value, cst.List) and value.elements:
        if isinstance(value.lbracket.whitespace_after, cst.ParenthesizedWhitespace):
            elements = list(value.elements)
            last = elements[-1]
            elements[-1] = last.with_changes(comma=cst.Comma(whitespace_after=value.lbracket.whitespace_after))
            elements.append(cst.Element(mark, comma=last.comma))
            return value.with_changes(elements=elements)
        items = [element.value for element in value.elements]
    else:
        items = [value]
    elements = [cst.Element(item, comma=cst.Comma(whitespace_after=_newline_indent(1))) for item in [*items, mark]]
    elements[-1] = elements[-1].with_changes(comma=cst.Comma())
    return cst.List(
        elements,
        lbracket=cst.LeftSquareBracket(whitespace_after=_newline_indent(1)),
        rbracket=cst.RightSquareBracket(whitespace_before=_newline_indent(0)),
    )


# --- imports -------------------------------------------------------------------------------


def _import_names(stmt: cst.BaseStatement) -> Optional[tuple[str, bool]]:
    """(top-level module, is a plain ``import``) for an import line, else None."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    small = stmt.body[0]
    if isinstance(small, cst.Import):
        return cst.Module([]).code_for_node(small.names[0].name).split(".")[0], True
    if isinstance(small, cst.ImportFrom):
        if small.relative or small.module is None:
            return ".", False
        return cst.Module([]).code_for_node(small.module).split(".")[0], False
    return None


def _import_block(body: list[cst.BaseStatement]) -> tuple[int, int]:
    """[start, end) of the leading import block, after the docstring and ``__future__`` imports."""
    start = 1 if body and _is_docstring(body[0]) else 0
    while start < len(body) and (_import_names(body[start]) or ("", False))[0] == "__future__":
        start += 1
    end = start
    while end < len(body) and _import_names(body[end]) is not None:
        end += 1
    return start, end


STDLIB, THIRD_PARTY, FIRST_PARTY = 0, 1, 2


def _category(module: str, first_party: frozenset[str]) -> int:
    if module == "." or module in first_party:
        return FIRST_PARTY
    return STDLIB if module in _STDLIB else THIRD_PARTY


def _insert_import(body: list[cst.BaseStatement], module: str, first_party: frozenset[str]) -> list[cst.BaseStatement]:
    """Insert ``import module`` isort-style: into its section (stdlib, else the first
    third-party group), after the plain imports that sort before it."""
    start, end = _import_block(body)
    category = _category(module, first_party)
    entries = [(i, *_import_names(body[i])) for i in range(start, end)]  # type: ignore[misc]
    section = [(i, name, plain) for i, name, plain in entries if _category(name, first_party) == category]
    if category == THIRD_PARTY and section:
        # Unrecognised first-party imports usually form a later group: stay in the first one.
        group_end = next((i for i in range(section[0][0] + 1, end) if _starts_group(body[i])), end)
        section = [entry for entry in section if entry[0] < group_end]
    if section:
        later = [i for i, name, plain in section if plain and name.lower() > module.lower()]
        plain = [i for i, _, is_plain in section if is_plain]
        position = later[0] if later else plain[-1] + 1 if plain else section[0][0]
        return _place_import(body, position, module, new_section=False)
    earlier = [i for i, name, _ in entries if _category(name, first_party) < category]
    return _place_import(body, earlier[-1] + 1 if earlier else start, module, new_section=True)


def _starts_group(stmt: cst.BaseStatement) -> bool:
    return any(line.comment is None for line in stmt.leading_lines)


def _place_import(
    body: list[cst.BaseStatement], position: int, module: str, new_section: bool
) -> list[cst.BaseStatement]:
    body = list(body)
    start, end = _import_block(body)
    new: cst.BaseStatement = cst.parse_statement(f"import {module}")
    following = body[position] if position < len(body) else None
    section_start = position == start or (following is not None and _starts_group(following) and not new_section)
    if following is not None and position < end and section_start:
        # Heading comments and spacing of the section now sit above the new first import.
        new = new.with_changes(leading_lines=following.leading_lines)
        following = following.with_changes(leading_lines=[])
    elif new_section and position > 0:
        new = _ensure_blank_lines(new, 1)
    if following is not None:
        if position >= end:
            following = _ensure_blank_lines(following, _blank_lines_before(following))
        elif new_section:
            following = _ensure_blank_lines(following, 1)
        body[position] = following
    body.insert(position, new)
    return body


def _blank_lines_before(stmt: cst.BaseStatement) -> int:
    """PEP 8 spacing below imports: two blank lines before a top-level def or class, else one."""
    return 2 if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) else 1


def _insert_after_imports(body: list[cst.BaseStatement], code: str) -> list[cst.BaseStatement]:
    _, end = _import_block(body)
    new = _ensure_blank_lines(cst.parse_statement(code), 2 if end else 0)
    body = list(body)
    if end < len(body):
        body[end] = _ensure_blank_lines(body[end], 2)
    body.insert(end, new)
    return body
