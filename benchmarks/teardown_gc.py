"""What each teardown body costs and frees, per Python version: the numbers behind `teardown-gc`.

    python benchmarks/teardown_gc.py [--pythons 3.9 3.10 3.11 3.12 3.13] [--tests 400] [--ballast 1000000]

A full ``gc.collect()`` walks every object the process holds, so its cost depends on the heap
the suite keeps alive (imported modules, parsed data, caches), not on the test. This generates
a suite whose ``conftest.py`` keeps a *ballast* of N small tracked objects alive (the default,
1,000,000 lists, is about 110 MB: the size of a real mid-sized suite's heap), and test classes
of 10 tests that each build about 1 MB of ``MagicMock``s, kept on ``self`` (made in
``setup_method``) or in locals. Each variant gives every class the same teardown:

- none: no teardown;
- seed: the seed pattern, ``gc.collect()`` (no release);
- release: ``self.__dict__.clear()`` only (the automatic collector does the rest);
- full: ``self.__dict__.clear()`` then ``gc.collect()`` (``teardown-gc = "full"``);
- young: ``self.__dict__.clear()`` then ``gc.collect(1)`` (``teardown-gc = "young"``);
- gen0: ``self.__dict__.clear()`` then ``gc.collect(0)``;
- freeze: as full, after ``gc.collect(); gc.freeze()`` at the end of collection (a
  project-level ``conftest.py`` hook), so full collections skip the pre-test heap.

Every suite runs serially (one process: no xdist noise) under each Python found in pyenv
(``~/.pyenv/versions``), in a venv per version with pytest, made once under
``~/.cache/memsafe-fix-bench``. Prints one Markdown table: per Python, suite and variant, CPU
seconds of the pytest process (user + system, from ``wait4``), its ratio to ``none``, and its
peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import MOCK_NAMES, TESTS_PER_CLASS, bigmod  # noqa: E402

VENVS = Path.home() / ".cache" / "memsafe-fix-bench"
RELEASE = "self.__dict__.clear()"
VARIANTS = {
    "none": None,
    "seed": ["gc.collect()"],
    "release": [RELEASE],
    "full": [RELEASE, "gc.collect()"],
    "young": [RELEASE, "gc.collect(1)"],
    "gen0": [RELEASE, "gc.collect(0)"],
    "freeze": [RELEASE, "gc.collect()"],
}
CONFTEST = """\
import gc

# Long-lived state the suite keeps alive: every full collection walks it.
BALLAST = [[index] for index in range({ballast})]
"""
FREEZE_HOOK = """

def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()
"""


def class_module(suite: str, number: int, teardown: list[str] | None) -> str:
    lines = ["import gc", "from unittest.mock import MagicMock", "", "from bigmod import BigClass, exercise", "", ""]
    lines.append(f"class TestService{number:03}:")
    if suite == "self":
        lines += [
            "    def setup_method(self):",
            *(f"        self.{n} = MagicMock(spec=BigClass)" for n in MOCK_NAMES),
            "",
        ]
    if teardown is not None:
        lines += ["    def teardown_method(self):", *(f"        {statement}" for statement in teardown), ""]
    for index in range(TESTS_PER_CLASS):
        lines.append(f"    def test_{index}(self):")
        if suite == "self":
            lines.append(f"        exercise({', '.join(f'self.{n}' for n in MOCK_NAMES)})")
        else:
            lines += [f"        {n} = MagicMock(spec=BigClass)" for n in MOCK_NAMES]
            lines.append(f"        exercise({', '.join(MOCK_NAMES)})")
        lines.append("")
    return "\n".join(lines)


def write_suite(root: Path, suite: str, variant: str, tests: int, ballast: int) -> None:
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    (root / "bigmod.py").write_text(bigmod())
    conftest = CONFTEST.format(ballast=ballast) + (FREEZE_HOOK if variant == "freeze" else "")
    (root / "tests" / "conftest.py").write_text(conftest)
    for number in range(tests // TESTS_PER_CLASS):
        source = class_module(suite, number, VARIANTS[variant])
        (root / "tests" / f"test_service_{number:03}.py").write_text(source)


def venv_python(version: str) -> Path | None:
    """A venv with pytest for the newest pyenv Python ``version``, made on first use."""
    found = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python3"))
    if not found:
        return None
    venv = VENVS / f"py{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([str(found[-1]), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pytest"], check=True)
    return python


def run(python: Path, root: Path) -> tuple[float, int, str]:
    """CPU seconds, peak RSS in bytes and pytest's result line of one serial run."""
    process = subprocess.Popen(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    lines = output.strip().splitlines()
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pythons", nargs="+", default=["3.9", "3.10", "3.11", "3.12", "3.13"])
    parser.add_argument("--tests", type=int, default=400, help="tests per suite (default 400)")
    parser.add_argument("--ballast", type=int, default=1_000_000, help="long-lived objects (default 1,000,000)")
    parser.add_argument("--suites", nargs="+", default=["self", "locals"], choices=["self", "locals"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="memsafe-teardown-gc-"))
    rows = []
    started = time.perf_counter()
    for version in args.pythons:
        python = venv_python(version)
        if python is None:
            print(f"Python {version}: not installed in pyenv, skipped", file=sys.stderr)
            continue
        full_version = subprocess.run([str(python), "-V"], capture_output=True, text=True).stdout.split()[1]
        for suite in args.suites:
            baseline = None
            for variant in args.variants:
                root = out / version / suite / variant
                write_suite(root, suite, variant, args.tests, args.ballast)
                print(f"Python {full_version}, {suite}, {variant} ...", file=sys.stderr, flush=True)
                cpu, peak, result = run(python, root)
                baseline = cpu if variant == "none" else baseline
                ratio = f"{cpu / baseline:.2f}x" if baseline else ""
                rows.append(
                    f"| {full_version} | {suite} | {variant} | {cpu:.1f} | {ratio} | {peak / 1024**2:,.0f} | {result} |"
                )
    shutil.rmtree(out)
    print(
        f"{args.tests} tests in classes of {TESTS_PER_CLASS}, about 1 MB of mocks each; ballast "
        f"{args.ballast:,} tracked objects; serial; {os.cpu_count()} CPUs; {time.perf_counter() - started:.0f} s\n"
    )
    print("| Python | mocks | teardown | CPU s | vs none | peak RSS MiB | pytest |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
