"""CPU time, wall time, peak worker memory and per-test outcomes of a real suite before and after
``memsafe-fix --write``, per settings variant.

    .venv/bin/python benchmarks/real_suite.py CHECKOUT --python SUITE_VENV/bin/python \\
        --pytest-args "-n 2 --dist loadgroup t/unit" --rewrite t/unit \\
        --variant full='teardown-gc = "full"' --variant release-only='ignore = ["MSF002", "MSF005"]'

Copies CHECKOUT (without ``.git``, virtual environments and caches) once per variant into a
temporary directory: ``original`` stays unmodified, ``default`` is rewritten with no settings,
and each ``--variant NAME='toml lines'`` is rewritten with those lines as its
``[tool.memsafe-fix]`` table. The rewrite uses the ``memsafe-fix`` installed next to this Python
(or ``--memsafe-fix PATH``) with ``--config`` naming a generated file in the copy, so the
variant's settings replace any ``[tool.memsafe-fix]`` table the suite has (``--config`` is not
merged with it).

Then it runs ``PYTHON -m pytest PYTEST_ARGS`` in each copy, interleaved so that drift on a busy
machine shows: original, default, the variants, once per ``--repeat``, then the original again.
Each run adds ``--junitxml`` (per-test outcomes) and the memsafe-fix plugin's
``--memsafe-report=json:`` (peak RSS of each xdist worker, as the workers measure themselves),
so memsafe-fix must be installed in the suite's environment too (``pip install --no-deps
memsafe-fix``: the plugin needs only the standard library; it is idle without its options).
``PYTHONDONTWRITEBYTECODE=1`` keeps the first run of a copy from leaving bytecode the later
ones reuse.

Prints ONE Markdown table, a row per run in run order: CPU seconds (user + system of all pytest
processes, xdist workers included: steadier than wall time on a shared machine), its ratio to
the mean of the ``original`` runs just before and after it, wall seconds, the peak RSS of each
worker, pytest's counts, and whether every test's outcome equals the first original run's.
Notes under the table list memsafe-fix's summary per variant and the tests whose outcome
differs. ``--out DIR`` keeps the copies and reports in DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import memsafe_fix

REPO = Path(__file__).resolve().parent.parent
ORIGINAL, DEFAULT = "original", "default"
# Not copied: version control, virtual environments and caches (large, and not the suite).
NOT_COPIED = (".git", ".venv", ".tox", ".nox", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
# "@group" after the name or a parametrized test's "]", never inside the brackets; pytest 9.2's
# junitxml, given an id whose group pytest-memsafe restored, writes "test[1]@group]".
XDIST_GROUP_SUFFIX = re.compile(r"(?<=\])@[\w.\-]+\]$|@[\w.\-]+$")
CONFIG_NAME = "memsafe-fix-variant.toml"  # not pyproject.toml: pytest must not take it as its rootdir config


@dataclass
class Run:
    variant: str
    cpu: float
    wall: float
    peaks: dict[str, Optional[int]]  # process name -> peak RSS in bytes
    outcomes: dict[str, str]  # test id -> outcome
    counts: str  # pytest's summary, e.g. "1648 passed, 169 skipped"
    ratio: Optional[float] = None
    differs: list[str] = field(default_factory=list)  # test ids whose outcome differs from the first original


def copy_checkout(checkout: Path, destination: Path) -> None:
    shutil.copytree(checkout, destination, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))


def rewrite(root: Path, tool: Path, settings: str, paths: list[str]) -> str:
    """``memsafe-fix --write`` with ``settings`` as the [tool.memsafe-fix] table; its summary line."""
    config = root / CONFIG_NAME
    config.write_text("[tool.memsafe-fix]\n" + settings + ("\n" if settings else ""))
    command = [str(tool), "--write", "--config", str(config), *paths]
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    if completed.returncode not in (0, 1):
        # Exit 2 also means a file it could not parse: that file is untouched, the rest rewritten.
        errors = [line for line in lines if "error" in line][:5]
        print(f"memsafe-fix exited {completed.returncode}:\n" + "\n".join(errors), file=sys.stderr)
    return (lines[-1] if lines else "") + (f" (exit {completed.returncode})" if completed.returncode > 1 else "")


def run_pytest(root: Path, variant: str, python: str, pytest_args: list[str], reports: Path, index: int) -> Run:
    junit, memory = reports / f"{index:02}-{variant}.xml", reports / f"{index:02}-{variant}.json"
    command = [python, "-m", "pytest", *pytest_args, f"--junitxml={junit}", f"--memsafe-report=json:{memory}"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start, cpu_start = time.perf_counter(), children_cpu()
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu_start
    (reports / f"{index:02}-{variant}.out").write_text(completed.stdout + completed.stderr)
    if not junit.exists() or not memory.exists():
        tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-20:])
        sys.exit(f"no report from {shlex.join(command)} (exit {completed.returncode}) in {root}:\n{tail}")
    processes = json.loads(memory.read_text())["processes"]
    workers = [p for p in processes if p["name"].startswith("gw")] or processes
    summary = re.findall(r"=+ (.*\d+ (?:passed|failed|errors?|skipped|deselected).*?) in [\d.]+s", completed.stdout)
    return Run(
        variant=variant,
        cpu=cpu,
        wall=wall,
        peaks={p["name"]: p["peak_rss"] for p in workers},
        outcomes=junit_outcomes(junit),
        counts=summary[-1] if summary else f"exit {completed.returncode}",
    )


def junit_outcomes(path: Path) -> dict[str, str]:
    """Test id -> outcome (passed, failed, error, skipped; joined with "+" when one test has
    several, e.g. a failure and a teardown error)."""
    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        # pytest-xdist's --dist loadgroup appends "@group" to the names of grouped tests.
        name = XDIST_GROUP_SUFFIX.sub("", case.get("name", ""))
        test = f"{case.get('classname', '')}::{name}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes.setdefault(test, []).extend(kinds or ["passed"])
    return {test: "+".join(sorted(set(kinds))) for test, kinds in outcomes.items()}


def children_cpu() -> float:
    """User + system seconds of finished child processes, xdist workers included (pytest waits
    for them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def git_revision(directory: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short=10", "HEAD") or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def interpreter_versions(python: str) -> str:
    code = (
        "import platform, importlib.metadata as m\n"
        "names = ('pytest', 'pytest-xdist')\n"
        "found = [f'{n} {m.version(n)}' for n in names if any(d.metadata['Name'] == n for d in m.distributions())]\n"
        "print(', '.join(found + ['Python ' + platform.python_version()]))"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def parse_variant(text: str) -> tuple[str, str]:
    name, sep, settings = text.partition("=")
    if not sep or not name or name in (ORIGINAL, DEFAULT):
        raise argparse.ArgumentTypeError(f"expected NAME='toml lines' with NAME not {ORIGINAL!r} or {DEFAULT!r}")
    return name, settings.strip()


def compare(runs: list[Run]) -> None:
    """Each run's ratio to the original runs around it, and its outcome differences from the
    first original run."""
    originals = [i for i, run in enumerate(runs) if run.variant == ORIGINAL]
    reference = runs[originals[0]]
    for index, run in enumerate(runs):
        if run.variant == ORIGINAL:
            run.ratio = run.cpu / reference.cpu
        else:
            before = max(i for i in originals if i < index)
            after = min(i for i in originals if i > index)
            around = [runs[before].cpu, runs[after].cpu]
            run.ratio = run.cpu / (sum(around) / len(around))
        tests = reference.outcomes.keys() | run.outcomes.keys()
        run.differs = sorted(t for t in tests if reference.outcomes.get(t) != run.outcomes.get(t))


def mib(size: Optional[int]) -> str:
    return "?" if size is None else f"{size / 1024**2:,.0f}"


def unstable(runs: list[Run]) -> set[str]:
    """Tests whose outcome is not the same in every original run: flaky, whatever was rewritten."""
    originals = [run.outcomes for run in runs if run.variant == ORIGINAL]
    tests = set().union(*originals)
    return {t for t in tests if len({outcomes.get(t) for outcomes in originals}) > 1}


def identical(run: Run, flaky: set[str]) -> str:
    if not run.differs:
        return "yes"
    also_flaky = len(flaky.intersection(run.differs))
    return f"no ({len(run.differs)} tests" + (f", {also_flaky} also vary between originals)" if also_flaky else ")")


def table(runs: list[Run]) -> str:
    flaky = unstable(runs)
    lines = [
        "| # | variant | CPU s | CPU ratio | wall s | peak RSS per worker, MiB | pytest | outcomes identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(runs, 1):
        peaks = " / ".join(mib(peak) for peak in run.peaks.values())
        lines.append(
            f"| {number} | {run.variant} | {run.cpu:.1f} | {run.ratio:.2f}x | {run.wall:.1f} | {peaks} "
            f"| {run.counts} | {identical(run, flaky)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="the suite's checkout (not modified)")
    parser.add_argument("--python", required=True, help="the suite's Python (its venv's bin/python)")
    parser.add_argument("--pytest-args", default="", help="pytest's arguments, one shell-quoted string")
    parser.add_argument(
        "--rewrite", action="append", help="a path (relative to the checkout) to rewrite; repeatable (default: .)"
    )
    parser.add_argument(
        "--variant", action="append", type=parse_variant, default=[], help="NAME='toml lines'; repeatable"
    )
    parser.add_argument("--repeat", type=int, default=1, help="cycles of original + variants (default 1)")
    parser.add_argument(
        "--memsafe-fix", type=Path, default=Path(sys.executable).parent / "memsafe-fix", help="the memsafe-fix to run"
    )
    parser.add_argument("--out", type=Path, help="keep copies and reports here (default: a temporary directory)")
    args = parser.parse_args()

    checkout = args.checkout.resolve()
    python = os.path.abspath(args.python) if os.sep in args.python else args.python  # not resolved: a venv's link
    variants = {DEFAULT: "", **dict(args.variant)}
    header = (  # taken first: the revisions are the ones measured, even if files change meanwhile
        f"memsafe-fix {memsafe_fix.__version__} (git {git_revision(REPO)}); suite {checkout.name} at "
        f"{git_revision(checkout)}; {interpreter_versions(python)}; `pytest {args.pytest_args}`; "
        f"{os.cpu_count()} CPUs, {platform.node()}"
    )
    out = args.out or Path(tempfile.mkdtemp(prefix="memsafe-real-suite-"))
    reports = out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    notes = []
    for variant in (ORIGINAL, *variants):
        print(f"copying {variant} ...", file=sys.stderr, flush=True)
        copy_checkout(checkout, out / variant)
        if variant != ORIGINAL:
            summary = rewrite(out / variant, args.memsafe_fix, variants[variant], args.rewrite or ["."])
            settings = variants[variant].replace("\n", "; ") or "no settings"
            notes.append(f"- {variant} (`{settings}`): {summary}")

    order = [*([ORIGINAL, *variants] * args.repeat), ORIGINAL]
    pytest_args = shlex.split(args.pytest_args)
    runs = []
    for index, variant in enumerate(order):
        print(f"running {index + 1}/{len(order)}: {variant} ...", file=sys.stderr, flush=True)
        runs.append(run_pytest(out / variant, variant, python, pytest_args, reports, index))
        run = runs[-1]
        peaks = " / ".join(mib(peak) for peak in run.peaks.values())
        print(f"  {run.cpu:.1f} s CPU, {run.wall:.1f} s wall, {peaks} MiB, {run.counts}", file=sys.stderr)
    compare(runs)

    print(header + "\n")
    print(table(runs))
    print()
    print("\n".join(notes))
    for number, run in enumerate(runs, 1):
        if run.differs:
            shown = ", ".join(f"`{t}` {runs[0].outcomes.get(t)} -> {run.outcomes.get(t)}" for t in run.differs[:10])
            print(
                f"- run {number} ({run.variant}) differs from run 1: {shown}"
                + (" ..." if len(run.differs) > 10 else "")
            )
    if args.out is None:
        print(f"\ncopies and reports in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
