"""memsafe-fix against its targets on a real suite, every figure taken in one run.

    .venv/bin/python benchmarks/run.py PATH... [--rounds 3] [--jobs N]

Times, over the test files memsafe-fix selects in PATH (rounds interleaved, medians shown):

- `memsafe-fix --check` cold (an empty cache folder) and warm (the same folder again, nothing
  changed), against `ruff check --select PT --no-cache` over the same files;
- `memsafe-fix --diff --no-cache`, against the LibCST floor: `libcst.parse_module(text).code`
  for each file that `--diff` changes, in a pool of one process per core as memsafe-fix uses;

and prints each command's wall and CPU time (user + system, of every process it started), the
peak of the summed resident memory of all its processes (sampled from /proc every 10 ms), and
the ratios the issue sets targets for: cold <= 3x ruff, warm <= 1x ruff, --diff <= 1.5x the
LibCST floor, peak RSS of all processes < 500 MB. Machines are shared and noisy: compare ratios
from one run, and CPU time rather than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MEMSAFE_FIX = [str(BIN / "memsafe-fix")] if (BIN / "memsafe-fix").exists() else [sys.executable, "-m", "memsafe_fix"]
RUFF = str(BIN / "ruff") if (BIN / "ruff").exists() else shutil.which("ruff") or "ruff"

FLOOR = """\
import sys
from concurrent.futures import ProcessPoolExecutor

import libcst


def one(path):
    with open(path, "rb") as handle:
        source = handle.read()
    return len(libcst.parse_module(source).code)


if __name__ == "__main__":
    files = sys.stdin.read().splitlines()
    workers = int(sys.argv[1])
    if workers == 1:
        sizes = list(map(one, files))
    else:
        with ProcessPoolExecutor(workers) as pool:
            sizes = list(pool.map(one, files, chunksize=max(1, len(files) // (workers * 8))))
    print(sum(sizes))
"""


@dataclass
class Measure:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(getattr(self, name))


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_kb(root: int) -> int:
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += _rss_kb(pid)
        pending += _children(pid)
    return total


def timed(command: list[str], stdin: str = "", cwd: Path = Path.cwd()) -> tuple[str, float, float, float]:
    """(stdout, wall seconds, CPU seconds of the process and its children, peak MB of the
    summed RSS of the process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(process.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate(stdin, timeout=3600)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # The largest single process, should sampling have missed a short peak.
    peak = max(peak, after.ru_maxrss if after.ru_maxrss > before.ru_maxrss else 0)
    return stdout, wall, cpu, peak / 1024


def selected_files(paths: list[Path]) -> list[Path]:
    """The files memsafe-fix checks in ``paths`` (its own discovery, configuration included)."""
    from memsafe_fix.config import ConfigSource
    from memsafe_fix.discovery import discover

    return [found.absolute() for found in discover(paths, ConfigSource(), False) if isinstance(found, Path)]


def changed_files(diff: str, cwd: Path) -> list[Path]:
    return [(cwd / line[6:]).absolute() for line in diff.splitlines() if line.startswith("+++ b/")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians are shown)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="memsafe-fix --jobs and floor workers")
    args = parser.parse_args()
    cwd = Path.cwd()
    files = selected_files(args.paths)
    listing = [str(path) for path in files]
    lines = sum(path.read_bytes().count(b"\n") for path in files)
    print(f"{len(files)} files, {lines:,} lines selected by memsafe-fix; {args.jobs} jobs, {args.rounds} round(s)")
    measures: dict[str, Measure] = {}
    changed: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="memsafe-fix-bench-") as scratch:
        floor_script = Path(scratch) / "floor.py"
        floor_script.write_text(FLOOR)
        for round_number in range(args.rounds):
            cache_dir = Path(scratch) / f"cache-{round_number}"
            check = [
                *MEMSAFE_FIX,
                "--check",
                "--jobs",
                str(args.jobs),
                "--cache-dir",
                str(cache_dir),
                *map(str, args.paths),
            ]
            runs = {
                "ruff check --select PT --no-cache": [RUFF, "check", "--select", "PT", "--no-cache", "--isolated", "--exit-zero", "-q", *listing],
                "memsafe-fix --check (cold)": check,
                "memsafe-fix --check (warm)": check,
                "memsafe-fix --diff --no-cache": [*MEMSAFE_FIX, "--diff", "--no-cache", "--jobs", str(args.jobs), *map(str, args.paths)],
            }  # fmt: skip
            for name, command in runs.items():
                stdout, wall, cpu, peak = timed(command, cwd=cwd)
                measure = measures.setdefault(name, Measure())
                measure.wall.append(wall)
                measure.cpu.append(cpu)
                measure.peak_mb.append(peak)
                if name.endswith("--diff --no-cache"):
                    changed = changed_files(stdout, cwd)
                print(
                    f"  round {round_number + 1}: {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, {peak:.0f} MB", flush=True
                )
            floor = f"LibCST parse + .code over the {len(changed)} changed files"
            _, wall, cpu, peak = timed(
                [sys.executable, str(floor_script), str(args.jobs)], "\n".join(map(str, changed)), cwd
            )
            measure = measures.setdefault(floor, Measure())
            measure.wall.append(wall)
            measure.cpu.append(cpu)
            measure.peak_mb.append(peak)
            print(f"  round {round_number + 1}: {floor}: {wall:.2f} s wall, {cpu:.2f} s CPU, {peak:.0f} MB", flush=True)
    print()
    print("| command | wall s | CPU s | peak RSS, all processes |")
    print("|---|---:|---:|---:|")
    for name, measure in measures.items():
        print(
            f"| {name} | {measure.median('wall'):.2f} | {measure.median('cpu'):.2f} | {measure.median('peak_mb'):.0f} MB |"
        )
    names = list(measures)
    ruff, cold, warm, diff, floor_name = names
    print()
    print("| ratio | wall | CPU | target |")
    print("|---|---:|---:|---|")
    for label, a, b, target in (
        ("`--check` cold / ruff", cold, ruff, "<= 3x (wall)"),
        ("`--check` warm / ruff", warm, ruff, "<= 1x (wall)"),
        ("`--diff` / LibCST floor", diff, floor_name, "<= 1.5x (wall)"),
    ):
        walls = [x / y for x, y in zip(measures[a].wall, measures[b].wall)]
        cpus = [x / y for x, y in zip(measures[a].cpu, measures[b].cpu)]
        print(f"| {label} | {statistics.median(walls):.1f}x | {statistics.median(cpus):.1f}x | {target} |")
    worst = max(measures[name].median("peak_mb") for name in (cold, warm, diff))
    print(f"| peak RSS of all memsafe-fix processes | {worst:.0f} MB | | < 500 MB |")


if __name__ == "__main__":
    main()
