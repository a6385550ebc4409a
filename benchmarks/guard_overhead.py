"""CPU cost of pytest-memsafe's live guards on a real suite: ``--memsafe-max-rss`` (a watchdog
thread reading RSS every ``WATCHDOG_INTERVAL`` while a test runs) and ``--memsafe-max-mock-calls``
(a check after every ``unittest.mock`` call).

    .venv/bin/python benchmarks/guard_overhead.py SUITE_DIR --python SUITE_VENV/bin/python \\
        --pytest-args "-n 2 t/unit" --repeat 4

Runs ``PYTHON -m pytest -p no:cacheprovider PYTEST_ARGS`` in SUITE_DIR without the guards
(``off``: the plugin loaded, no option) and with them (``guard``: ``--memsafe-max-rss`` and
``--memsafe-max-mock-calls`` at values no test of the suite reaches, so both guards check and
none fires), interleaved off, guard, guard, off, off, guard, ... so that drift on a busy machine
hits both alike. pytest-memsafe must be installed in the suite's environment. CPU time is user +
system of the pytest process and everything it waited for (xdist workers included), from
``RUSAGE_CHILDREN``; wall time on a shared machine is noise. Prints one Markdown row per run (the
ratio of a guard run is to the mean of the off runs next to it), then the ratio of the CPU sums
and the median of the per-run ratios.

``--count-mock-calls`` first runs the suite once more with a counting plugin, to say how many
``unittest.mock`` calls the suite makes (how hard it exercises the mock guard). ``--micro``
instead measures the cost of one mock call with and without the guard, in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COUNTER_PLUGIN = """\
import os
from unittest import mock

_calls = 0
_original = mock.CallableMixin._increment_mock_call


def _counting(self, /, *args, **kwargs):
    global _calls
    _calls += 1
    return _original(self, *args, **kwargs)


mock.CallableMixin._increment_mock_call = _counting


def pytest_sessionfinish(session):
    with open(os.path.join(os.environ["MEMSAFE_BENCH_COUNTS"], str(os.getpid())), "w") as out:
        out.write(str(_calls))
"""


# With the guards on: what each pytest process spent on them, in the process itself (the ratio of
# two whole runs cannot resolve 1% on a busy machine).
PROBE_PLUGIN = """\
import json
import os
import threading
from unittest import mock

_calls = _tests = 0
_original = mock.CallableMixin._increment_mock_call


def _counting(self, /, *args, **kwargs):
    global _calls
    _calls += 1
    return _original(self, *args, **kwargs)


mock.CallableMixin._increment_mock_call = _counting  # the guard wraps this one at configure time


def pytest_runtest_setup(item):  # only where tests run, not in the xdist controller
    global _tests
    _tests += 1


def pytest_sessionfinish(session):
    watchdog_ns = 0
    for thread in threading.enumerate():
        if thread.name == "memsafe-watchdog":
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as schedstat:
                watchdog_ns = int(schedstat.read().split()[0])  # time on a CPU, in ns
    times = os.times()
    with open(os.path.join(os.environ["MEMSAFE_BENCH_COUNTS"], str(os.getpid())), "w") as out:
        json.dump({"cpu": times.user + times.system, "watchdog": watchdog_ns / 1e9, "calls": _calls,
                   "tests": _tests}, out)
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(python: str, suite: Path, args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """CPU seconds, wall seconds and pytest's counts line of one run."""
    cpu, wall = children_cpu(), time.monotonic()
    completed = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    cpu, wall = children_cpu() - cpu, time.monotonic() - wall
    counts = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", completed.stdout, re.MULTILINE)
    if not counts:
        sys.exit(f"no pytest summary in the output:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return cpu, wall, counts[-1].strip("= ")


def count_mock_calls(python: str, suite: Path, args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as plugin_dir, tempfile.TemporaryDirectory() as counts:
        Path(plugin_dir, "memsafe_bench_count.py").write_text(COUNTER_PLUGIN)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [plugin_dir, os.environ.get("PYTHONPATH")])),
            "MEMSAFE_BENCH_COUNTS": counts,
        }
        run(python, suite, ["-p", "memsafe_bench_count", *args], env)
        return sum(int(path.read_text()) for path in Path(counts).iterdir())


def attribute(python: str, suite: Path, args: list[str], guard_args: list[str]) -> None:
    """One run with the guards and a probe: the watchdog threads' CPU time, and the mock calls and
    tests whose checks cost what ``per_call_costs`` measures here."""
    with tempfile.TemporaryDirectory() as plugin_dir, tempfile.TemporaryDirectory() as counts:
        Path(plugin_dir, "memsafe_bench_probe.py").write_text(PROBE_PLUGIN)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [plugin_dir, os.environ.get("PYTHONPATH")])),
            "MEMSAFE_BENCH_COUNTS": counts,
        }
        run(python, suite, ["-p", "memsafe_bench_probe", *args, *guard_args], env)
        processes = [json.loads(path.read_text()) for path in Path(counts).iterdir()]
    total = {key: sum(process[key] for process in processes) for key in ("cpu", "watchdog", "calls", "tests")}
    call_cost, read_cost = per_call_costs()
    mock_guard = total["calls"] * call_cost
    reads = total["tests"] * 2 * read_cost  # RSS before each test and after its teardown
    print(
        f"attribution ({len(processes)} pytest processes, {total['cpu']:.2f} s CPU in all, {total['tests']} tests, "
        f"{total['calls']:,} mock calls):"
    )
    watchdogs = ", ".join(f"{process['watchdog'] * 1e3:.1f}" for process in processes)
    print(f"  watchdog threads (RSS read every 20 ms during a test): {watchdogs} ms CPU")
    print(f"  mock call checks: {total['calls']:,} x {call_cost * 1e6:.2f} us = {mock_guard * 1e3:.1f} ms")
    print(f"  RSS reads around tests: {total['tests'] * 2:,} x {read_cost * 1e6:.1f} us = {reads * 1e3:.1f} ms")
    spent = total["watchdog"] + mock_guard + reads
    print(f"  guards in all: {spent * 1e3:.1f} ms = {spent / total['cpu'] * 100:.2f}% of the run's CPU")


def mock_call_times(rounds: int, calls: int) -> tuple[list[float], list[float]]:
    """Seconds per mock call (a child two levels down, as `client.api.search(...)`), per round,
    without and with the mock guard."""
    from unittest import mock

    from pytest_memsafe import MockCallGuard

    def per_call() -> float:
        search = mock.MagicMock().api.search
        start = time.process_time()
        for _ in range(calls):
            search(query="q", token=None)
        return (time.process_time() - start) / calls

    plain, guarded = [], []
    for _ in range(rounds):
        plain.append(per_call())
        guard = MockCallGuard(calls * 10)
        guard.phase = 1  # as inside a test
        try:
            guarded.append(per_call())
        finally:
            guard.pytest_unconfigure()
    return plain, guarded


def per_call_costs(rounds: int = 15, calls: int = 20_000) -> tuple[float, float]:
    """Seconds the mock guard adds to one mock call, and one RSS read takes (fastest rounds)."""
    from pytest_memsafe import rss_meter

    plain, guarded = mock_call_times(rounds, calls)
    meter = rss_meter()
    assert meter is not None
    start = time.process_time()
    for _ in range(calls):
        meter.current()
    return max(0.0, min(guarded) - min(plain)), (time.process_time() - start) / calls


def micro(calls: int, rounds: int) -> None:
    """Microseconds per mock call (a child two levels down, as `client.api.search(...)`)."""
    plain, guarded = ([t * 1e6 for t in times] for times in mock_call_times(rounds, calls))
    for label, pick in (("fastest", min), ("median", statistics.median)):
        base, with_guard = pick(plain), pick(guarded)
        print(
            f"{label} of {rounds} rounds: one mock call {base:.2f} us without the guard, {with_guard:.2f} us "
            f"with it: +{with_guard - base:.2f} us ({with_guard / base:.3f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", type=Path, nargs="?", help="the suite's checkout (the directory pytest runs in)")
    parser.add_argument("--python", default=sys.executable, help="the suite environment's Python")
    parser.add_argument("--pytest-args", default="-n 2", help="arguments for pytest, as one string")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each runs off and guard twice (ABBA)")
    parser.add_argument("--max-rss", default="8G", help="the --memsafe-max-rss of the guard runs")
    parser.add_argument("--max-mock-calls", default="100000", help="the --memsafe-max-mock-calls of the guard runs")
    parser.add_argument("--count-mock-calls", action="store_true", help="first count the suite's mock calls")
    parser.add_argument("--micro", action="store_true", help="only measure one mock call with and without the guard")
    parser.add_argument(
        "--attribute", action="store_true", help="also run once with a probe that measures what the guards spend"
    )
    options = parser.parse_args()
    if options.micro:
        micro(20_000, 25)
        return
    if options.suite is None:
        parser.error("give the suite's directory (or --micro)")
    suite, args = options.suite.resolve(), shlex.split(options.pytest_args)
    guard_args = [f"--memsafe-max-rss={options.max_rss}", f"--memsafe-max-mock-calls={options.max_mock_calls}"]
    print(f"suite: {suite}, pytest {' '.join(args)}; guard: {' '.join(guard_args)}")
    if options.count_mock_calls:
        print(f"unittest.mock calls in one run: {count_mock_calls(options.python, suite, args):,}")
    if options.attribute:
        attribute(options.python, suite, args, guard_args)
        if options.repeat == 0:
            return

    order = []
    for round_ in range(options.repeat):
        order += ["off", "guard", "guard", "off"] if round_ % 2 == 0 else ["guard", "off", "off", "guard"]
    runs = []
    for variant in order:
        cpu, wall, counts = run(options.python, suite, [*args, *(guard_args if variant == "guard" else [])])
        runs.append((variant, cpu, wall, counts))
        print(f"  {variant:<5} {cpu:7.2f} s CPU  {wall:7.2f} s wall  {counts}", file=sys.stderr)

    print("\n| run | variant | CPU s (user+sys) | ratio to the off runs next to it | wall s | pytest |")
    print("|---:|---|---:|---:|---:|---|")
    ratios = []
    for index, (variant, cpu, wall, counts) in enumerate(runs):
        ratio = ""
        if variant == "guard":
            near = [other[1] for other in runs[max(0, index - 2) : index + 3] if other[0] == "off"]
            ratios.append(cpu / statistics.mean(near))
            ratio = f"{ratios[-1]:.3f}"
        print(f"| {index + 1} | {variant} | {cpu:.2f} | {ratio} | {wall:.1f} | {counts} |")
    off = sum(cpu for variant, cpu, _, _ in runs if variant == "off")
    guard = sum(cpu for variant, cpu, _, _ in runs if variant == "guard")
    print(
        f"\nCPU guard/off: {guard / off:.3f} (sums over {len(runs) // 2} runs each), median per-run ratio "
        f"{statistics.median(ratios):.3f}"
    )
    if len({counts for _, _, _, counts in runs}) > 1:
        print("note: pytest's counts differ between runs (flaky tests?)")


if __name__ == "__main__":
    main()
