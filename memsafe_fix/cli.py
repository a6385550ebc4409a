"""The ``memsafe-fix`` command: parse options, run the engine, print, pick the exit code."""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from memsafe_fix import __version__
from memsafe_fix.analysis.environment import project_environment
from memsafe_fix.analysis.project import clear_caches
from memsafe_fix.analysis.targets import Verdict
from memsafe_fix.config import ConfigError, Settings, find_pytest_config, settings_for
from memsafe_fix.discovery import BadConfig, MissingPath, discover
from memsafe_fix.doctor import Doctor
from memsafe_fix.engine import FileResult, Job, Mode, PatchTarget, run
from memsafe_fix.engine import process as run_one
from memsafe_fix.report import (
    Located,
    check_summary,
    colorize_diff,
    diff_summary,
    fixes_by_file,
    format_finding,
    github_annotation,
    json_report,
    patch_target_summary,
    settings_table,
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


app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


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


@app.command()
def memsafe_fix(
    paths: Optional[List[Path]] = typer.Argument(None, help="Files or directories (default: the current directory)."),
    check: bool = typer.Option(False, "--check", help="Report findings; exit 1 if any (the default)."),
    diff: bool = typer.Option(False, "--diff", help="Print the fixes as unified diffs without writing; exit 1 if any."),
    write: bool = typer.Option(False, "--write", help="Apply the fixes in place; exit 1 if unfixable findings remain."),
    config: Optional[Path] = typer.Option(None, "--config", help="Use this pyproject.toml instead of the nearest one."),
    force_exclude: bool = typer.Option(
        False, "--force-exclude", help="Apply the excludes to files named on the command line too."
    ),
    color: Color = typer.Option(Color.AUTO, "--color", help="Color diffs: auto (on a terminal), always, never."),
    show_settings: bool = typer.Option(False, "--show-settings", help="Print the settings used for PATH and exit."),
    stdin_filename: Optional[str] = typer.Option(
        None, "--stdin-filename", help="With PATH `-`: the file name the source on stdin stands for."
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.TEXT, "--output-format", help="How findings are printed.", case_sensitive=False
    ),
    show_statistics: bool = typer.Option(False, "--statistics", help="Also count the findings per rule."),
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
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Apply the pytest-xdist memory-safety pattern to test files (xdist_group markers,
    gc teardowns, performance-test skips under xdist).

    `memsafe-fix rule CODE` prints a rule's documentation."""
    if check + diff + write > 1:
        raise typer.BadParameter("use only one of --check, --diff and --write")
    # Each run sees the files as they are now (tests and library callers run many in one process).
    settings_for.cache_clear()
    find_pytest_config.cache_clear()
    project_environment.cache_clear()
    clear_caches()
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config}: no such file", param_hint="--config")
    mode = Mode.WRITE if write else Mode.DIFF if diff else Mode.CHECK
    try:
        colored = color is Color.ALWAYS or (color is Color.AUTO and sys.stdout.isatty())
        options = Output(
            output_format, show_statistics, show_fixes, quiet, exit_zero, force_exclude, colored, verbose, unsafe_fixes
        )
        config = config.resolve() if config else None
        if show_settings:
            target = (paths or [Path(".")])[0]
            folder = target if target.is_dir() else target.parent
            typer.echo(f"# settings for {target}\n{settings_table(settings_for(folder.absolute(), config))}")
            raise typer.Exit(EXIT_CLEAN)
        if paths and [str(p) for p in paths] == ["-"]:
            exit_code = _run_stdin(Path(stdin_filename or "stdin.py"), mode, config, options)
        else:
            exit_code = _run(paths or [Path(".")], mode, config, options)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        exit_code = EXIT_ERROR
    raise typer.Exit(exit_code)


def _settings(folder: Path, config: Optional[Path], options: Output) -> Settings:
    settings = settings_for(folder, config)
    return replace(settings, unsafe_fixes=True) if options.unsafe_fixes else settings


def _config_error(exc: ConfigError) -> str:
    return exc.located(_display(exc.path)) if exc.path else f"error: {exc}"


def _run(paths: list[Path], mode: Mode, config: Optional[Path], options: "Output") -> int:
    errors: dict[str, None] = {}  # in order, each once (a broken configuration is shared)
    jobs: list[Job] = []
    for found in discover(paths, config, options.force_exclude):
        if isinstance(found, MissingPath):
            errors[f"{found.path}:1:1: error: no such file or directory"] = None
            continue
        if isinstance(found, BadConfig):
            errors[_config_error(found.error)] = None
            continue
        try:
            settings = _settings(found.parent, config, options)
        except ConfigError as exc:
            errors[_config_error(exc)] = None
            continue
        jobs.append(Job(found, _display(found), settings, mode, options.verbose))
    reported: list[Located] = []
    fixes: list[Located] = []
    findings = fixed = changed = fixable = 0
    targets: list[tuple[str, PatchTarget]] = []
    # Project-level rules (MSF010, MSF011) run on the pytest configuration of the files found.
    doctor = Doctor(mode, config, _display)

    def tally(result: FileResult) -> None:
        nonlocal findings, fixed, changed, fixable
        if result.error:
            errors[result.error] = None
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

    for job, result in zip(jobs, with_progress(run(jobs), len(jobs))):
        doctor.add(job.path, result)
        tally(result)
    for result in doctor.results():
        tally(result)
    _print_findings(reported, options, to_stderr=mode is Mode.DIFF)
    if options.show_fixes and fixes:
        typer.echo(fixes_by_file(fixes, RULE_NAMES), err=mode is Mode.DIFF)
    for error in errors:
        typer.echo(error, err=True)
    if options.verbose:
        _print_patch_targets(targets)
    if mode is Mode.CHECK:
        summary, outcome = check_summary(findings, fixable, len(jobs)), EXIT_FINDINGS if findings else EXIT_CLEAN
    elif mode is Mode.DIFF:
        # A dry run with nothing to change stays silent (findings without a fix are --check's).
        summary = diff_summary(fixed, changed, findings) if changed else ""
        outcome = EXIT_FINDINGS if changed else EXIT_CLEAN
    else:
        summary, outcome = write_summary(fixed, changed, findings), EXIT_FINDINGS if findings else EXIT_CLEAN
    if summary and not options.quiet and options.format is OutputFormat.TEXT:
        typer.echo(summary, err=mode is Mode.DIFF)
    if errors:
        return EXIT_ERROR
    return EXIT_CLEAN if options.exit_zero else outcome


# Below this many files a run is too quick for a progress bar to help.
PROGRESS_THRESHOLD = 50


def with_progress(results: Iterator[FileResult], total: int) -> Iterator[FileResult]:
    """A progress bar on stderr, only when stderr is a terminal and there are many files."""
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield from results
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("memsafe-fix", total=total)
        for result in results:
            progress.advance(task)
            yield result


def _run_stdin(path: Path, mode: Mode, config: Optional[Path], options: "Output") -> int:
    """For editors: the source comes on stdin; --write prints the fixed source, --diff the diff,
    --check the findings. Nothing is written to disk."""
    job = Job(path, path.as_posix(), _settings(path.absolute().parent, config, options), mode, options.verbose)
    result = run_one(job, sys.stdin.buffer.read())
    if result.error:
        typer.echo(result.error, err=True)
        return EXIT_ERROR
    if result.output is not None:
        sys.stdout.buffer.write(result.output)
        sys.stdout.flush()
    sys.stdout.write(result.diff)
    reported = [
        (result.display, f) for f in result.findings if mode is Mode.CHECK or mode is Mode.WRITE and not f.fixable
    ]
    _print_findings(reported, options, to_stderr=mode is not Mode.CHECK)
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


def _print_findings(reported: list[Located], options: "Output", to_stderr: bool) -> None:
    lines: list[str]
    if options.format is OutputFormat.JSON:
        lines = [json_report(reported)]
    elif options.format is OutputFormat.GITHUB:
        lines = [github_annotation(path, finding) for path, finding in reported]
    else:
        lines = [format_finding(path, finding) for path, finding in reported]
    if options.statistics and reported:
        lines.append(statistics(reported, RULE_NAMES))
    for line in lines:
        typer.echo(line, err=to_stderr)


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
        # The reader went away (`memsafe-fix rule MSF002 | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)


def _main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    arguments = sys.argv[1:]
    # `memsafe-fix rule MSF002`, unless "rule" is a path the user wants checked.
    if arguments[:1] == ["rule"] and not os.path.exists("rule"):
        text = rule_documentation(arguments[1]) if len(arguments) == 2 else None
        if text is None:
            known = ", ".join(f"{code} ({name})" for code, name in RULE_NAMES.items())
            print(f"usage: memsafe-fix rule CODE, one of: {known}", file=sys.stderr)
            sys.exit(EXIT_ERROR)
        print(text)
        return
    app(prog_name="memsafe-fix")
