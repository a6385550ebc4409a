"""pytest plugin: measure a test run's memory per xdist worker, enforce a memory budget, and
apply the memory-safety pattern at run time without changing a file; keep ``xdist_group``
grouping where pytest 9.2 with pytest-xdist 3.8 loses it.

    pytest -n 2 --dist loadgroup --memsafe-report --memsafe-max-rss=1.5G --memsafe-gc

The distribution pytest-memsafe (a dependency of memsafe-fix, and needing nothing but pytest)
installs the plugin as the ``pytest11`` entry point ``memsafe``, and pytest loads it
automatically; ``-p memsafe`` loads it when plugin autoloading is off, and ``-p no:memsafe``
keeps it out. Its memory options do nothing until given, and importing it imports only pytest
and the standard library. Under pytest-xdist every worker measures itself and hands its numbers
to the controller when it finishes.

Grouping
--------
pytest-xdist's ``--dist loadgroup`` sends the tests of one ``xdist_group`` to one worker: each
worker appends ``@<group>`` to the node ids of grouped tests (by setting ``item._nodeid``), and
the controller schedules by that suffix. pytest 9.2 builds ``item.nodeid`` from the structured
``item.id`` and no longer reads ``_nodeid``, so with pytest-xdist 3.8 the suffix is lost and
the groups are spread over the workers (pytest-xdist issue #1386). In a worker under
``--dist loadgroup``, after pytest-xdist's own collection hook, the plugin looks for exactly
that: a test with an ``xdist_group`` mark whose ``_nodeid`` holds an id its ``nodeid`` does not
show. It gives such tests the id pytest-xdist wrote, as the structured id pytest's ``NodeId``
parses it from that string, and the groups hold again. Where pytest-xdist's ids arrive (pytest
before 9.2, or a pytest-xdist that sets the structured id), it changes nothing. The controller
prints one header line when the installed pair is pytest 9.2 or newer with pytest-xdist 3.8.0
or older.

With ``-n`` and no ``--dist`` (nor ``-d``), the plugin picks ``--dist loadgroup`` instead of
pytest-xdist's ``load``, which ignores ``xdist_group``, and says so in the header: ``addopts``
then needs no ``--dist``, which turns pytest-benchmark off in every run, even without ``-n``.
Give ``--dist load`` to opt out.

CPython 3.11.0 to 3.11.7: garbage collection inside ``ast.parse``
---------------------------------------------------------------
These releases keep the AST constructor's recursion-depth counter in global state
(python/cpython#106905, fixed in 3.11.8): when a garbage collection starts while ``ast.parse``
builds its tree and runs a finalizer that parses too, the outer ``ast.parse`` raises
``SystemError: AST constructor recursion depth mismatch``. In 3.11 every formatted traceback
parses its source lines (for the ``^^^`` markers), so asyncio logging a task's never-retrieved
exception from a finalizer is enough, and pytest parses a test's whole file to show its failure:
an ``xfail`` test's expected failure then ends the run with an ``INTERNALERROR`` from the xdist
worker that ran it. Which collection
lands inside which parse depends on every allocation before it, so any change (a test added,
tests moved between workers, a ``gc.collect(1)`` in teardowns) can make it appear or vanish. On
these releases the plugin replaces ``ast.parse`` for the session with a wrapper that pauses the
automatic collection (``gc.disable()``) while the parse runs and resumes it after (a collector
that was disabled stays disabled; collections that came due run at the next allocation), and
says so in one header line. The ini setting ``memsafe_ast_guard = false`` turns it off. Calls of
``compile(..., ast.PyCF_ONLY_AST)`` are not covered; pytest and the traceback module use
``ast.parse``.

Options
-------
``--memsafe-report``, ``--memsafe-report=term``
    At the end of the session, print a table with one row per process: each xdist worker
    (``gw0``, ``gw1``, ...) and the ``controller``, or ``main`` without xdist. A row has the
    process's peak RSS, the number of tests it ran, and its RSS growth (RSS at session end minus
    RSS when the plugin started). Then the 10 tests with the largest RSS growth: RSS after the
    test's teardown minus RSS before its setup, in the process that ran it. Write the value with
    ``=``: in ``--memsafe-report tests/`` the ``tests/`` is taken as the option's value, and
    rejected.

``--memsafe-report=json:PATH``
    Write the same data as JSON to PATH (relative to the directory pytest was started in)
    instead of printing the table; sizes in bytes::

        {
          "version": 1,
          "rss_source": "/proc/self/statm",  # or "psutil", or "getrusage ru_maxrss" (peak only)
          "processes": [                     # xdist workers in id order, then this process
            {"name": "gw0",                  # "gw0", "gw1", ..., "controller", or "main"
             "peak_rss": 212336640,          # the process's high-water mark
             "start_rss": 46710784, "end_rss": 201326592,
             "rss_growth": 154615808,        # end_rss - start_rss
             "tests": 300,                   # tests whose protocol ran in this process
             "over_budget": [                # tests that crossed --memsafe-max-rss here
               {"nodeid": "tests/test_a.py::test_paging", "rss": 1610612736,
                "when": "call"}              # "call": stopped by the watchdog; or "teardown"
             ],
             "error": null,                  # for a worker that went down without data: why,
                                             # with null numbers
             "died_running": null}           # for a worker that went down in a test: its id
          ],                                 # (from pytest-xdist's crash report)
          "top_tests": [                     # at most 10, largest rss_growth first
            {"nodeid": "tests/test_a.py::TestA::test_x", "process": "gw1", "rss_growth": 2097152}
          ]
        }

    A worker that goes down in a test (the OOM killer, a segfault, ``os._exit``) is listed with
    the test it was running, which pytest-xdist names in its crash report (the first test the
    controller sent it and got no result for): ``gw1 died while running test_x.py::test_y`` in
    the table, ``died_running`` in the JSON.

``--memsafe-explain``, ``--memsafe-chart=PATH``
    ``--memsafe-report`` (or the given ``=json:PATH``) plus, for each process, where its growth
    went and what would free it: RSS growth while collecting and in the tests that first imported
    modules (how many, from which packages); what the test-class instances still hold and what
    only they keep (what MSF006 and ``--memsafe-gc`` free), walked at the end; the module globals
    and class attributes that kept objects of sampled tests, and their size at the end; objects
    kept by pytest or elsewhere and garbage in reference cycles, per sampled test and estimated
    for all; the growth none of this explains; then what would free each part, or that nothing
    would. In the JSON, each process has an ``explain`` object with the same data and
    ``rss_series`` (RSS after each test, at most 2,000 points). With plotext installed
    (``pytest-memsafe[chart]``) the terminal report ends with a chart of RSS per test per process,
    and ``--memsafe-chart=PATH`` also saves it (``.html``: a web page); without plotext one line
    says so. The code is in ``pytest_memsafe_explain.py``, imported only with these options; its
    module docstring says how tests are sampled (at most 8% of the CPU time, plus 0.3 s) and
    what a sampled test sees (the heap frozen while it runs).

``--memsafe-max-rss=SIZE``
    Memory budget. SIZE is bytes or a number with ``K``, ``M``, ``G`` or ``T`` (binary units,
    ``M``, ``MB`` and ``MiB`` all mean 1024**2 bytes): ``500M``, ``1.5G``, ``800MiB``,
    ``1048576``. The first test after whose teardown the process's RSS exceeds SIZE fails: its
    teardown report becomes a failure naming the RSS and the limit, which pytest shows as
    ``ERROR at teardown of <test>`` and which makes pytest exit non-zero. Later tests in that
    process are not failed while RSS stays above the limit (they did not cross it); if RSS drops
    below the limit and a test crosses it again, that test fails too. The budget applies to each
    process on its own: every xdist worker, or the one pytest process without xdist. With
    ``--memsafe-gc`` the test's garbage is collected before RSS is compared. The ini setting
    ``memsafe_max_rss`` sets the same budget; the option wins over it.

    The budget also holds *while* a test runs. A watchdog thread in each process reads RSS every
    ``WATCHDOG_INTERVAL`` (20 ms) while a test's call phase runs, and when RSS crosses SIZE it
    sends ``SIGUSR1`` to the main thread (``signal.pthread_kill``); the plugin's handler for it
    raises ``MemoryBudgetExceeded`` there, so the test fails at once with a message naming the
    test, the RSS, the budget and the mocks with the most recorded calls (``len(mock_calls)`` of
    every ``unittest.mock`` mock ``gc.get_objects()`` finds at that moment). This is the
    incident the pattern comes from: a mocked paged search that returns the same page forever
    keeps a paging loop appending, and the mock recording, until the worker holds tens of GB.
    A signal handler runs between any two bytecodes of the main thread and interrupts a
    blocking sleep or ``select``, so it stops a pure-Python loop, a loop through mocks and an
    ``async`` test alike (a thread's async exception would wait out a blocking call).
    ``MemoryBudgetExceeded`` derives from ``BaseException``, so ``except Exception`` in the
    code under test does not swallow it (code that does, with ``except BaseException`` or in a
    ``__del__``, is signalled again every ``RESEND_INTERVAL``, 0.5 s, while RSS stays over the
    budget); a signal that lands in asyncio's own event-loop code is not raised there (the loop
    could log and drop it, or lose a task's next step and never finish) but sent again 20 ms
    later, when the test's code runs. The frames of the stopped test are cleared so what it
    built can be freed, and the process goes on with the next test. A test that starts while
    RSS is already over the budget is stopped only once it grows by another quarter of it. The live guard
    needs the current RSS and ``signal.pthread_kill``: on Linux (``/proc/self/statm``) and on
    other POSIX systems with ``psutil``; elsewhere only the teardown check runs. It replaces
    any other ``SIGUSR1`` handler for the session.

``--memsafe-max-mock-calls=N``
    Fail the test in which one ``unittest.mock`` mock records more than N calls in one phase
    (setup, call or teardown), at the call that crosses N: that call raises
    ``MockCallLimitExceeded`` in the code under test, naming the test, the phase, the mock and
    the limit. Calls are what a mock keeps (``mock_calls``, ``call_args_list``, and its parents'
    ``mock_calls``), and what grew the incident's worker: a loop over a mock that never ends
    stops here after N calls, before its memory shows. A mock counts its children's calls, as
    its ``mock_calls`` does. Counting per phase keeps a mock that lives across tests (module
    level, a session fixture) from failing a test for what earlier tests recorded, and keeps a
    teardown that uses the mock after a stopped call phase from failing again. Works for Mock,
    MagicMock, AsyncMock, ``patch`` and pytest-mock's ``mocker`` (not the standalone ``mock``
    package), sync and async. ``MockCallLimitExceeded`` derives from ``BaseException``, so
    ``except Exception`` does not swallow it; every further call of the mock in that phase
    raises again, and if the test passes anyway (it swallowed every stop, or called the mock in
    another thread, where the exception ends that thread) its report is turned into the failure.
    The ini setting ``memsafe_max_mock_calls`` sets the same limit; the option wins over it.

    How: every mock call goes through ``CallableMixin._increment_mock_call`` (Python 3.8+),
    which records it; the plugin wraps that method for the session, and after it compares the
    length of ``mock_calls`` of the mock and each parent with its length at the phase's first
    call (kept in the mock's ``__dict__`` under ``_memsafe_calls_at``, which ``dir()`` hides).
    That adds about 2 us to a 15-22 us ``MagicMock`` call two levels down, needs no thread nor a
    heap walk, and stops the runaway at the exact call in the thread that makes it. A watchdog
    thread would have to find the mocks (``gc.get_objects()``, milliseconds to tens of them on
    a real heap, holding the GIL) every sample, and could stop the test only a sample later.

``--memsafe-gc``
    After every test, once its teardown is done (its frame, fixtures and ``teardown_method``
    are finished, so plain test functions are covered too): release the state of the test's
    class instance (``instance.__dict__.clear()``), then collect the young generations
    (``gc.collect(1)``). That is the memory-safety pattern without touching a file, plus the
    part ``gc.collect()`` cannot do: pytest keeps every test-class instance alive until the
    session ends (pytest issue #11374), so mocks stored on ``self`` in ``setup_method`` survive
    any number of collections until the instance lets go of them. Each test gets its own
    instance (a class-scoped fixture written as a method runs on another one), so clearing it
    after the teardown breaks nothing. ``unittest.TestCase`` tests are not touched: pytest
    already drops their instance at teardown.

    Why not a full ``gc.collect()``: it walks every object the process holds, so on a real
    suite's heap it costs tens of milliseconds a test (3.5-23x the CPU time of whole suites,
    measured), while ``gc.collect(1)`` only walks what was allocated since the last young
    collection. Garbage that outlived one collection waits for Python's own full collections,
    which run when the old generation has grown by a quarter. Measured by
    ``benchmarks/teardown_gc.py`` (mocks on ``self`` on a 110 MB heap): the same peak RSS as a
    full collection after every test, at no measurable cost.

Measurement
-----------
RSS is read from ``/proc/self/statm`` on Linux (the peak from ``VmHWM`` in
``/proc/self/status``), else from ``psutil`` if it is importable, else from
``resource.getrusage().ru_maxrss``, which is a peak only (so growth is growth of the peak); on
none of these, ``--memsafe-report`` and ``--memsafe-max-rss`` are usage errors.
``ru_maxrss`` is not used on Linux because a child process inherits its parent's peak across
``fork``/``exec``, so an xdist worker would report at least the controller's peak. RSS counts
what the process holds, not what Python uses: freed memory often stays resident (pymalloc
arenas, the allocator's free lists), and the first tests of a process also pay for imports and
caches. Measuring reads ``/proc/self/statm`` two or three times per test (microseconds).
"""

from __future__ import annotations

import argparse
import ast
import functools
import gc
import heapq
import json
import os
import platform
import re
import signal
import sys
import threading
import time
import traceback
import types
from importlib import metadata
from typing import Any, Callable, NamedTuple

import pytest

TOP_TESTS = 10
REPORT_VERSION = 1

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)
_UNIT_BYTES = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_RSS_BEFORE = pytest.StashKey[int]()
# 20 ms: a runaway loop growing 1 GB/s overshoots the budget by ~20 MB; reading
# /proc/self/statm 50 times a second costs well under 0.1% of a core.
WATCHDOG_INTERVAL = 0.02
# A test still running this long after its stop signal swallowed the exception (a bare
# `except BaseException`, or the signal landed in a `__del__`, whose exceptions Python ignores):
# signal it again.
RESEND_INTERVAL = 0.5
TOP_MOCKS = 3


def parse_size(text: str) -> int:
    """Bytes in ``500M``, ``1.5G``, ``800MiB`` or ``1048576``; units are binary (``1K`` is 1024)."""
    match = _SIZE.fullmatch(text.strip())
    size = int(float(match[1]) * _UNIT_BYTES.get((match[2] or "").lower(), 1)) if match else 0
    if size <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive size: give bytes or a number with K, M, G or T "
            "(binary: 1M = 1 MiB), e.g. 500M, 1.5G, 800MiB"
        )
    return size


def parse_report_target(text: str) -> str:
    """``term`` or ``json:PATH``; kept as text so the option stays a plain value."""
    if text == "term" or (text.startswith("json:") and len(text) > len("json:")):
        return text
    raise argparse.ArgumentTypeError(
        f"expected no value, 'term' or 'json:PATH', got {text!r} "
        "(write --memsafe-report=VALUE when test paths follow it)"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memsafe", "memsafe-fix: memory report, memory budget, memory release")
    group.addoption(
        "--memsafe-report",
        nargs="?",
        const="term",
        default=None,
        type=parse_report_target,
        metavar="json:PATH",
        help="at the end, show peak RSS, tests run and RSS growth per xdist worker and the 10 tests "
        "whose RSS grew most; =json:PATH writes them as JSON to PATH instead.",
    )
    group.addoption(
        "--memsafe-max-rss",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="fail the test during or after which the process's RSS first exceeds SIZE (500M, 1.5G, "
        "800MiB, bytes): a watchdog stops a test while it runs, else it fails at its teardown. "
        "Default: the memsafe_max_rss ini setting.",
    )
    parser.addini("memsafe_max_rss", "the default of --memsafe-max-rss (500M, 1.5G, 800MiB, bytes)", default="")
    parser.addini(
        "memsafe_ast_guard",
        "on CPython 3.11.0-3.11.7, pause garbage collection inside ast.parse (CPython bug gh-106905); default true",
        type="bool",
        default=True,
    )
    group.addoption(
        "--memsafe-max-mock-calls",
        type=parse_count,
        default=None,
        metavar="N",
        help="fail the test in which one unittest.mock mock records more than N calls in one phase (setup, "
        "call or teardown), at the call that crosses N. Default: the memsafe_max_mock_calls ini setting.",
    )
    parser.addini("memsafe_max_mock_calls", "the default of --memsafe-max-mock-calls (a number of calls)", default="")
    group.addoption(
        "--memsafe-gc",
        action="store_true",
        help="after each test's teardown, clear its class instance's attributes and collect the young "
        "generations (gc.collect(1)), so memory kept on self is freed at almost no cost.",
    )
    add_explain_options(group)


def add_explain_options(group: Any) -> None:
    """--memsafe-explain (pytest_memsafe_explain.py, imported only when it is given)."""
    group.addoption(
        "--memsafe-explain",
        action="store_true",
        help="--memsafe-report, plus what each worker's growth is: imports, objects kept by tests (on self, "
        "in module state, by pytest) by type, garbage in cycles, and what would free it; with a chart of RSS "
        "per test if plotext is installed (pytest-memsafe[chart]).",
    )
    group.addoption(
        "--memsafe-chart",
        default=None,
        metavar="PATH",
        help="with --memsafe-explain: also save the chart of RSS per test to PATH (.html: a web page, else text).",
    )


class RssMeter(NamedTuple):
    source: str
    current: Callable[[], int]
    peak: Callable[[], int]


def _peak_from_getrusage() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def rss_meter() -> RssMeter | None:
    """The best way this platform offers to read this process's RSS, or None if there is none."""
    if os.path.exists("/proc/self/statm"):
        page_size = os.sysconf("SC_PAGE_SIZE")

        def resident() -> int:
            with open("/proc/self/statm", "rb") as statm:
                return int(statm.read().split()[1]) * page_size

        def high_water_mark() -> int:
            with open("/proc/self/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) * 1024  # reported in kB
            return resident()

        return RssMeter("/proc/self/statm", resident, high_water_mark)
    try:
        import psutil
    except ImportError:
        psutil = None
    has_getrusage = sys.platform != "win32"  # the `resource` module exists on every other platform
    if psutil is not None:
        process = psutil.Process()
        return RssMeter(
            "psutil",
            lambda: process.memory_info().rss,
            # Windows has no getrusage, but psutil reports its peak working set there.
            _peak_from_getrusage if has_getrusage else lambda: process.memory_info().peak_wset,
        )
    if has_getrusage:
        return RssMeter("getrusage ru_maxrss", _peak_from_getrusage, _peak_from_getrusage)
    return None


def release_instance_state(item: pytest.Item) -> None:
    """Drop what a finished test method stored on ``self``; pytest keeps the instance itself."""
    cls = getattr(item, "cls", None)
    unittest = sys.modules.get("unittest")
    if cls is None or (unittest is not None and issubclass(cls, unittest.TestCase)):
        # No class instance, or a TestCase, which pytest releases at teardown; asking such an
        # item for `.instance` now would even build a new TestCase.
        return
    state = getattr(item.instance, "__dict__", None)
    if state is not None:
        state.clear()


def option_or_ini(config: pytest.Config, name: str, parse: Callable[[str], int]) -> int | None:
    """The command-line option NAME, else the ini setting of the same name (parsed the same way)."""
    value = config.getoption(name)
    if value is None and config.getini(name):
        try:
            value = parse(config.getini(name))
        except argparse.ArgumentTypeError as error:
            raise pytest.UsageError(f"ini setting {name}: {error}") from None
    return value


def pytest_configure(config: pytest.Config) -> None:
    configure_mock_guard(config)
    install_ast_parse_guard(config)
    report_target = config.getoption("memsafe_report")
    max_rss = option_or_ini(config, "memsafe_max_rss", parse_size)
    collect_garbage = config.getoption("memsafe_gc")
    explain = config.getoption("memsafe_explain") or config.getoption("memsafe_chart") is not None
    if explain and report_target is None:
        report_target = "term"
    if report_target is None and max_rss is None and not collect_garbage:
        return
    meter = None
    if report_target is not None or max_rss is not None:
        meter = rss_meter()
        if meter is None:
            raise pytest.UsageError("--memsafe-report and --memsafe-max-rss cannot measure RSS here: install psutil")
    plugin = MemsafePlugin(config, meter, report_target, max_rss, collect_garbage)
    config.pluginmanager.register(plugin, "memsafe-session")
    if report_target is not None and not plugin.is_worker:
        config.pluginmanager.register(DeadWorkers(plugin), "memsafe-dead-workers")
    if explain:
        import pytest_memsafe_explain

        plugin.explain = pytest_memsafe_explain.Explainer(config, meter.current, _RSS_BEFORE, collect_garbage)
        config.pluginmanager.register(plugin.explain, "memsafe-explain")  # after: its wrappers run outside


class MemoryBudgetExceeded(BaseException):
    """Raised in the main thread when a running test crosses --memsafe-max-rss; a BaseException so
    that ``except Exception`` in the code under test lets it through."""


def top_mocks(limit: int = TOP_MOCKS) -> list[tuple[int, str]]:
    """(recorded calls, name) of the live ``unittest.mock`` mocks that recorded the most calls."""
    mock = sys.modules.get("unittest.mock")
    if mock is None:
        return []
    counts = []
    for obj in gc.get_objects():
        # type(), not isinstance(): a mock with a spec claims its spec's class.
        if issubclass(type(obj), mock.NonCallableMock) and obj.mock_calls:
            counts.append((len(obj.mock_calls), obj._extract_mock_name()))
    return heapq.nlargest(limit, counts)


class Watchdog:
    """A daemon thread that stops the running test once the process's RSS crosses the budget."""

    def __init__(self, meter: RssMeter, max_rss: int) -> None:
        self.meter = meter
        self.max_rss = max_rss
        self.limit = max_rss  # for the running test
        self.main_thread_id = threading.main_thread().ident
        self.running: pytest.Item | None = None  # the test whose call phase runs, if it may be stopped
        self.stopping: pytest.Item | None = None  # the test the signal was sent for
        self.signalled_at = 0.0
        self.reporting = False  # the handler is building its message (a second signal waits)
        self.stopped_rss = 0
        self.previous_handler = signal.signal(signal.SIGUSR1, self._interrupt)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="memsafe-watchdog", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(WATCHDOG_INTERVAL):
            running = self.running
            if running is None:
                continue
            if self.stopping is running and time.monotonic() - self.signalled_at < RESEND_INTERVAL:
                continue
            rss = self.meter.current()
            if rss > self.limit and self.running is running:
                if self.stopping is not running:
                    self.stopping, self.stopped_rss = running, rss
                self.signalled_at = time.monotonic()
                signal.pthread_kill(self.main_thread_id, signal.SIGUSR1)

    def _interrupt(self, signum: int, frame: types.FrameType | None) -> None:
        __tracebackhide__ = True
        item = self.running
        if item is None or item is not self.stopping:
            return  # the test ended before the signal arrived: its teardown check decides
        if self.reporting:
            return
        if _in_asyncio(frame):
            # Raised inside the event loop's own bookkeeping (a callback being run, a task's
            # step being scheduled), the exception can be logged and dropped by the loop, or
            # lose a task's next step so the test's loop never finishes: ask again shortly,
            # when the test's own code runs.
            self.signalled_at = 0.0
            return
        self.reporting = True
        try:
            # Walking a runaway heap can take longer than RESEND_INTERVAL.
            mocks = "".join(f"\n    {calls:>10,} calls  {name}" for calls, name in top_mocks())
        finally:
            self.reporting = False
            self.signalled_at = time.monotonic()
        raise MemoryBudgetExceeded(
            f"memsafe: stopped {item.nodeid} while it ran: RSS {_mib(self.stopped_rss)} is over the "
            f"--memsafe-max-rss limit of {_mib(self.max_rss)} (it was {_mib(item.stash[_RSS_BEFORE])} "
            "before the test's setup)." + (f"\n  mocks with the most recorded calls:{mocks}" if mocks else "")
        )

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        signal.signal(signal.SIGUSR1, self.previous_handler)


def _in_asyncio(frame: types.FrameType | None) -> bool:
    asyncio = sys.modules.get("asyncio")  # not imported here: most suites never load it
    if frame is None or asyncio is None or asyncio.__file__ is None:
        return False
    return frame.f_code.co_filename.startswith(os.path.dirname(asyncio.__file__) + os.sep)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _signed_mib(size: int) -> str:
    return ("+" if size >= 0 else "-") + _mib(abs(size))


class MemsafePlugin:
    """The active plugin: one per process (the pytest process, each xdist worker, the controller)."""

    def __init__(
        self,
        config: pytest.Config,
        meter: RssMeter | None,
        report_target: str | None,
        max_rss: int | None,
        collect_garbage: bool,
    ) -> None:
        self.config = config
        self.meter = meter
        self.report_target = report_target
        self.max_rss = max_rss
        self.collect_garbage = collect_garbage
        self.is_worker = hasattr(config, "workerinput")
        self.start_rss = meter.current() if meter else 0
        self.peak_seen = self.start_rss
        self.tests = 0
        self.top_tests: list[tuple[int, str]] = []  # a min-heap of (growth, nodeid), TOP_TESTS long
        self.worker_summaries: list[dict[str, Any]] = []
        self.over_budget = False
        self.over_budget_tests: list[dict[str, Any]] = []
        live = meter is not None and meter.source != "getrusage ru_maxrss" and hasattr(signal, "pthread_kill")
        self.watches = max_rss is not None and live
        # Started by the first test: an xdist controller, which runs none, never wakes a thread.
        self.watchdog: Watchdog | None = None
        self.report: dict[str, Any] | None = None
        self.explain: Any = None  # a pytest_memsafe_explain.Explainer with --memsafe-explain
        self.json_path = None
        if report_target is not None and report_target.startswith("json:"):
            self.json_path = config.invocation_params.dir / report_target[len("json:") :]

    def _measure(self) -> int:
        assert self.meter is not None
        rss = self.meter.current()
        self.peak_seen = max(self.peak_seen, rss)
        return rss

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        if self.meter is not None:
            item.stash[_RSS_BEFORE] = self._measure()
        result = yield
        if self.collect_garbage:
            # Only now has pytest dropped the test's fixture values (`item.funcargs`).
            gc.collect(1)
        if self.report_target is not None:
            self._record(item.nodeid, self._measure() - item.stash[_RSS_BEFORE])
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item):
        if not self.watches:
            return (yield)
        if self.watchdog is None:
            assert self.meter is not None and self.max_rss is not None
            self.watchdog = Watchdog(self.meter, self.max_rss)
        watchdog = self.watchdog
        # A test that starts over the budget (freed memory often stays resident) did not cross
        # it; it is stopped only if it grows by another quarter of the budget.
        watchdog.limit = max(self.max_rss, item.stash[_RSS_BEFORE] + self.max_rss // 4)
        watchdog.running = item
        try:
            return (yield)
        except MemoryBudgetExceeded as stopped:
            watchdog.running = None  # no second signal while the stopped test is cleaned up
            # The stopped frames hold what the runaway built (pytest keeps the traceback in
            # sys.last_traceback): clear their locals so the next test starts without it.
            traceback.clear_frames(stopped.__traceback__)
            gc.collect()  # mocks hold their children and their parents: cycles
            self.over_budget = True
            self.over_budget_tests.append({"nodeid": item.nodeid, "rss": watchdog.stopped_rss, "when": "call"})
            raise
        finally:
            watchdog.running = None

    def pytest_unconfigure(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item):
        try:
            return (yield)
        finally:
            if self.collect_garbage:
                release_instance_state(item)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report = yield
        # The teardown report is the last moment the test's outcome can still change.
        if call.when == "teardown" and self.max_rss is not None:
            self._enforce_budget(item, report)
        return report

    def _enforce_budget(self, item: pytest.Item, report: pytest.TestReport) -> None:
        assert self.max_rss is not None
        rss = self._measure()
        if rss > self.max_rss and self.collect_garbage:
            gc.collect()  # judge what the test kept, not the garbage it left for the collector
            rss = self._measure()
        if rss <= self.max_rss:
            self.over_budget = False
            return
        if self.over_budget:
            return  # an earlier test crossed the limit and failed for it; RSS has not come back
        self.over_budget = True
        self.over_budget_tests.append({"nodeid": item.nodeid, "rss": rss, "when": "teardown"})
        message = (
            f"memsafe: RSS after this test is {_mib(rss)}, over the --memsafe-max-rss limit of {_mib(self.max_rss)} "
            f"(it was {_mib(item.stash[_RSS_BEFORE])} before the test's setup). Later tests in "
            "this process fail only if RSS goes back under the limit and crosses it again."
        )
        if report.failed:
            report.sections.append(("memsafe", message))  # keep the teardown's own error first
        else:
            report.outcome = "failed"
            report.longrepr = message

    def _record(self, nodeid: str, growth: int) -> None:
        self.tests += 1
        if len(self.top_tests) < TOP_TESTS:
            heapq.heappush(self.top_tests, (growth, nodeid))
        else:
            heapq.heappushpop(self.top_tests, (growth, nodeid))

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: only called, and only known, with xdist
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        if self.report_target is None:
            return
        summary = getattr(node, "workeroutput", {}).get("memsafe")
        if summary is None:  # the worker crashed or was killed before it could send anything
            summary = {
                "name": node.workerinput["workerid"],
                **dict.fromkeys(("peak_rss", "start_rss", "end_rss", "rss_growth", "tests")),
                "over_budget": [],
                "error": str(error),
                "died_running": None,  # DeadWorkers fills it in from xdist's crash report
                "top_tests": [],
            }
        self.worker_summaries.append(summary)

    @pytest.hookimpl(trylast=True)  # after the session-scoped fixtures are torn down
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.report_target is None:
            return
        summary = self._summary()
        if self.is_worker:
            self.config.workeroutput["memsafe"] = summary  # xdist sends it to the controller
            return
        if self.worker_summaries:
            summary["name"] = "controller"
        self.report = _merge(self.meter.source, [*sorted(self.worker_summaries, key=_worker_order), summary])
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")

    def _summary(self) -> dict[str, Any]:
        """This process's row, plus its largest per-test growths; only JSON types, for xdist."""
        end_rss = self._measure()
        return {
            "name": self.config.workerinput["workerid"] if self.is_worker else "main",
            "peak_rss": max(self.meter.peak(), self.peak_seen),
            "start_rss": self.start_rss,
            "end_rss": end_rss,
            "rss_growth": end_rss - self.start_rss,
            "tests": self.tests,
            "over_budget": self.over_budget_tests,
            "error": None,
            "died_running": None,
            "top_tests": [{"nodeid": nodeid, "rss_growth": growth} for growth, nodeid in self.top_tests],
            **({"explain": self.explain.summary(self.start_rss, end_rss, self.tests)} if self.explain else {}),
        }

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None:
            return
        if self.json_path is not None:
            terminalreporter.write_line(f"memsafe: memory report written to {self.json_path}")
            if self.explain is not None:
                self.explain.write(terminalreporter, self.report, terse=True)
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "memsafe memory report")
        processes = self.report["processes"]
        width = max(len("process"), *(len(process["name"]) for process in processes))
        write(f"{'process':<{width}}  {'peak RSS':>12}  {'tests':>6}  {'RSS growth':>12}")
        for process in processes:
            if process["error"] is not None:
                write(f"{process['name']:<{width}}  no data: the worker went down ({process['error']})")
                continue
            write(
                f"{process['name']:<{width}}  {_mib(process['peak_rss']):>12}  {process['tests']:>6}  "
                f"{_signed_mib(process['rss_growth']):>12}"
            )
        for process in processes:
            if process["died_running"] is not None:
                write(f"{process['name']} died while running {process['died_running']}")
            for test in process["over_budget"]:
                write(f"{process['name']}: {test['nodeid']} crossed the budget at {_mib(test['rss'])} ({test['when']})")
        write("")
        write(f"largest RSS growth per test (after its teardown - before its setup), top {TOP_TESTS}:")
        width = max((len(test["process"]) for test in self.report["top_tests"]), default=0)
        for test in self.report["top_tests"]:
            write(f"{_signed_mib(test['rss_growth']):>12}  {test['process']:<{width}}  {test['nodeid']}")
        if self.explain is not None:
            self.explain.write(terminalreporter, self.report, terse=False)


def _worker_order(summary: dict[str, Any]) -> tuple[int, str]:
    return len(summary["name"]), summary["name"]  # gw2 before gw10


def _merge(source: str, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The report: one row per process, and the largest per-test growths over all of them."""
    top_tests = [
        {"nodeid": test["nodeid"], "process": summary["name"], "rss_growth": test["rss_growth"]}
        for summary in summaries
        for test in summary["top_tests"]
    ]
    return {
        "version": REPORT_VERSION,
        "rss_source": source,
        "processes": [{key: value for key, value in summary.items() if key != "top_tests"} for summary in summaries],
        "top_tests": heapq.nlargest(TOP_TESTS, top_tests, key=lambda test: test["rss_growth"]),
    }


# --- mock call guard ------------------------------------------------------------------------

# In a mock's __dict__ (underscored, so `dir(mock)` does not show it): (phase, the number of entries
# its mock_calls had before the phase's first call on it).
_MOCK_MARK = "_memsafe_calls_at"


def parse_count(text: str) -> int:
    """A positive whole number, for --memsafe-max-mock-calls."""
    try:
        count = int(text.strip().replace("_", ""))
    except ValueError:
        count = 0
    if count <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of calls, e.g. 100000")
    return count


def configure_mock_guard(config: pytest.Config) -> None:
    """Install the mock call guard when --memsafe-max-mock-calls (or its ini setting) is given."""
    max_calls = option_or_ini(config, "memsafe_max_mock_calls", parse_count)
    if max_calls is not None:
        config.pluginmanager.register(MockCallGuard(max_calls), "memsafe-mock-guard")


class MockCallLimitExceeded(BaseException):
    """Raised by the call that makes one ``unittest.mock`` mock record more than
    --memsafe-max-mock-calls calls in one phase of a test; a BaseException so that ``except
    Exception`` in the code under test lets it through."""


class MockCallGuard:
    """Fails a test at the call that makes one ``unittest.mock`` mock record more than ``max_calls``
    calls in one phase (setup, call or teardown) of it.

    Every call of a mock is recorded by ``CallableMixin._increment_mock_call`` (Python 3.8+, for
    Mock, MagicMock, AsyncMock, ``patch`` and pytest-mock's ``mocker`` alike), which appends it to
    the mock's ``mock_calls`` and ``call_args_list`` and to the ``mock_calls`` of every parent. The
    guard wraps that method: after it, it compares the length of ``mock_calls`` of the mock and of
    each parent with the length it had when the phase first called it (kept in the mock's
    ``__dict__``), and raises ``MockCallLimitExceeded`` from the call that crosses the limit, in the
    thread that made it, so the runaway stops at once and deterministically. Each call made after
    that in the same phase raises again (a retry loop that swallows the first stop is stopped again
    at its next call), and if the test still passes (it swallowed every stop, or the mock was called
    in another thread) its report is turned into a failure. Counting per phase keeps a mock that
    lives across tests (module level, a session fixture) from failing a test for calls that earlier
    tests recorded."""

    def __init__(self, max_calls: int) -> None:
        from unittest import mock  # only here: the plugin itself imports nothing but pytest

        self.max_calls = max_calls
        self.phase = 0  # the running phase's number; 0 between phases (no counting there)
        self.phases = 0
        self.item: pytest.Item | None = None
        self.when = ""
        self.where = ""
        # (item, when, message) of the first crossing in the last phase
        self.tripped: tuple[pytest.Item, str, str] | None = None
        self.mixin = mock.CallableMixin
        self.original = mock.CallableMixin._increment_mock_call
        self.wrapper = self._wrap(self.original)
        self.mixin._increment_mock_call = self.wrapper

    def _wrap(self, original: Callable[..., None]) -> Callable[..., None]:
        guard = self

        def _increment_mock_call(mock: Any, /, *args: Any, **kwargs: Any) -> None:
            __tracebackhide__ = True
            original(mock, *args, **kwargs)
            if guard.phase:
                guard.check(mock)

        return _increment_mock_call

    def check(self, mock: Any) -> None:
        """After ``mock`` recorded a call: fail if it, or a parent, has recorded too many in this phase."""
        __tracebackhide__ = True
        phase = self.phase
        node = mock
        while node is not None:
            state = node.__dict__
            calls = len(node.mock_calls)
            mark = state.get(_MOCK_MARK)
            if mark is None or mark[0] != phase or calls <= mark[1]:  # first call this phase, or reset
                state[_MOCK_MARK] = (phase, calls - 1)
            elif calls - mark[1] > self.max_calls:
                self._stop(node, calls - mark[1])
            node = state.get("_mock_new_parent")

    def _stop(self, mock: Any, recorded: int) -> None:
        __tracebackhide__ = True
        message = (
            f"memsafe: stopped the {self.where}: the mock {mock._extract_mock_name()!r} recorded {recorded:,} calls "
            f"in it, over the --memsafe-max-mock-calls limit of {self.max_calls:,} (a mock keeps every call: a loop "
            "over a mock that never ends, like paging through a search that returns the same page, grows "
            "until the process is killed)."
        )
        if self.tripped is None:
            assert self.item is not None
            self.tripped = (self.item, self.when, message)
        raise MockCallLimitExceeded(message)

    def _phase(self, item: pytest.Item, when: str):
        self.phases += 1
        self.phase, self.item, self.when, self.where, self.tripped = (
            self.phases,
            item,
            when,
            f"{when} of {item.nodeid}",
            None,
        )
        try:
            return (yield)
        finally:
            self.phase = 0

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        return (yield from self._phase(item, "setup"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item):
        return (yield from self._phase(item, "call"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None):
        return (yield from self._phase(item, "teardown"))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report = yield
        tripped = self.tripped
        if tripped is None or tripped[0] is not item or tripped[1] != call.when:
            return report
        if call.excinfo is not None and call.excinfo.errisinstance(MockCallLimitExceeded):
            # The failure says it. Now that it is written, drop what the runaway built: the
            # stopped frames' locals (pytest keeps the traceback in sys.last_traceback), then the
            # mocks, which are cycles with their children.
            traceback.clear_frames(call.excinfo.tb)
            gc.collect()
            return report
        if report.passed:  # every stop was swallowed, or the mock ran in another thread
            report.outcome = "failed"
            report.longrepr = tripped[2]
        elif report.failed:
            report.sections.append(("memsafe", tripped[2]))
        return report

    def pytest_unconfigure(self) -> None:
        if self.mixin._increment_mock_call is self.wrapper:  # unless someone wrapped it after us
            self.mixin._increment_mock_call = self.original


# --- workers that went down -----------------------------------------------------------------


class DeadWorkers:
    """In the xdist controller, with --memsafe-report: the test each worker that went down (killed by
    the OOM killer, ``os._exit``, a segfault) was running, from pytest-xdist's crash report, which
    names the first test the controller sent the worker and got no result for."""

    def __init__(self, plugin: MemsafePlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(optionalhook=True)  # an xdist hook; called right after pytest_testnodedown
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        node = getattr(report, "node", None)
        if node is None:
            return
        name = node.workerinput["workerid"]
        for summary in reversed(self.plugin.worker_summaries):
            if summary["name"] == name:
                summary["died_running"] = crashitem
                return


# --- xdist_group grouping -------------------------------------------------------------------

# The last pytest-xdist that tags grouped tests only through ``item._nodeid`` (issue #1386).
LAST_XDIST_WITHOUT_STRUCTURED_IDS = (3, 8, 0)
_PICKED_LOADGROUP = pytest.StashKey[bool]()


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


@pytest.hookimpl(wrapper=True)  # before pytest-xdist's own (tryfirst) hook turns -n into --dist load
def pytest_cmdline_main(config: pytest.Config):
    option = config.option
    if hasattr(config, "workerinput"):
        # Workers parse the command line again, without the controller's choice: pass it on.
        if config.workerinput.get("memsafe_loadgroup"):
            option.loadgroup = True
    elif getattr(option, "numprocesses", None) and getattr(option, "dist", None) == "no" and not option.distload:
        option.dist = "loadgroup"
        config.stash[_PICKED_LOADGROUP] = True
    return (yield)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook, in the controller
def pytest_configure_node(node: Any) -> None:
    if node.config.stash.get(_PICKED_LOADGROUP, False):
        node.workerinput["memsafe_loadgroup"] = True


@pytest.hookimpl(wrapper=True)  # after every implementation, pytest-xdist's included
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    result = yield
    if hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False):
        restore_group_ids(items)
    return result


def restore_group_ids(items: list[pytest.Item]) -> None:
    """Give each grouped test the id pytest-xdist wrote for it (``<nodeid>@<group>``) where
    ``item.nodeid`` does not show it, as a structured id parsed by pytest's ``NodeId``."""
    for item in items:
        written = getattr(item, "_nodeid", None)
        if not isinstance(written, str) or not written.startswith(f"{item.nodeid}@"):
            continue  # pytest-xdist's id arrived (or it wrote none)
        structured = getattr(item, "id", None)
        if item.get_closest_marker("xdist_group") is not None and hasattr(structured, "parse"):
            item._id = type(structured).parse(written)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    if _AST_PARSE in config.stash:
        lines.append(
            f"memsafe: Python {platform.python_version()}: garbage collection paused inside ast.parse "
            "(CPython bug gh-106905, fixed in 3.11.8; -o memsafe_ast_guard=false turns this off)"
        )
    if config.stash.get(_PICKED_LOADGROUP, False):
        lines.append("memsafe: -n without --dist: using --dist loadgroup, so xdist_group holds (--dist load opts out)")
    distributing = config.getoption("dist", "no") == "loadgroup" and config.getoption("tx", None)
    if distributing and not hasattr(config, "workerinput"):
        try:
            xdist = metadata.version("pytest-xdist")
        except metadata.PackageNotFoundError:
            return lines
        if _release(pytest.__version__)[:2] >= (9, 2) and _release(xdist) <= LAST_XDIST_WITHOUT_STRUCTURED_IDS:
            lines.append(
                f"memsafe: pytest {pytest.__version__} drops the xdist_group ids pytest-xdist {xdist} sets; "
                "the workers restore them (-p no:memsafe turns this off)"
            )
    return lines


# --- CPython 3.11.0-3.11.7: a garbage collection inside ast.parse (python/cpython#106905) -------

_AST_PARSE = pytest.StashKey[Callable[..., Any]]()
FIXED_IN = (3, 11, 8)


def ast_parse_is_unsafe(version: tuple[int, ...] = tuple(sys.version_info[:3]), implementation: str = "") -> bool:
    """Whether this interpreter has python/cpython#106905: CPython 3.11.0 to 3.11.7 keep the
    depth counter of the AST constructor in global state, so a garbage collection that starts
    while ``ast.parse`` builds its tree and runs a finalizer that parses too (in 3.11 every
    formatted traceback does, for its ``^^^`` markers: asyncio logging a task's never-retrieved
    exception, for one) makes the outer ``ast.parse`` raise ``SystemError: AST constructor
    recursion depth mismatch``. Fixed in 3.11.8 and 3.12.2 (3.12 collects only between
    bytecodes, so 3.12.0 and 3.12.1 do not show it either)."""
    implementation = implementation or sys.implementation.name
    return implementation == "cpython" and (3, 11) <= tuple(version[:2]) and tuple(version[:3]) < FIXED_IN


def guard_ast_parse(parse: Callable[..., Any]) -> Callable[..., Any]:
    """``parse`` with Python's automatic garbage collection paused while it runs: no collection,
    hence no finalizer, can start inside it. Collections that come due meanwhile run at the next
    allocation after it returns. Nested and concurrent calls share one pause; a collector that was
    already disabled stays disabled."""
    lock = threading.Lock()
    state = {"active": 0, "reenable": False}

    @functools.wraps(parse)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        with lock:
            if state["active"] == 0:
                state["reenable"] = gc.isenabled()
                gc.disable()
            state["active"] += 1
        try:
            return parse(*args, **kwargs)
        finally:
            with lock:
                state["active"] -= 1
                if state["active"] == 0 and state["reenable"]:
                    gc.enable()

    guarded._memsafe_guard = True  # type: ignore[attr-defined]
    return guarded


def install_ast_parse_guard(config: pytest.Config) -> None:
    """On an interpreter with python/cpython#106905, replace ``ast.parse`` for the session (pytest
    parses test files to show failures and to rewrite assertions, the traceback module parses
    source lines) with ``guard_ast_parse(ast.parse)``; ``pytest_unconfigure`` puts it back."""
    if not ast_parse_is_unsafe() or getattr(ast.parse, "_memsafe_guard", False):
        return
    if not config.getini("memsafe_ast_guard"):
        return
    config.stash[_AST_PARSE] = ast.parse
    ast.parse = guard_ast_parse(ast.parse)


def pytest_unconfigure(config: pytest.Config) -> None:
    original = config.stash.get(_AST_PARSE, None)
    if original is not None:
        ast.parse = original
        del config.stash[_AST_PARSE]
