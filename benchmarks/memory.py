"""Peak worker memory and wall time of a mock-heavy suite under pytest-xdist, with and without the
memory-safety pattern.

    .venv/bin/python benchmarks/memory.py [--tests 600] [--workers 2] [--out DIR] [--keep]

Generates two synthetic suites of N tests in classes of 10. Every test creates four
``MagicMock(spec=BigClass)`` (BigClass has 300 methods and 100 attributes) and calls eight
methods of each five times, so the mocks build child mocks and record calls: about 1 MB per
test. In the ``self`` suite the mocks are made in ``setup_method`` and stored on ``self``; in
the ``locals`` suite they are test locals. Each suite runs, with
``pytest -n WORKERS --dist loadgroup -p memsafe --memsafe-report=json:...``:

- none: as generated;
- seed pattern: every class has ``def teardown_method(self): gc.collect()``;
- memsafe-fix: a copy rewritten by the ``memsafe-fix --write`` installed next to this Python;
- full: the same with ``teardown-gc = "full"`` (the seed's ``gc.collect()`` after the release);
- release-only: the same with MSF002 and MSF005 ignored: MSF006's teardowns release ``self``
  state without calling ``gc.collect()``;
- --memsafe-gc: the unchanged suite, with the plugin's ``--memsafe-gc``.

Prints a Markdown table of the peak RSS of the largest worker (as the workers measure
themselves: ``/usr/bin/time`` under-reports xdist workers), the wall time of each run, and its
CPU time (all pytest processes; steadier than wall time on a busy machine), under a header with
the versions. ``--out DIR`` keeps the suites and JSON reports in DIR; otherwise
they go to a temporary directory, removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import memsafe_fix

REPO = Path(__file__).resolve().parent.parent
TESTS_PER_CLASS = 10
MOCK_NAMES = ("client", "store", "cache", "bus")

BIGMOD = '''\
"""A wide class for the suite's mocks to spec."""


class BigClass:
{members}


def exercise(*mocks):
    """Call 8 methods of each mock 5 times: each call creates or records on a child mock."""
    for mock in mocks:
        for index in range(8):
            method = getattr(mock, f"method_{{index:03}}")
            for call in range(5):
                method(call, key=index)
'''

PYPROJECT = """\
[tool.pytest.ini_options]
pythonpath = ["."]
"""

HEADER = """\
{imports}from unittest.mock import MagicMock

from bigmod import BigClass, exercise


class TestService{number:03}:
"""

SETUP_METHOD = """\
    def setup_method(self):
{mocks}
"""

SEED_TEARDOWN = """\
    def teardown_method(self):
        gc.collect()
"""

SELF_TEST = """\
    def test_{index}(self):
        exercise({mocks})
        self.client.method_000.assert_called_with(4, key=0)
"""

LOCALS_TEST = """\
    def test_{index}(self):
{mocks}
        exercise({names})
        client.method_000.assert_called_with(4, key=0)
"""

SUITES = {"self": "mocks on `self`", "locals": "mocks in locals"}
PATTERNS = {
    "none": "none",
    "seed": "seed: `teardown_method` with `gc.collect()`",
    "memsafe-fix": "`memsafe-fix --write` (release, `gc.collect(1)`)",
    "full": '`memsafe-fix --write` with `teardown-gc = "full"` (release, `gc.collect()`)',
    "release-only": "`memsafe-fix --write`, MSF002/MSF005 off (release, no `gc.collect()`)",
    "plugin": "`--memsafe-gc`, files unchanged",
}
# memsafe-fix configuration per rewritten variant.
REWRITES = {
    "memsafe-fix": "",
    "full": '[tool.memsafe-fix]\nteardown-gc = "full"\n',
    "release-only": '[tool.memsafe-fix]\nignore = ["MSF002", "MSF005"]\n',
}


def bigmod() -> str:
    members = [f"    attr_{i:03} = {i}" for i in range(100)]
    members += [f"    def method_{i:03}(self, *args, **kwargs):\n        return None\n" for i in range(300)]
    return BIGMOD.format(members="\n".join(members))


def class_module(suite: str, number: int, tests: int, seed: bool) -> str:
    """One class of `tests` tests; `seed` adds the seed pattern's gc.collect() teardown."""
    names = ", ".join(MOCK_NAMES)
    if suite == "self":
        mocks = "\n".join(f"        self.{name} = MagicMock(spec=BigClass)" for name in MOCK_NAMES)
        methods = [SETUP_METHOD.format(mocks=mocks)]
        test = SELF_TEST.format(index="{index}", mocks=", ".join(f"self.{name}" for name in MOCK_NAMES))
    else:
        mocks = "\n".join(f"        {name} = MagicMock(spec=BigClass)" for name in MOCK_NAMES)
        methods = []
        test = LOCALS_TEST.format(index="{index}", mocks=mocks, names=names)
    if seed:
        methods.append(SEED_TEARDOWN)
    methods += [test.format(index=index) for index in range(tests)]
    return HEADER.format(imports="import gc\n" if seed else "", number=number) + "\n".join(methods)


def write_suite(root: Path, suite: str, total: int, seed: bool) -> None:
    (root / "tests").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    # Declared, so memsafe-fix's MSF010 may add `--dist loadgroup` (the runs pass it anyway).
    (root / "requirements-test.txt").write_text("pytest\npytest-xdist\n")
    (root / "bigmod.py").write_text(bigmod())
    for number, start in enumerate(range(0, total, TESTS_PER_CLASS)):
        tests = min(TESTS_PER_CLASS, total - start)
        (root / "tests" / f"test_service_{number:03}.py").write_text(class_module(suite, number, tests, seed))


def rewrite_with_memsafe_fix(root: Path, config: str) -> str:
    """Run the installed memsafe-fix on the suite, with ``config`` added to its pyproject.toml;
    return its summary line."""
    with (root / "pyproject.toml").open("a") as pyproject:
        pyproject.write(config)
    tool = Path(sys.executable).parent / "memsafe-fix"  # not resolved: the venv's bin directory
    completed = subprocess.run([str(tool), "--write", "tests"], cwd=root, capture_output=True, text=True)
    if completed.returncode not in (0, 1):
        sys.exit(f"memsafe-fix --write failed ({completed.returncode}):\n{completed.stderr}")
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[-1] if lines else ""


def run_suite(root: Path, report: Path, workers: int, extra: list[str]) -> tuple[int, float, float, str]:
    """Peak RSS of the largest worker, wall and CPU seconds, and pytest's result line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers)]
    command += ["--dist", "loadgroup", "-p", "memsafe", f"--memsafe-report=json:{report}", *extra]
    start, cpu_start = time.perf_counter(), _children_cpu()
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu_start
    if not report.exists():
        sys.exit(f"no memory report from {' '.join(command)}:\n{completed.stdout}\n{completed.stderr}")
    processes = json.loads(report.read_text())["processes"]
    peak = max(process["peak_rss"] or 0 for process in processes if process["name"].startswith("gw"))
    result = re.search(r"\d+ (passed|failed).*? in ", completed.stdout)
    return peak, wall, cpu, result[0].removesuffix(" in ") if result else f"exit {completed.returncode}"


def _children_cpu() -> float:
    """User + system seconds of finished child processes, xdist workers included (pytest waits
    for them). Less sensitive than wall time to other load on the machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    return rev + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=600, help="tests per suite (default 600)")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    parser.add_argument("--out", type=Path, help="keep suites and reports here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    header = (  # taken first: the revision is the one measured, even if files change meanwhile
        f"memsafe-fix {memsafe_fix.__version__} (git {revision()}), pytest {version('pytest')}, "
        f"pytest-xdist {version('pytest-xdist')}, Python {platform.python_version()}; "
        f"{args.tests} tests per suite in classes of {TESTS_PER_CLASS}, -n {args.workers} --dist loadgroup, "
        f"{os.cpu_count()} CPUs"
    )
    out = args.out or Path(tempfile.mkdtemp(prefix="memsafe-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    notes = []
    for suite, suite_label in SUITES.items():
        base = out / suite / "none"
        write_suite(base, suite, args.tests, seed=False)
        write_suite(out / suite / "seed", suite, args.tests, seed=True)
        for variant, config in REWRITES.items():
            shutil.copytree(base, out / suite / variant)
            summary = rewrite_with_memsafe_fix(out / suite / variant, config)
            notes.append(f"{PATTERNS[variant]} on the {suite_label} suite: {summary}")
        for pattern, pattern_label in PATTERNS.items():
            root = base if pattern == "plugin" else out / suite / pattern
            extra = ["--memsafe-gc"] if pattern == "plugin" else []
            print(f"running {suite} / {pattern} ...", file=sys.stderr, flush=True)
            peak, wall, cpu, result = run_suite(root, out / f"report-{suite}-{pattern}.json", args.workers, extra)
            rows.append(
                f"| {suite_label} | {pattern_label} | {peak / 1024**2:,.0f} MiB | {wall:.1f} s | {cpu:.1f} s | {result} |"
            )

    print(header + "\n")
    print("| suite | pattern | peak worker RSS | wall time | CPU time | pytest |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("\n".join(notes))
    if args.out is None and not args.keep:
        shutil.rmtree(out)
    else:
        print(f"\nsuites and reports kept in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
