"""The ``memsafe-fix`` command: parse options, run the engine, print, pick the exit code."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import signal
import sys
from contextlib import closing
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Iterator, List, NoReturn, Optional

import typer

from memsafe_fix import __version__
from memsafe_fix.analysis.environment import project_environment
from memsafe_fix.analysis.project import clear_caches
from memsafe_fix.analysis.targets import Verdict
from memsafe_fix.cache import CACHE_DIR_ENV, Cache
from memsafe_fix.config import (
    ConfigError,
    ConfigSource,
    Settings,
    find_pytest_config,
    nearest_configuration,
    settings_for,
    unknown_codes,
    valid_codes,
)
from memsafe_fix.discovery import DEFAULT_EXCLUDE, BadConfig, MissingPath, Unreadable, discover
from memsafe_fix.doctor import Doctor
from memsafe_fix.engine import FileResult, Job, Mode, PatchTarget, run
from memsafe_fix.engine import process as run_one
from memsafe_fix.report import (
    Located,
    Problem,
    check_summary,
    colorize_diff,
    diff_summary,
    fixes_by_file,
    format_finding,
    github_annotation,
    github_problem,
    json_report,
    parse_problem,
    patch_target_summary,
    settings_toml,
    statistics,
    unresolved_note,
    write_summary,
)
from memsafe_fix.rules import ALL_RULES, PROJECT_RULES, RULE_NAMES

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class Color(str, Enum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class OutputFormat(str, Enum):
    TEXT = "text"
    JSON = "json"
    GITHUB = "github"


@dataclass(frozen=True)
class Output:
    format: OutputFormat
    statistics: bool
    show_fixes: bool
    quiet: bool
    exit_zero: bool
    force_exclude: bool
    color: bool
    verbose: bool
    unsafe_fixes: bool
    jobs: Optional[int]
    cache: bool = True
    cache_dir: Optional[Path] = None


# Plain help at a fixed width (no rich panels): the same text on every terminal, which
# ``entry.py`` serves for a bare ``--help`` without importing any of this (``help_text.py``).
HELP_WIDTH = 80
app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": HELP_WIDTH,
        "terminal_width": HELP_WIDTH,
    },
)


def _display(path: Path) -> str:
    """The path relative to the current directory when it is inside it, with ``/`` separators."""
    absolute = Path(os.path.abspath(path))  # not resolve(): a symlink is shown as itself
    try:
        return absolute.relative_to(os.path.abspath(os.getcwd())).as_posix()
    except ValueError:
        return absolute.as_posix()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"memsafe-fix {__version__}")
        raise typer.Exit()


def _codes(values: Optional[List[str]], option: str) -> Optional[tuple[str, ...]]:
    """``--select MSF001,MSF002 --select MSF005`` as a tuple of codes, or None when not given;
    unknown codes are a usage error (exit 2) that lists the valid ones."""
    if values is None:
        return None
    codes = tuple(code.strip() for value in values for code in value.split(",") if code.strip())
    unknown = unknown_codes(codes)
    if unknown:
        raise typer.BadParameter(
            f"unknown rule code {', '.join(map(repr, unknown))} (valid: {valid_codes()}, or a prefix)",
            param_hint=option,
        )
    return codes


@app.command()
def memsafe_fix(
    paths: Optional[List[Path]] = typer.Argument(
        None, readable=False, help="Files or directories (default: the current directory)."
    ),
    check: bool = typer.Option(False, "--check", help="Report findings; exit 1 if any (the default)."),
    diff: bool = typer.Option(False, "--diff", help="Print the fixes as unified diffs without writing; exit 1 if any."),
    write: bool = typer.Option(False, "--write", help="Apply the fixes in place; exit 1 if unfixable findings remain."),
    config: Optional[Path] = typer.Option(None, "--config", help="Use this pyproject.toml instead of the nearest one."),
    isolated: bool = typer.Option(
        False, "--isolated", help="Read no memsafe-fix configuration from pyproject.toml: defaults only."
    ),
    select: Optional[List[str]] = typer.Option(
        None, "--select", help="Rule codes or prefixes to run (comma-separated), instead of the configured ones."
    ),
    extend_select: Optional[List[str]] = typer.Option(
        None, "--extend-select", help="Rule codes or prefixes to run in addition to the selected ones."
    ),
    ignore: Optional[List[str]] = typer.Option(
        None, "--ignore", help="Rule codes or prefixes not to run, in addition to the configured ones."
    ),
    force_exclude: bool = typer.Option(
        False, "--force-exclude", help="Apply the excludes to files named on the command line too."
    ),
    color: Color = typer.Option(Color.AUTO, "--color", help="Color diffs: auto (on a terminal), always, never."),
    show_settings: bool = typer.Option(False, "--show-settings", help="Print the settings used for PATH and exit."),
    stdin_filename: Optional[str] = typer.Option(
        None, "--stdin-filename", help="Read the source from stdin; the file name it stands for (PATH `-` or none)."
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.TEXT, "--output-format", help="How findings are printed.", case_sensitive=False
    ),
    show_statistics: bool = typer.Option(False, "--statistics", help="Print the number of findings per rule only."),
    show_fixes: bool = typer.Option(
        False, "--show-fixes", help="With --write/--diff: list the fixes per file and rule."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print findings, diffs and errors only: no summary."),
    exit_zero: bool = typer.Option(
        False, "--exit-zero", help="Exit 0 even when there are findings (errors still exit 2)."
    ),
    unsafe_fixes: bool = typer.Option(
        False,
        "--unsafe-fixes",
        help="Also apply fixes that can change what a test does (see `memsafe-fix rule MSF004`).",
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show tracebacks for internal errors and the patch targets MSF004 cannot resolve.",
    ),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: one per core); 1 checks in this process."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the result cache."),
    cache_dir: Optional[Path] = typer.Option(
        None,
        "--cache-dir",
        envvar=CACHE_DIR_ENV,
        help="The result cache's folder (default: .memsafe_fix_cache next to the configuration).",
    ),
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Apply the pytest-xdist memory-safety pattern to test files (xdist_group markers,
    gc teardowns, performance-test skips under xdist).

    `memsafe-fix rule CODE` prints a rule's documentation (`rule --all`: every rule's)."""
    if check + diff + write > 1:
        raise typer.BadParameter("use only one of --check, --diff and --write")
    if isolated and config is not None:
        raise typer.BadParameter("use either --config or --isolated")
    # Each run sees the files as they are now (tests and library callers run many in one process).
    settings_for.cache_clear()
    nearest_configuration.cache_clear()
    find_pytest_config.cache_clear()
    project_environment.cache_clear()
    clear_caches()
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config}: no such file", param_hint="--config")
    mode = Mode.WRITE if write else Mode.DIFF if diff else Mode.CHECK
    try:
        colored = color is Color.ALWAYS or (color is Color.AUTO and sys.stdout.isatty())
        options = Output(
            output_format,
            show_statistics,
            show_fixes,
            quiet,
            exit_zero,
            force_exclude,
            colored,
            verbose,
            unsafe_fixes,
            jobs,
            not no_cache,
            cache_dir,
        )
        source = ConfigSource(
            config.resolve() if config else None,
            isolated,
            _codes(select, "--select"),
            _codes(extend_select, "--extend-select") or (),
            _codes(ignore, "--ignore") or (),
        )
        if show_settings:
            _show_settings((paths or [Path(".")])[0], source)
            raise typer.Exit(EXIT_CLEAN)
        if (paths and [str(p) for p in paths] == ["-"]) or (stdin_filename and not paths):
            exit_code = _run_stdin(Path(stdin_filename or "stdin.py"), mode, source, options)
        else:
            exit_code = _run(paths or [Path(".")], mode, source, options)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        exit_code = EXIT_ERROR
    raise typer.Exit(exit_code)


def _show_settings(target: Path, source: ConfigSource) -> None:
    """``--show-settings``: the settings for ``target`` as TOML, naming the files they came from."""
    folder = (target if target.is_dir() else target.parent).absolute()
    settings = settings_for(folder, source)
    config_file = source.file or (settings.root / "pyproject.toml" if settings.root else None)
    pytest_config = find_pytest_config(folder.resolve())
    defaults = {"exclude": list(DEFAULT_EXCLUDE), "select": list(RULE_NAMES)}
    shown = settings_toml(settings, target.as_posix(), config_file, pytest_config and pytest_config.path, defaults)
    typer.echo(shown)


def _settings(folder: Path, source: ConfigSource, options: Output) -> Settings:
    settings = settings_for(folder, source)
    return replace(settings, unsafe_fixes=True) if options.unsafe_fixes else settings


def _config_problem(exc: ConfigError) -> Problem:
    if exc.path is None:
        return Problem(None, 1, 1, "error", str(exc))
    display = _display(exc.path)
    return parse_problem(exc.located(display), display)


def _run(paths: list[Path], mode: Mode, source: ConfigSource, options: "Output") -> int:
    problems: dict[Problem, None] = {}  # in order, each once (a broken configuration is shared)
    failed_files = 0  # unreadable files, then also those that could not be parsed or fixed
    jobs: list[Job] = []
    for found in discover(paths, source, options.force_exclude):
        if isinstance(found, MissingPath):
            problems[Problem(_display(found.path), 1, 1, "error", "no such file or directory")] = None
            continue
        if isinstance(found, Unreadable):
            problems[Problem(_display(found.path), 1, 1, "error", found.reason)] = None
            failed_files += not found.folder
            continue
        if isinstance(found, BadConfig):
            problems[_config_problem(found.error)] = None
            continue
        try:
            settings = _settings(found.parent, source, options)
        except ConfigError as exc:
            problems[_config_problem(exc)] = None
            continue
        jobs.append(Job(found, _display(found), settings, mode, options.verbose))
    # Files named explicitly are only left out by --force-exclude, on purpose: no warning.
    folders = [path for path in paths if path.is_dir()]
    if not jobs and not problems and folders:
        shown = ", ".join(_display(path) for path in folders)
        typer.echo(f"warning: no test files found in {shown}", err=True)
    reported: list[Located] = []
    fixes: list[Located] = []
    findings = fixed = changed = fixable = failed_results = 0
    targets: list[tuple[str, PatchTarget]] = []
    # Project-level rules (MSF010, MSF011) run on the pytest configuration of the files found.
    doctor = Doctor(mode, source, _display)

    def tally(result: FileResult) -> None:
        nonlocal findings, fixed, changed, fixable
        if result.error:
            problems[parse_problem(result.error, result.display)] = None
            return
        targets.extend((result.display, target) for target in result.patch_targets)
        if result.diff:
            sys.stdout.write(colorize_diff(result.diff) if options.color else result.diff)
        changed += bool(result.fixed)
        fixed += len(result.fixed)
        fixes.extend((result.display, f) for f in result.fixed)
        findings += len(result.findings)
        fixable += sum(f.fixable for f in result.findings)
        # --check shows everything, --write what it leaves behind, --diff only diffs.
        if mode is not Mode.DIFF:
            reported.extend((result.display, f) for f in result.findings if mode is Mode.CHECK or not f.fixable)

    # Closed however the loop ends (an interrupt, SIGTERM): that cancels the files not yet done.
    cache = Cache(options.cache_dir) if options.cache else None
    with closing(run(jobs, options.jobs, cache)) as results:
        for job, result in zip(jobs, with_progress(results, len(jobs), quiet_stdout=mode is not Mode.DIFF)):
            doctor.add(job.path, result)
            failed_results += bool(result.error)
            tally(result)
    for result in doctor.results():
        tally(result)
    _print_findings(reported, list(problems), options, to_stderr=mode is Mode.DIFF)
    if options.show_fixes and fixes:
        typer.echo(fixes_by_file(fixes, RULE_NAMES), err=mode is Mode.DIFF)
    if options.verbose:
        _print_patch_targets(targets)
    checked = len(jobs) - failed_results
    failed_files += failed_results
    other_errors = len(problems) - failed_files
    if mode is Mode.CHECK:
        summary = check_summary(findings, fixable, checked, failed_files, other_errors)
        outcome = EXIT_FINDINGS if findings else EXIT_CLEAN
    elif mode is Mode.DIFF:
        # A dry run with nothing to change stays silent (findings without a fix are --check's).
        summary = diff_summary(fixed, changed, findings, failed_files, other_errors) if changed or problems else ""
        outcome = EXIT_FINDINGS if changed else EXIT_CLEAN
    else:
        summary = write_summary(fixed, changed, findings, failed_files, other_errors)
        outcome = EXIT_FINDINGS if findings else EXIT_CLEAN
    if summary and (jobs or problems) and not options.quiet and not options.statistics:
        if options.format is OutputFormat.TEXT:
            typer.echo(summary, err=mode is Mode.DIFF)
    if problems:
        return EXIT_ERROR
    return EXIT_CLEAN if options.exit_zero else outcome


# Below this many files a run is too quick for a progress bar to help.
PROGRESS_THRESHOLD = 50


def with_progress(results: Iterator[FileResult], total: int, quiet_stdout: bool) -> Iterator[FileResult]:
    """A progress bar on stderr, only when stderr is a terminal and there are many files. It
    never touches stdout: what a run prints there (diffs) is the same with or without a bar.
    ``quiet_stdout``: nothing is printed on stdout while the bar is shown; otherwise a stdout
    that is a terminal too gets no bar, which the diffs would tear apart."""
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty() or (not quiet_stdout and sys.stdout.isatty()):
        yield from results
        return
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True, redirect_stdout=False, redirect_stderr=False)
    with bar as progress:
        task = progress.add_task("memsafe-fix", total=total)
        for result in results:
            progress.advance(task)
            yield result


def _run_stdin(path: Path, mode: Mode, source: ConfigSource, options: "Output") -> int:
    """For editors: the source comes on stdin; --write prints the fixed source, --diff the diff,
    --check the findings. Nothing is written to disk."""
    job = Job(path, path.as_posix(), _settings(path.absolute().parent, source, options), mode, options.verbose)
    result = run_one(job, sys.stdin.buffer.read())
    if result.error:
        _print_findings([], [parse_problem(result.error, result.display)], options, to_stderr=mode is not Mode.CHECK)
        return EXIT_ERROR
    if result.output is not None:
        sys.stdout.buffer.write(result.output)
        sys.stdout.flush()
    sys.stdout.write(result.diff)
    reported = [
        (result.display, f) for f in result.findings if mode is Mode.CHECK or mode is Mode.WRITE and not f.fixable
    ]
    _print_findings(reported, [], options, to_stderr=mode is not Mode.CHECK)
    if options.exit_zero:
        return EXIT_CLEAN
    return EXIT_FINDINGS if (result.diff if mode is Mode.DIFF else result.findings) else EXIT_CLEAN


def _print_patch_targets(targets: list[tuple[str, PatchTarget]]) -> None:
    """``--verbose``: the patch targets MSF004 could not resolve, never as findings."""
    verdicts = [target.resolution.verdict for _, target in targets]
    for display, target in targets:
        if target.resolution.verdict is Verdict.UNKNOWN:
            note = unresolved_note(display, target.line, target.col, target.target, target.resolution.detail)
            typer.echo(note, err=True)
    if targets:
        unknown = verdicts.count(Verdict.UNKNOWN)
        summary = patch_target_summary(len(verdicts) - unknown, verdicts.count(Verdict.ASYNC), unknown)
        typer.echo(summary, err=True)


def _print_findings(reported: list[Located], problems: list[Problem], options: "Output", to_stderr: bool) -> None:
    """Findings (with ``--statistics``: their count per rule only), and what could not be
    checked: in the JSON and GitHub formats as entries of their own, in text on stderr."""
    lines: list[str]
    if options.statistics:
        lines = [statistics(reported, RULE_NAMES)] if reported else []
    elif options.format is OutputFormat.JSON:
        lines = [json_report(reported, problems)]
    elif options.format is OutputFormat.GITHUB:
        lines = [github_annotation(path, finding) for path, finding in reported]
        lines += [github_problem(problem) for problem in problems]
    else:
        lines = [format_finding(path, finding) for path, finding in reported]
    if lines:
        # One write (and flush) for all: a 10 MB file has 100,000 findings.
        typer.echo("\n".join(lines), err=to_stderr)
    if options.statistics or options.format is OutputFormat.TEXT:
        for problem in problems:
            typer.echo(str(problem), err=True)


def rule_documentation(code: str) -> Optional[str]:
    """A rule's documentation (its module docstring), by code (``MSF002``) or name."""
    for rule in (*ALL_RULES, *PROJECT_RULES):
        if code.upper() == rule.code or code == rule.name:
            return inspect.getdoc(sys.modules[type(rule).__module__])
    return None


def main() -> None:
    try:
        _main()
    except BrokenPipeError:
        _reader_gone()
    except SystemExit as done:
        _exit_now(done)


def _reader_gone() -> NoReturn:
    # The reader went away (`memsafe-fix rule MSF002 | head`): stop quietly, as cat does.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_ERROR)


def _exit_now(done: SystemExit) -> NoReturn:
    """End the process once the command is done, output flushed, without the interpreter's
    teardown: freeing one by one every object a run made costs a tenth of a warm ``--check``
    (mypy exits the same way). Nothing else is pending by then: the worker pool is shut down,
    temporary folders removed, the cache written. Not with worker processes still alive."""
    code = done.code
    if not (code is None or isinstance(code, int)) or multiprocessing.active_children():
        raise done
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        _reader_gone()
    os._exit(code or 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    # SIGTERM stops a run the way Ctrl-C does: files being written are completed, no others.
    signal.signal(signal.SIGTERM, _interrupt)
    arguments = sys.argv[1:]
    # `memsafe-fix rule MSF002`, unless "rule" is a path the user wants checked.
    if arguments[:1] == ["rule"] and not os.path.exists("rule"):
        if arguments[1:] == ["--all"]:
            print("\n\n".join(filter(None, (rule_documentation(code) for code in RULE_NAMES))))
            return
        text = rule_documentation(arguments[1]) if len(arguments) == 2 else None
        if text is None:
            known = ", ".join(f"{code} ({name})" for code, name in RULE_NAMES.items())
            print(f"usage: memsafe-fix rule CODE|--all, CODE one of: {known}", file=sys.stderr)
            sys.exit(EXIT_ERROR)
        print(text)
        return
    app(prog_name="memsafe-fix")
