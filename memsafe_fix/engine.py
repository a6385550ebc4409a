"""Process files: analyse with ``ast``, fix with LibCST only when needed, verify, diff, write."""

from __future__ import annotations

import ast
import errno
import gc
import io
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import tokenize
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from enum import Enum
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Iterator, Optional

from memsafe_fix.analysis import chunks
from memsafe_fix.analysis.index import use_folder
from memsafe_fix.analysis.markers import registered_markers, used_markers
from memsafe_fix.analysis.module import ModuleAnalysis
from memsafe_fix.analysis.project import Dependencies, first_party_names, recording
from memsafe_fix.analysis.targets import Resolution
from memsafe_fix.cache import Cache, Hit, digest
from memsafe_fix.config import Settings
from memsafe_fix.edits import Finding, Fix, FixError, LossySource
from memsafe_fix.report import unified_diff
from memsafe_fix.rules import ALL_RULES, Context
from memsafe_fix.rules.async_patch import AsyncPatch
from memsafe_fix.rules.release_state import preset_module_facts
from memsafe_fix.rules.xdist_group import GroupFacts, group_facts, shared_group_names

# Below this many files, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 32
# How often a worker checks that the process that started it is still there.
PARENT_CHECK_SECONDS = 0.1


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
    # Of those, the ones only this run's fixes add.
    added_markers: frozenset[str] = frozenset()
    registered: frozenset[str] = frozenset()
    # With ``Job.record``: the SHA-256 of the bytes analysed, what the analysis read
    # elsewhere, and what the run's ``xdist_group`` naming reads in those bytes, for the cache.
    digest: Optional[str] = None
    dependencies: Optional[Dependencies] = None
    group_facts: Optional[GroupFacts] = None


@dataclass(frozen=True)
class Job:
    path: Path
    display: str
    settings: Settings
    mode: Mode
    verbose: bool = False
    # Class name -> ``xdist_group`` name where other files of the run share the default one.
    group_names: Optional[dict[str, str]] = None
    # Note the digest and dependencies in the result (the cache is on).
    record: bool = False


# A test class nested in another (or defined under ``if``/``try``): MSF002 gives it a teardown
# when an enclosing class has one, which may be inherited from an imported base.
_INDENTED_CLASS = re.compile(r"^[ \t\f]+class\b", re.MULTILINE)


def could_have_findings(source: str, settings: Settings, module_name: str) -> bool:
    """False when no rule can report anything in ``source`` and it uses no ``pytest.mark``, so
    it need not be analysed. Without ``scope = "all"`` every rule acts only on code that uses
    mocks (every mock module, mock class and ``mocker`` fixture has "mock" in its name), a
    ``mock-factories`` callable, a ``pytest.mark`` (performance markers, ``xdist_group``, the
    markers the project-level rules count), or a nested class (an inherited teardown). A
    conftest is always parsed for the markers it registers; a non-ASCII file too, since Python
    folds identifiers such as ``ｍock`` to ``mock``."""
    if settings.scope == "all" or module_name == "conftest" or not source.isascii():
        return True
    lowered = source.lower()
    tokens = ("mock", "mark", *(name.rsplit(".", 1)[-1].lower() for name in settings.mock_factories))
    return any(token in lowered for token in tokens) or _INDENTED_CLASS.search(source) is not None


def check_source(source: str, settings: Settings, module_name: str, path: Optional[Path] = None) -> list[Finding]:
    """Every enabled rule's findings for one file's text, in source order. ``path`` lets rules
    look at the project modules the file imports."""
    return _check(ModuleAnalysis(source, settings, module_name, path))


def _check(
    module: ModuleAnalysis, group_names: Optional[dict[str, str]] = None, *, fixes_applied: bool = True
) -> list[Finding]:
    """The findings of the enabled rules, in line order. ``fixes_applied=False``: no fix found
    will be applied (``--check``, the re-check of a fixed text), so the fixes' code need not
    use the file's preferred quote, which costs a tokenization of the file."""
    if not fixes_applied:
        module.quote = '"'
    context = Context(module, group_names)
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
    group_names: Optional[dict[str, str]] = None,
) -> tuple[str, list[Finding], list[Finding]]:
    """(new source, findings fixed, findings remaining). Raises ``SyntaxError`` for bad input
    and ``FixError`` when the result would not compile or would not be stable. ``module``: the
    source's analysis, when the caller already has it; it is released here (see
    ``ModuleAnalysis.release``) once the fix is made, before the fixed text is analysed, so
    that a big file's two trees are never held at once."""
    if module is None:
        module = ModuleAnalysis(source, settings, module_name, path)
    try:
        findings = _check(module, group_names)
        fixable = [f for f in findings if f.fix is not None]
        if not fixable:
            return source, [], findings
        from memsafe_fix.fixer import apply_fixes  # LibCST: only for a file with something to fix

        def_names = [d.name for d in module.defs]
        fixes = [f.fix for f in fixable if f.fix is not None]
        new_source = apply_fixes(source, fixes, def_names, first_party, module.tree, [d.node for d in module.defs])
        try:
            # One parse of the new text serves both the compile check and the re-check; compiling
            # the tree still catches what ast.parse lets through (a misplaced __future__ import).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SyntaxWarning)  # about the user's code, not the fix
                new_tree = ast.parse(new_source)
                compile(new_tree, module_name, "exec", dont_inherit=True)
        except SyntaxError as exc:
            compile(module.tree, module_name, "exec", dont_inherit=True)  # the input's own error wins
            raise FixError(f"the fixed file would not compile ({exc.msg}, line {exc.lineno})") from exc
    finally:
        module.release()
    fixed = ModuleAnalysis(new_source, settings, module_name, path, new_tree)
    try:
        remaining = _check(fixed, group_names, fixes_applied=False)  # a fix found here is an error
    finally:
        fixed.release()
    if any(f.fix is not None for f in remaining):
        raise FixError(f"fixing is not stable: {remaining[0].code} still applies at line {remaining[0].line}")
    return new_source, fixable, remaining


def read_source(data: bytes) -> tuple[str, str]:
    """Decode like Python does (BOM, coding cookie); returns (text, encoding to write back).
    Raises ``LookupError`` for an encoding that does not give the same bytes back (such as
    ``unicode_escape``), since the file could not be written back as it was."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    if text.encode(encoding) != data:
        raise LookupError(f"the `{encoding}` encoding does not give the same bytes back; file left unchanged")
    return text, encoding


def write_atomically(path: Path, data: bytes) -> None:
    """Replace the contents of ``path`` with ``data``, never leaving a half-written file: the
    data goes to a temporary file next to it first (with the file's mode, and its owner and
    group where the process may set them), which is read back and then renamed over the file.
    A file with more than one hard link is instead rewritten in place from the verified copy,
    so that every link sees the change (the copy is renamed over it if that write fails). A
    symlink is written through: its target changes, the link stays a link. Raises
    ``PermissionError`` for a file this process may not write, as black and ruff do (the
    rename would otherwise replace a read-only file; root may write any file, as with them)."""
    path = path.resolve()
    status = path.stat()
    if not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "the file is read-only")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".memsafe-tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, status.st_mode & 0o7777)
        try:
            os.chown(temporary, status.st_uid, status.st_gid)
        except PermissionError:
            pass  # not root: the file becomes this user's, as any editor's save would make it
        if Path(temporary).read_bytes() != data:
            raise OSError(errno.EIO, "the written copy does not read back")
        if status.st_nlink > 1:
            try:
                with path.open("r+b") as handle:
                    handle.write(data)
                    handle.truncate()
                os.unlink(temporary)
                return
            except OSError:
                pass  # the verified copy takes its place below: one link less, nothing lost
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def process(job: Job, data: Optional[bytes] = None) -> FileResult:
    """Check, diff or fix one file. ``data``: its bytes when they do not come from ``job.path``
    (stdin); then ``--write`` returns the fixed bytes in ``result.output`` instead of writing."""
    collecting = gc.isenabled()
    # The cyclic collector would walk the whole tree again and again while it is being built
    # (a 10 MB file's ``ast.parse``: 24 s with it, 9 s without); one file's garbage is
    # collected after it.
    gc.disable()
    try:
        with warnings.catch_warnings():
            # Compiling a file (``\d`` in a string, ``assert (x, "why")``) warns about the user's
            # code, which is not what they ran memsafe-fix for.
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            if not job.record:
                return _process(job, data)
            with recording() as dependencies:
                result = _process(job, data)
            result.dependencies = dependencies
            return result
    finally:
        if collecting:
            gc.enable()


def _process(job: Job, data: Optional[bytes]) -> FileResult:
    result = FileResult(job.display)
    if _cancelled_run():
        return result
    from_stdin = data is not None
    try:
        if data is None:
            data = job.path.read_bytes()
        if job.record:
            result.digest = digest(data)
            # Read as ``shared_group_names`` reads a file, so that a warm run need not.
            result.group_facts = group_facts(data.decode("utf-8", "replace"), job.path, job.settings)
        source, encoding = read_source(data)
    except OSError as exc:
        result.error = f"{job.display}:1:1: error: cannot read file: {exc.strerror or exc}"
        return result
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        result.error = f"{job.display}:1:1: error: cannot decode file: {exc}"
        return result
    module_name = job.path.stem
    try:
        if not from_stdin and not could_have_findings(source, job.settings, module_name):
            # Clean, but a syntax error is still reported: the parse is a fifth of the analysis.
            # A big file is parsed a chunk at a time (one that splits into chunks has none).
            if not chunks.wants_chunks(source) or chunks.plan(source, job.settings, module_name, job.path) is None:
                ast.parse(source, str(job.path))
            return result
        if job.mode is Mode.CHECK and _chunked(source, job.settings, module_name):
            checked = _check_in_chunks(job, source, module_name)
            if checked is not None:
                result.findings, result.markers, result.patch_targets = checked
                _note_added_markers(result)
                return result
        module = ModuleAnalysis(source, job.settings, module_name, job.path)
        # Naming a pytest marker takes the identifier ``mark`` (``pytest.mark.x``, ``from
        # pytest import mark``); Python folds non-ASCII identifiers to ASCII ones.
        result.markers = used_markers(module) if "mark" in source or not source.isascii() else frozenset()
        if module_name == "conftest":
            result.registered = registered_markers(module.tree)
        if job.verbose:
            result.patch_targets = patch_targets(module)
        if job.mode is Mode.CHECK:
            result.findings = _check(module, job.group_names, fixes_applied=False)
            module.release()
            _note_added_markers(result)
            return result
        first_party = first_party_names(job.path.parent.resolve())
        new_source, result.fixed, result.findings = fix_source(
            source, job.settings, module_name, first_party, job.path, module, job.group_names
        )
        _note_added_markers(result)
        if job.mode is Mode.WRITE and from_stdin:
            result.output = new_source.encode(encoding) if new_source != source else data
        elif new_source == source:
            return result
        elif job.mode is Mode.DIFF:
            bom = "\ufeff" if encoding == "utf-8-sig" else ""  # in the patch too, or git finds no match
            result.diff = unified_diff(bom + source, bom + new_source, job.display)
        elif not _cancelled_run():
            try:
                write_atomically(job.path, new_source.encode(encoding))
            except OSError as exc:
                result.fixed, result.findings = [], []
                result.error = f"{job.display}:1:1: error: cannot write file: {exc.strerror or exc}"
        return result
    except SyntaxError as exc:
        line, col = exc.lineno or 1, (exc.offset or 1)
        result.error = f"{job.display}:{line}:{col}: syntax error: {exc.msg}"
    except ValueError as exc:  # e.g. null bytes, which ast rejects with ValueError on 3.11
        result.error = f"{job.display}:1:1: syntax error: {exc}"
    except LossySource as exc:
        result.error = f"{job.display}:{exc.line}:1: error: cannot fix without losing bytes: {exc}; file left unchanged"
    except Exception as exc:  # a bug on one file must not stop the run or touch the file
        if _is_libcst_syntax_error(exc):
            line, col = exc.raw_line, exc.raw_column + 1  # type: ignore[attr-defined]
            result.error = f"{job.display}:{line}:{col}: syntax error: {exc.message}"  # type: ignore[attr-defined]
        else:
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if job.verbose else ""
            result.error = (
                f"{job.display}:1:1: internal error: {str(exc) or type(exc).__name__}; file left unchanged"
                f"{chr(10) + detail if detail else ''}"
            )
    result.fixed, result.findings = [], []
    result.markers = result.registered = result.added_markers = frozenset()
    return result


def _is_libcst_syntax_error(exc: Exception) -> bool:
    """LibCST is imported only to fix a file: its syntax error can only come from there."""
    cst = sys.modules.get("libcst")
    return cst is not None and isinstance(exc, cst.ParserSyntaxError)


def _chunked(source: str, settings: Settings, module_name: str) -> bool:
    """Whether ``--check`` reads the file a chunk at a time (see ``analysis/chunks.py``): a big
    test file, unless MSF005 writes one fixture for the whole module."""
    return chunks.wants_chunks(source) and module_name != "conftest" and settings.function_gc != "fixture"


def _check_in_chunks(
    job: Job, source: str, module_name: str
) -> Optional[tuple[list[Finding], frozenset[str], list[PatchTarget]]]:
    """Findings, markers used and (verbose) patch targets of a big file, analysed a chunk at a
    time, or None when it is to be analysed whole. The chunks are first found from the text
    alone; where a chunk's parse disagrees, again by parsing them."""
    for planner in (chunks.quick_plan, chunks.plan):
        plan = planner(source, job.settings, module_name, job.path)
        checked = _check_planned(job, plan, module_name) if plan is not None else None
        if checked is not None:
            return checked
    return None


_FIXABLE = Fix(())


def _check_planned(
    job: Job, plan: chunks.Plan, module_name: str
) -> Optional[tuple[list[Finding], frozenset[str], list[PatchTarget]]]:
    findings: list[Finding] = []
    markers: set[str] = set()
    targets: list[PatchTarget] = []
    lines = [chunk.line for chunk in plan.chunks[1:]] + [len(plan.source) + 2]
    for (chunk, context), end in zip(chunks.contexts(plan), lines):
        if sum(unit.end - unit.start for unit in context) > chunks.MAX_CONTEXT_CHUNKS * chunks.CHUNK_CHARS:
            return None
        try:
            module = chunks.ChunkAnalysis(plan, chunk, context, job.settings, module_name, job.path)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        if not module.valid():
            chunks.release(module)
            return None
        preset_module_facts(module, plan.bases_read_after_super, plan.uses_instance_in_teardown)
        markers |= used_markers(module)
        # ``--check`` reports whether a finding is fixable, not how: the edits are not kept.
        findings += [
            # Built directly: ``dataclasses.replace`` costs several times more, once a finding.
            Finding(finding.code, finding.line, finding.col, finding.message, _FIXABLE)
            if finding.fix is not None
            else finding
            for finding in _check(module, job.group_names, fixes_applied=False)
            if chunk.line <= finding.line < end
        ]
        if job.verbose:  # after ``_check``, which settled that no fix's code needs the file's quote
            targets += [target for target in patch_targets(module) if chunk.line <= target.line < end]
        chunks.release(module)
    return findings, frozenset(markers), targets


def _note_added_markers(result: FileResult) -> None:
    if "xdist_group" not in result.markers and any(f.code == "MSF001" for f in (*result.findings, *result.fixed)):
        result.added_markers = frozenset({"xdist_group"})
        result.markers |= result.added_markers


def run(jobs: list[Job], workers: Optional[int] = None, cache: Optional[Cache] = None) -> Iterator[FileResult]:
    """Results in the order of ``jobs``; files are processed in parallel by ``workers``
    processes (default: one per core) when there are many, in this process with 1.
    Closing the iterator early (an interrupt, SIGTERM) cancels the run: no file is written
    after that, and the workers exit. With a ``cache``, files whose entry is still valid are
    not processed again, and the results of the others are stored in it."""
    # With a cache, the naming takes what it reads of an unchanged file from there (the status
    # of each file is taken here, before anything reads it: it goes with the file's new entry).
    known: dict[Path, GroupFacts] = {}
    if cache is not None:
        for job in jobs:
            facts = cache.group_facts(job.path, job.settings)
            if facts is not None:
                known[job.path] = facts
    shared = shared_group_names([(job.path, job.settings) for job in jobs], known)
    jobs = [replace(job, group_names=shared[job.path]) if job.path in shared else job for job in jobs]
    if cache is None:
        yield from _run(jobs, workers)
        return
    jobs = [replace(job, record=True) for job in jobs]
    cached = _all_cached(jobs, cache)
    # The shard read and the results taken from it stay until the run ends: the collector need
    # not walk them in every full collection (unless a caller froze objects of its own).
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.freeze()
    fresh = _run([job for job, hit in zip(jobs, cached) if hit is None], workers)
    try:
        with closing(fresh):
            for number, (job, hit) in enumerate(zip(jobs, cached), 1):
                result = hit
                if result is None:
                    result = next(fresh)
                    _store(job, result, cache)
                if number == len(jobs):
                    cache.save()  # before the last result: a caller may stop asking once it has it
                yield result
    finally:
        if freezing:
            gc.unfreeze()


def _all_cached(jobs: list[Job], cache: Cache) -> list[Optional[FileResult]]:
    """Each job's result from the cache, or None. The cyclic collector is off meanwhile: the
    shard read and the results built are many objects and no cycles, which it would otherwise
    walk again and again (with the freezing in ``run``: a tenth of a warm run)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return [_cached(job, cache) for job in jobs]
    finally:
        if collecting:
            gc.enable()


def _cached(job: Job, cache: Cache) -> Optional[FileResult]:
    """The result of ``job`` from the cache, when it has a valid entry (with ``--verbose``
    never: the patch targets are not cached). ``--diff``/``--write`` take only entries of
    files with nothing to fix."""
    if job.verbose:
        return None
    hit = cache.lookup(job.path, job.settings, job.group_names)
    if hit is None or (job.mode is not Mode.CHECK and any(f.fixable for f in hit.findings)):
        return None
    return FileResult(
        job.display,
        findings=hit.findings,
        markers=hit.markers,
        added_markers=hit.added_markers,
        registered=hit.registered,
    )


def _store(job: Job, result: FileResult, cache: Cache) -> None:
    """Keep a result that is the file's check result: no error, and nothing fixed (after a
    fix, the findings left are those of another text)."""
    if result.error or result.fixed or result.digest is None or result.dependencies is None:
        return
    hit = Hit(result.findings, result.markers, result.added_markers, result.registered)
    cache.store(job.path, job.settings, result.digest, job.group_names, hit, result.dependencies, result.group_facts)


def _run(jobs: list[Job], workers: Optional[int]) -> Iterator[FileResult]:
    workers = workers or os.cpu_count() or 1
    if len(jobs) < PARALLEL_THRESHOLD or workers == 1:
        yield from map(process, jobs)
        return
    cancelled = multiprocessing.get_context().Event()
    # The workers share one index of the modules the files import (see ``analysis/index.py``).
    with tempfile.TemporaryDirectory(prefix="memsafe-fix-index-") as index:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(index, cancelled))
        try:
            yield from pool.map(process, jobs, chunksize=max(1, len(jobs) // (workers * 8)))
        except BaseException:
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()


# In a worker process: set when the run is cancelled, and the process it was started from.
_cancelled: Optional[EventType] = None
_parent: Optional[int] = None


def _start_worker(index: str, cancelled: EventType) -> None:
    global _cancelled, _parent
    _cancelled, _parent = cancelled, os.getppid()
    # The main process decides what an interrupt means (it cancels the run); SIGTERM kills.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    use_folder(index)
    threading.Thread(target=_exit_with_parent, args=(index,), daemon=True).start()


def _exit_with_parent(index: str) -> None:
    """A worker whose parent died (SIGKILL) would otherwise go on rewriting files, or block
    forever handing back results nobody reads: it removes the index and exits."""
    while not _orphaned():
        time.sleep(PARENT_CHECK_SECONDS)
    shutil.rmtree(index, ignore_errors=True)
    os._exit(1)


def _orphaned() -> bool:
    return _parent is not None and os.getppid() != _parent


def _cancelled_run() -> bool:
    """In a worker: the run was cancelled, or the process that started it is gone."""
    return (_cancelled is not None and _cancelled.is_set()) or _orphaned()
