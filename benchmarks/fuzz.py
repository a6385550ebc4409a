"""The long fuzz run: many generated mock-using test modules through the fixer, and a sample of
them under real pytest before and after ``memsafe-fix --write``.

    .venv/bin/python benchmarks/fuzz.py --modules 10000 --pytest-sample 200 [--seed 0] [--keep DIR]

Each module (``tests/mock_modules.py``) is fixed in-process; counted: crashes (an exception
other than the input's own syntax error), outputs that do not compile, unstable fixes (a second
run would change the output again, or the fixer reports instability itself). The sample is
written to a project folder, run with pytest, rewritten with the ``memsafe-fix`` command, and
run again: a test whose outcome changed is counted. The modules behind every problem are
copied to ``--keep`` (default: ``fuzz-failures/``) to reproduce them. Exit 1 if anything was
counted. The property tests in ``tests/test_properties.py`` run the same checks briefly in CI.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mock_modules import mock_module  # noqa: E402

from memsafe_fix.config import Settings  # noqa: E402
from memsafe_fix.engine import fix_source  # noqa: E402
from memsafe_fix.fixer import FixError  # noqa: E402

PYPROJECT = """\
[project]
name = "fuzz"

[tool.pytest.ini_options]
asyncio_default_fixture_loop_scope = "function"
addopts = "-p no:cacheprovider"
"""
# Modules per pytest run of the sample: few processes, and one bad module cannot hide many.
PYTEST_BATCH = 50


def check_module(source: str, name: str) -> str | None:
    """The problem with fixing ``source``, if any: ``crash``, ``non-compiling`` or ``unstable``."""
    settings = Settings()
    try:
        fixed, _, _ = fix_source(source, settings, name)
    except FixError as exc:
        return "non-compiling" if "would not compile" in str(exc) else "unstable"
    except Exception:
        traceback.print_exc()
        return "crash"
    try:
        compile(fixed, name, "exec", dont_inherit=True)
    except SyntaxError:
        return "non-compiling"
    try:
        again, _, _ = fix_source(fixed, settings, name)
    except Exception:
        return "unstable"
    return None if again == fixed else "unstable"


def outcomes(folder: Path, files: list[str]) -> dict[str, str]:
    """Each test's outcome (passed, failed, error, skipped; ``error`` for a setup or teardown
    error as well) from a pytest run of ``files`` in ``folder``."""
    report = folder / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--junitxml={report}", *files],
        cwd=folder,
        capture_output=True,
    )
    found: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        key = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = "error" if "error" in kinds else "failed" if "failure" in kinds else kinds[0] if kinds else "passed"
        # A teardown error is reported as a second entry for the same test.
        if found.get(key) not in (None, "passed"):
            outcome = found[key] if outcome == "passed" else outcome
        found[key] = outcome
    report.unlink()
    return found


def pytest_sample(sample: list[tuple[str, str]], keep: Path) -> tuple[int, int, list[str]]:
    """(tests run, tests whose outcome changed, modules with a change) for the sampled modules."""
    tests = changed = 0
    changed_modules: list[str] = []
    with tempfile.TemporaryDirectory(prefix="memsafe-fuzz-") as folder:
        root = Path(folder)
        (root / "pyproject.toml").write_text(PYPROJECT)
        for start in range(0, len(sample), PYTEST_BATCH):
            batch = sample[start : start + PYTEST_BATCH]
            for name, source in batch:
                (root / f"{name}.py").write_bytes(source.encode())
            files = [f"{name}.py" for name, _ in batch]
            before = outcomes(root, files)
            run = subprocess.run(
                [sys.executable, "-m", "memsafe_fix", "--write", "-q", *files], cwd=root, capture_output=True, text=True
            )
            if run.returncode == 2:
                print(f"memsafe-fix --write failed:\n{run.stderr}", file=sys.stderr)
            after = outcomes(root, files)
            tests += len(before)
            for name, source in batch:
                differs = [
                    k
                    for k in before.keys() | after.keys()
                    if k.startswith(f"{name}.") and before.get(k) != after.get(k)
                ]
                if differs:
                    changed += len(differs)
                    changed_modules.append(name)
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / f"{name}.py").write_bytes(source.encode())
                    (keep / f"{name}.fixed.py").write_bytes((root / f"{name}.py").read_bytes())
                    for key in sorted(differs):
                        print(f"outcome changed: {key}: {before.get(key)} -> {after.get(key)}", file=sys.stderr)
                (root / f"{name}.py").unlink()
    return tests, changed, changed_modules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", type=int, default=10_000)
    parser.add_argument("--pytest-sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"))
    options = parser.parse_args()
    problems: Counter[str] = Counter()
    sample: list[tuple[str, str]] = []
    every = max(1, options.modules // max(1, options.pytest_sample))
    start = time.perf_counter()
    for number in range(options.modules):
        name = f"test_m{number:05d}"
        source = mock_module(random.Random(options.seed * 1_000_003 + number), name)
        problem = check_module(source, name)
        if problem is not None:
            problems[problem] += 1
            options.keep.mkdir(parents=True, exist_ok=True)
            (options.keep / f"{name}.py").write_bytes(source.encode())
            print(f"{problem}: {name}", file=sys.stderr)
        elif number % every == 0 and len(sample) < options.pytest_sample:
            sample.append((name, source))
    checked = time.perf_counter() - start
    tests, changed, changed_modules = pytest_sample(sample, options.keep) if sample else (0, 0, [])
    print(
        f"{options.modules} modules in {checked:.0f} s: {problems['crash']} crashes, "
        f"{problems['non-compiling']} non-compiling outputs, {problems['unstable']} unstable fixes; "
        f"pytest sample: {len(sample)} modules, {tests} tests, {changed} changed outcomes "
        f"in {len(changed_modules)} modules"
    )
    return 1 if problems or changed else 0


if __name__ == "__main__":
    sys.exit(main())
