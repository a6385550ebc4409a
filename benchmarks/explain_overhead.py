"""CPU cost of ``--memsafe-explain`` on a real suite, against ``--memsafe-report`` and no option.

    python benchmarks/explain_overhead.py SUITE_DIR [--python PY] [--rounds 3] [-- PYTEST_ARGS...]

Runs ``PY -m pytest PYTEST_ARGS`` in SUITE_DIR once per mode and round, the modes interleaved
within each round (so a noisy neighbour hits all modes alike):

- ``none``: ``-p no:memsafe`` (the plugin not loaded);
- ``off``: the plugin loaded, no memsafe option (``--memsafe-explain`` code is not even imported);
- ``report``: ``--memsafe-report``;
- ``explain``: ``--memsafe-explain``.

Measures CPU seconds, user + system, of pytest and all its children (the xdist workers), from
``os.wait4``; wall time is not compared. Prints one Markdown table: per mode the median CPU over
the rounds, every round's value, and the median's ratio to ``report`` and to ``none``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

MODES = {
    "none": ["-p", "no:memsafe"],
    "off": [],
    "report": ["--memsafe-report"],
    "explain": ["--memsafe-explain"],
}


def cpu_seconds(command: list[str], cwd: str) -> float:
    """User + system CPU of the command and everything it started (it waits for its children)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", help="the directory pytest runs in")
    parser.add_argument("--python", default=sys.executable, help="the suite's Python (with pytest-memsafe)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, from: " + ", ".join(MODES))
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.pytest_args = argv[split + 1 :]  # pytest's arguments, e.g. t/unit -n 2
    modes = args.modes.split(",")
    base = [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode in modes:
            times[mode].append(cpu_seconds([*base, *MODES[mode]], args.suite))
            print(f"round {round_ + 1} {mode}: {times[mode][-1]:.1f} s CPU", file=sys.stderr)
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    print("| mode | CPU s (median) | rounds | vs report | vs none |")
    print("|---|---:|---|---:|---:|")
    for mode in modes:
        rounds = ", ".join(f"{value:.1f}" for value in times[mode])
        vs_report = f"{medians[mode] / medians['report']:.2f}x" if "report" in medians else ""
        vs_none = f"{medians[mode] / medians['none']:.2f}x" if "none" in medians else ""
        print(f"| {mode} | {medians[mode]:.1f} | {rounds} | {vs_report} | {vs_none} |")


if __name__ == "__main__":
    main()
