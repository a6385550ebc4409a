"""Process files: analyse with ``ast``, fix with LibCST only when needed, verify, diff, write."""

from __future__ import annotations

import ast
import io
import os
import tempfile
import tokenize
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

import libcst as cst

from memsafe_fix.analysis.index import INDEX_FOLDER
from memsafe_fix.analysis.markers import registered_markers, used_markers
from memsafe_fix.analysis.module import ModuleAnalysis
from memsafe_fix.analysis.project import first_party_names
from memsafe_fix.analysis.targets import Resolution
from memsafe_fix.config import Settings
from memsafe_fix.edits import Finding
from memsafe_fix.fixer import FixError, apply_fixes
from memsafe_fix.report import unified_diff
from memsafe_fix.rules import ALL_RULES, Context
from memsafe_fix.rules.async_patch import AsyncPatch

# Below this many files, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 32


class Mode(str, Enum):
    CHECK = "check"
    DIFF = "diff"
    WRITE = "write"


@dataclass(frozen=True)
class PatchTarget:
    line: int
    col: int
    target: str
    resolution: Resolution


@dataclass
class FileResult:
    display: str
    # Findings left after this run (for CHECK: all of them).
    findings: list[Finding] = field(default_factory=list)
    # Findings fixed (WRITE) or that would be fixed (DIFF).
    fixed: list[Finding] = field(default_factory=list)
    diff: str = ""
    # WRITE on stdin: the fixed file's bytes, to print instead of writing.
    output: Optional[bytes] = None
    error: Optional[str] = None
    # With ``--verbose``: every ``patch`` target MSF004 looked at, and what it found.
    patch_targets: list[PatchTarget] = field(default_factory=list)
    # For the project-level rules (``doctor.py``): the pytest markers the file uses once this
    # run's fixes are applied (``xdist_group`` too when MSF001 adds it), and those it registers
    # (a conftest's ``config.addinivalue_line("markers", ...)``).
    markers: frozenset[str] = frozenset()
    registered: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Job:
    path: Path
    display: str
    settings: Settings
    mode: Mode
    verbose: bool = False


def check_source(source: str, settings: Settings, module_name: str, path: Optional[Path] = None) -> list[Finding]:
    """Every enabled rule's findings for one file's text, in source order. ``path`` lets rules
    look at the project modules the file imports."""
    return _check(ModuleAnalysis(source, settings, module_name, path))


def _check(module: ModuleAnalysis) -> list[Finding]:
    context = Context(module)
    enabled = [rule for rule in ALL_RULES if module.settings.rule_enabled(rule.code, module.path)]
    findings = [finding for rule in enabled for finding in rule.check(context)]
    return sorted(findings, key=lambda f: (f.line, f.col, f.code))


def patch_targets(module: ModuleAnalysis) -> list[PatchTarget]:
    """What MSF004 found out about each ``patch`` target in a file (resolved or not)."""
    if not module.settings.rule_enabled(AsyncPatch.code, module.path):
        return []
    context = Context(module)
    for _ in AsyncPatch().check(context):
        pass
    return [PatchTarget(*module.position(call), target, found) for call, target, found in context.resolutions]


def fix_source(
    source: str,
    settings: Settings,
    module_name: str,
    first_party: frozenset[str] = frozenset(),
    path: Optional[Path] = None,
    module: Optional[ModuleAnalysis] = None,
) -> tuple[str, list[Finding], list[Finding]]:
    """(new source, findings fixed, findings remaining). Raises ``SyntaxError`` for bad input
    and ``FixError`` when the result would not compile or would not be stable. ``module``: the
    source's analysis, when the caller already has it."""
    if module is None:
        module = ModuleAnalysis(source, settings, module_name, path)
    findings = _check(module)
    fixable = [f for f in findings if f.fix is not None]
    if not fixable:
        return source, [], findings
    def_names = [d.name for d in module.defs]
    new_source = apply_fixes(source, [f.fix for f in fixable if f.fix is not None], def_names, first_party)
    try:
        # One parse of the new text serves both the compile check and the re-check; compiling
        # the tree still catches what ast.parse lets through (a misplaced __future__ import).
        new_tree = ast.parse(new_source)
        compile(new_tree, module_name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        compile(module.tree, module_name, "exec", dont_inherit=True)  # the input's own error wins
        raise FixError(f"the fixed file would not compile ({exc.msg}, line {exc.lineno})") from exc
    remaining = _check(ModuleAnalysis(new_source, settings, module_name, path, new_tree))
    if any(f.fix is not None for f in remaining):
        raise FixError(f"fixing is not stable: {remaining[0].code} still applies at line {remaining[0].line}")
    return new_source, fixable, remaining


def read_source(data: bytes) -> tuple[str, str]:
    """Decode like Python does (BOM, coding cookie); returns (text, encoding to write back)."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding), encoding


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` via a temporary file and rename, keeping its mode. A
    symlink is written through: its target changes, the link stays a link."""
    path = path.resolve()
    mode = path.stat().st_mode
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".memsafe-tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def process(job: Job, data: Optional[bytes] = None) -> FileResult:
    """Check, diff or fix one file. ``data``: its bytes when they do not come from ``job.path``
    (stdin); then ``--write`` returns the fixed bytes in ``result.output`` instead of writing."""
    result = FileResult(job.display)
    from_stdin = data is not None
    try:
        if data is None:
            data = job.path.read_bytes()
        source, encoding = read_source(data)
    except OSError as exc:
        result.error = f"{job.display}:1:1: error: cannot read file: {exc.strerror or exc}"
        return result
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        result.error = f"{job.display}:1:1: error: cannot decode file: {exc}"
        return result
    module_name = job.path.stem
    try:
        module = ModuleAnalysis(source, job.settings, module_name, job.path)
        result.markers = used_markers(module)
        if module_name == "conftest":
            result.registered = registered_markers(module.tree)
        if job.verbose:
            result.patch_targets = patch_targets(module)
        if job.mode is Mode.CHECK:
            result.findings = _check(module)
            _note_added_markers(result)
            return result
        first_party = first_party_names(job.path.parent.resolve())
        new_source, result.fixed, result.findings = fix_source(
            source, job.settings, module_name, first_party, job.path, module
        )
        _note_added_markers(result)
        if job.mode is Mode.WRITE and from_stdin:
            result.output = new_source.encode(encoding) if new_source != source else data
        elif new_source == source:
            return result
        elif job.mode is Mode.DIFF:
            result.diff = unified_diff(source, new_source, job.display)
        else:
            write_atomically(job.path, new_source.encode(encoding))
        return result
    except SyntaxError as exc:
        line, col = exc.lineno or 1, (exc.offset or 1)
        result.error = f"{job.display}:{line}:{col}: syntax error: {exc.msg}"
    except ValueError as exc:  # e.g. null bytes, which ast rejects with ValueError on 3.11
        result.error = f"{job.display}:1:1: syntax error: {exc}"
    except cst.ParserSyntaxError as exc:
        result.error = f"{job.display}:{exc.raw_line}:{exc.raw_column + 1}: syntax error: {exc.message}"
    except Exception as exc:  # a bug on one file must not stop the run or touch the file
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if job.verbose else ""
        result.error = (
            f"{job.display}:1:1: internal error: {str(exc) or type(exc).__name__}; file left unchanged"
            f"{chr(10) + detail if detail else ''}"
        )
    result.fixed, result.findings = [], []
    result.markers = result.registered = frozenset()
    return result


def _note_added_markers(result: FileResult) -> None:
    if any(f.code == "MSF001" for f in (*result.findings, *result.fixed)):
        result.markers |= {"xdist_group"}


def run(jobs: list[Job]) -> Iterator[FileResult]:
    """Results in the order of ``jobs``; files are processed in parallel when there are many."""
    workers = os.cpu_count() or 1
    if len(jobs) < PARALLEL_THRESHOLD or workers == 1:
        yield from map(process, jobs)
        return
    # The workers share one index of the modules the files import (see ``analysis/index.py``).
    with tempfile.TemporaryDirectory(prefix="memsafe-fix-index-") as index:
        os.environ[INDEX_FOLDER] = index
        try:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                yield from pool.map(process, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
        finally:
            del os.environ[INDEX_FOLDER]
