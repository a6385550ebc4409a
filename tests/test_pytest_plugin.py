"""The pytest plugin (``pytest-memsafe/pytest_memsafe.py``), run by real pytest on small suites, with
and without pytest-xdist. Sizes are checked against what the suites allocate, never timed."""

from __future__ import annotations

import argparse
import ast
import gc
import json
import platform
import re
import resource
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from pytest_memsafe import ast_parse_is_unsafe, guard_ast_parse, parse_report_target, parse_size

MiB = 1024**2
XDIST = ("-n", "2", "--dist", "loadfile")  # loadfile: a file's tests run on one worker, in order

# Mocks on `self`, as in the suites the pattern is for. TestKeep::test_b fails unless something
# releases test_a's instance state: pytest keeps every test-class instance until the end.
KEEP_SUITE = {
    "test_keep.py": """\
        import gc
        import weakref
        from unittest.mock import MagicMock

        import pytest

        REFS = []


        class TestKeep:
            def setup_method(self):
                self.client = MagicMock()
                REFS.append(weakref.ref(self.client))

            def test_a(self):
                self.client.get("x")

            def test_b(self):
                gc.collect()
                assert REFS[0]() is None, "test_a's mock is still alive"


        def test_nothing_is_frozen():
            # Frozen objects are never collected: the plugin must not freeze garbage for good.
            assert gc.get_freeze_count() == 0
        """,
}

# Shapes --memsafe-gc must not break: unittest, class-scoped fixtures written as methods,
# function fixtures and teardown_method that use `self`, async tests.
SHAPES_SUITE = {
    "test_shapes.py": """\
        import gc
        import unittest
        import weakref
        from unittest.mock import MagicMock

        import pytest

        TESTCASES_CREATED = []  # class names only: holding the instances would keep them alive
        TESTCASE_STATE = []


        class TestLegacy(unittest.TestCase):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                TESTCASES_CREATED.append(type(self).__name__)

            @classmethod
            def setUpClass(cls):
                cls.shared = MagicMock()

            def setUp(self):
                self.client = MagicMock()
                TESTCASE_STATE.append(weakref.ref(self.client))

            def tearDown(self):
                self.client.close()

            def test_1(self):
                self.shared()

            def test_2(self):
                self.assertEqual(self.shared.call_count, 1)


        class TestFixtures:
            @pytest.fixture(scope="class")
            def resource(self):
                self.resource = MagicMock()  # on another instance than any test's
                yield self.resource
                self.resource.close()

            @pytest.fixture
            def value(self):
                self.from_fixture = 1
                yield 2
                assert self.from_fixture == 1

            def setup_method(self):
                self.client = MagicMock()

            def teardown_method(self):
                self.client.close()

            def test_a(self, resource, value):
                resource.a()

            def test_b(self, resource, value):
                assert resource.a.called


        class TestAsync:
            def setup_method(self):
                self.client = MagicMock()

            @pytest.mark.asyncio
            async def test_async(self):
                self.client()
        """,
    # In another file: pytest 8.0's setUpClass fixture holds the first TestCase until the class ends.
    "test_zz_check.py": """\
        import gc

        from test_shapes import TESTCASE_STATE, TESTCASES_CREATED


        def test_testcases():
            # Asking a finished unittest item for `.instance` would build a new TestCase.
            gc.collect()
            alive = sum(ref() is not None for ref in TESTCASE_STATE)
            print(f"TESTCASES_CREATED={len(TESTCASES_CREATED)} TESTCASE_STATE_ALIVE={alive}")
        """,
}

# test_big keeps 50 MiB on a module global, so its process grows by that much and it tops the list.
REPORT_SUITE = {
    "test_big.py": """\
        KEPT = []


        def test_small():
            pass


        def test_big():
            KEPT.append(b"x" * (50 * 1024 * 1024))
        """,
    "test_many.py": """\
        import pytest


        @pytest.mark.parametrize("i", range(12))
        def test_many(i):
            pass
        """,
}
REPORT_TESTS = 14

# test_big_1 crosses the budget; test_after_big stays above it and is not blamed; test_release
# brings RSS back under it, and test_big_2 crosses it again.
BUDGET_SUITE = {
    "test_budget.py": """\
        KEPT = []


        def test_before():
            pass


        def test_big_1():
            KEPT.append(b"x" * (200 * 1024 * 1024))


        def test_after_big():
            pass


        def test_release():
            KEPT.clear()


        def test_big_2():
            KEPT.append(b"x" * (200 * 1024 * 1024))
        """,
    "test_other.py": """\
        import pytest


        @pytest.mark.parametrize("i", range(4))
        def test_other(i):
            pass
        """,
}
BUDGET = "150M"  # well above a fresh pytest process, well below one holding 200 MiB more


def run_pytest(tmp_path: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    # faulthandler_timeout: a test of the suite that hangs prints every thread's stack.
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfE", "-o", "faulthandler_timeout=60", *args]
    try:
        return subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=cap_address_space
        )
    except subprocess.TimeoutExpired as hung:
        output = [
            stream.decode(errors="replace") if isinstance(stream, bytes) else stream or ""
            for stream in (hung.stdout, hung.stderr)
        ]
        pytest.fail(f"pytest hung for {hung.timeout} s\n--- stdout\n{output[0]}\n--- stderr\n{output[1]}")


def cap_address_space() -> None:
    """A runaway test suite that the guard fails to stop ends in MemoryError, not in a machine
    paging for an hour."""
    resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, 4 * 1024**3))


def summary_lines(completed: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(FAILED|ERROR, nodeid) from pytest's short test summary."""
    return re.findall(r"^(FAILED|ERROR) (\S+)", completed.stdout, re.MULTILINE)


def table_rows(stdout: str) -> dict[str, tuple[float, int, float]]:
    """process -> (peak MiB, tests, growth MiB) from the terminal report."""
    rows = re.findall(r"^(\w+)\s+([\d.]+) MiB\s+(\d+)\s+([+-][\d.]+) MiB$", stdout, re.MULTILINE)
    return {name: (float(peak), int(tests), float(growth)) for name, peak, tests, growth in rows}


def top_tests(stdout: str) -> list[tuple[float, str, str]]:
    """(growth MiB, process, nodeid) from the terminal report's top list."""
    section = stdout.split("largest RSS growth per test", 1)[1]
    return [(float(g), p, n) for g, p, n in re.findall(r"^\s+([+-][\d.]+) MiB\s+(\w+)\s+(\S+)$", section, re.M)]


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    heavy = ("libcst", "typer", "rich", "pathspec", "psutil", "memsafe_fix")
    code = f"import sys, pytest_memsafe; print([m for m in {heavy!r} if m in sys.modules])"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.stdout.strip() == "[]", completed.stderr


def test_the_plugin_distribution_needs_only_pytest() -> None:
    requires = metadata.requires("pytest-memsafe")
    assert [r for r in requires if "extra ==" not in r] == ["pytest>=8"]  # the chart extra is optional


def test_autoloaded_and_inactive_without_its_options(tmp_path: Path) -> None:
    help_text = run_pytest(tmp_path, {}, "--help").stdout
    assert "--memsafe-report" in help_text and "--memsafe-gc" in help_text

    completed = run_pytest(tmp_path, KEEP_SUITE)
    header = [line for line in completed.stdout.splitlines() if line.startswith("memsafe:")]
    assert "memsafe memory report" not in completed.stdout and header == ast_guard_header()
    assert summary_lines(completed) == [("FAILED", "test_keep.py::TestKeep::test_b")]


@pytest.mark.parametrize("xdist", [(), XDIST], ids=["serial", "xdist"])
def test_gc_frees_state_kept_on_self_and_freezes_nothing(tmp_path: Path, xdist: tuple[str, ...]) -> None:
    completed = run_pytest(tmp_path, KEEP_SUITE, "--memsafe-gc", *xdist)
    assert completed.returncode == 0, completed.stdout
    assert "3 passed" in completed.stdout


def test_gc_keeps_other_shapes_working_and_leaves_testcases_alone(tmp_path: Path) -> None:
    without = run_pytest(tmp_path, SHAPES_SUITE, "-s")
    with_gc = run_pytest(tmp_path, SHAPES_SUITE, "-s", "--memsafe-gc")
    for completed in (without, with_gc):
        assert completed.returncode == 0, completed.stdout
        assert "6 passed" in completed.stdout
    # pytest itself drops each TestCase at teardown, so there is nothing left to release, and
    # the plugin builds no extra TestCase instances.
    counts = re.compile(r"TESTCASES_CREATED=\d+ TESTCASE_STATE_ALIVE=0")
    assert counts.search(without.stdout)
    assert counts.search(without.stdout)[0] == counts.search(with_gc.stdout)[0]


def test_report_table_lists_workers_controller_and_top_tests(tmp_path: Path) -> None:
    completed = run_pytest(tmp_path, REPORT_SUITE, "--memsafe-report", *XDIST)
    assert completed.returncode == 0, completed.stdout
    assert "memsafe memory report" in completed.stdout

    rows = table_rows(completed.stdout)
    assert list(rows) == ["gw0", "gw1", "controller"]
    assert sum(tests for _, tests, _ in rows.values()) == REPORT_TESTS
    assert rows["controller"][1] == 0
    assert all(10 < peak < 1024 for peak, _, _ in rows.values())

    top = top_tests(completed.stdout)
    assert len(top) == 10
    assert [growth for growth, _, _ in top] == sorted((growth for growth, _, _ in top), reverse=True)
    growth, worker, nodeid = top[0]
    assert nodeid == "test_big.py::test_big" and growth >= 49
    peak, _, worker_growth = rows[worker]
    assert peak >= 50 and worker_growth >= 49
    other = "gw1" if worker == "gw0" else "gw0"
    assert rows[other][2] < 20


def test_report_without_xdist_has_one_row(tmp_path: Path) -> None:
    completed = run_pytest(tmp_path, REPORT_SUITE, "--memsafe-report=term")
    rows = table_rows(completed.stdout)
    assert list(rows) == ["main"]
    assert rows["main"][1] == REPORT_TESTS and rows["main"][2] >= 49
    assert top_tests(completed.stdout)[0][1:] == ("main", "test_big.py::test_big")


def test_json_report_schema(tmp_path: Path) -> None:
    completed = run_pytest(tmp_path, REPORT_SUITE, "--memsafe-report=json:out/memory.json", *XDIST)
    assert completed.returncode == 0, completed.stdout
    assert "memory report written to" in completed.stdout
    assert "largest RSS growth" not in completed.stdout

    report = json.loads((tmp_path / "out" / "memory.json").read_text())
    assert set(report) == {"version", "rss_source", "processes", "top_tests"}
    assert report["version"] == 1 and report["rss_source"] in ("/proc/self/statm", "psutil", "getrusage ru_maxrss")
    assert [process["name"] for process in report["processes"]] == ["gw0", "gw1", "controller"]
    for process in report["processes"]:
        assert set(process) == {
            "name",
            "peak_rss",
            "start_rss",
            "end_rss",
            "rss_growth",
            "tests",
            "over_budget",
            "error",
            "died_running",
        }
        assert process["error"] is None and process["over_budget"] == [] and process["died_running"] is None
        assert process["rss_growth"] == process["end_rss"] - process["start_rss"]
        assert process["peak_rss"] >= max(process["start_rss"], process["end_rss"]) > 10 * MiB
    assert sum(process["tests"] for process in report["processes"]) == REPORT_TESTS

    top = report["top_tests"]
    assert len(top) == 10 and all(set(test) == {"nodeid", "process", "rss_growth"} for test in top)
    assert [test["rss_growth"] for test in top] == sorted((test["rss_growth"] for test in top), reverse=True)
    assert top[0]["nodeid"] == "test_big.py::test_big" and top[0]["rss_growth"] >= 49 * MiB
    assert top[0]["process"] in ("gw0", "gw1")


def test_json_report_lists_a_crashed_worker(tmp_path: Path) -> None:
    suite = {
        "test_crash.py": """\
            import os


            def test_crash():
                os._exit(3)
            """,
        "test_fine.py": """\
            def test_fine():
                pass
            """,
    }
    # --dist load: under loadfile or loadgroup (which the plugin picks for a plain -n 2) xdist
    # re-sends the crashing test to every new worker.
    completed = run_pytest(tmp_path, suite, "--memsafe-report=json:memory.json", "-n", "2", "--dist", "load")
    assert "worker 'gw" in completed.stdout and "crashed" in completed.stdout
    processes = json.loads((tmp_path / "memory.json").read_text())["processes"]
    crashed = [process for process in processes if process["error"] is not None]
    assert len(crashed) == 1 and crashed[0]["name"].startswith("gw")
    assert crashed[0]["peak_rss"] is None and crashed[0]["tests"] is None
    assert crashed[0]["died_running"] == "test_crash.py::test_crash"
    assert processes[-1]["name"] == "controller"


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs current RSS, not the peak")
@pytest.mark.parametrize("xdist", [(), XDIST], ids=["serial", "xdist"])
def test_max_rss_fails_the_tests_that_cross_it(tmp_path: Path, xdist: tuple[str, ...]) -> None:
    completed = run_pytest(tmp_path, BUDGET_SUITE, f"--memsafe-max-rss={BUDGET}", *xdist)
    assert completed.returncode == 1
    # The watchdog may stop a big test while it allocates (FAILED), else its teardown fails (ERROR).
    # -rfE lists FAILED before ERROR lines: a stopped test_big_2 comes before test_big_1's ERROR.
    failures = summary_lines(completed)
    assert sorted(nodeid for _, nodeid in failures) == ["test_budget.py::test_big_1", "test_budget.py::test_big_2"]
    for outcome, nodeid in failures:
        name = nodeid.split("::")[1]
        if outcome == "ERROR":
            assert f"ERROR at teardown of {name}" in completed.stdout
    assert re.search(
        r"memsafe: (RSS after this test is|stopped .* while it ran: RSS) \d+\.\d MiB,? (is )?over the "
        r"--memsafe-max-rss limit of 150\.0 MiB",
        completed.stdout,
    )
    stopped = sum(outcome == "FAILED" for outcome, _ in failures)
    assert f"{9 - stopped} passed" in completed.stdout


def test_max_rss_keeps_a_failing_teardowns_own_error(tmp_path: Path) -> None:
    suite = {
        "test_teardown.py": """\
            import pytest

            KEPT = []


            @pytest.fixture
            def broken():
                yield
                KEPT.append(b"x" * (200 * 1024 * 1024))
                raise RuntimeError("teardown broke")


            def test_big(broken):
                pass
            """
    }
    completed = run_pytest(tmp_path, suite, f"--memsafe-max-rss={BUDGET}")
    assert summary_lines(completed) == [("ERROR", "test_teardown.py::test_big")]
    assert "RuntimeError: teardown broke" in completed.stdout
    assert "over the --memsafe-max-rss limit" in completed.stdout


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--memsafe-max-rss=lots", "argument --memsafe-max-rss: 'lots' is not a positive size"),
        ("--memsafe-max-rss=0", "argument --memsafe-max-rss: '0' is not a positive size"),
        ("--memsafe-report=html", "argument --memsafe-report: expected no value, 'term' or 'json:PATH'"),
    ],
)
def test_bad_values_are_usage_errors(tmp_path: Path, option: str, message: str) -> None:
    completed = run_pytest(tmp_path, {}, option)
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in completed.stderr


def test_explicit_p_option_works_alongside_the_entry_point(tmp_path: Path) -> None:
    completed = run_pytest(tmp_path, REPORT_SUITE, "-p", "memsafe", "--memsafe-report")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert list(table_rows(completed.stdout)) == ["main"]


def test_the_name_in_the_header_turns_it_off_and_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = run_pytest(tmp_path, REPORT_SUITE).stdout
    assert re.search(r"^plugins: .*\bmemsafe-[\d.]+", header, re.MULTILINE), header

    disabled = run_pytest(tmp_path, REPORT_SUITE, "-p", "no:memsafe", "--memsafe-report")
    assert disabled.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --memsafe-report" in disabled.stderr

    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert run_pytest(tmp_path, REPORT_SUITE, "--memsafe-report").returncode == pytest.ExitCode.USAGE_ERROR
    loaded = run_pytest(tmp_path, REPORT_SUITE, "-p", "memsafe", "--memsafe-report")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert list(table_rows(loaded.stdout)) == ["main"]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", MiB),
        ("500M", 500 * MiB),
        ("1.5G", 1536 * MiB),
        ("800MiB", 800 * MiB),
        ("64kb", 64 * 1024),
        ("2 g", 2048 * MiB),
        ("1T", 1024**4),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-5M", "5X", "1.5.2G", "5 MiBs", "5iB", "0.0001K"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a positive size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["tests", "json:", "json", "term:x"])
def test_parse_report_target_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected no value"):
        parse_report_target(text)


# The incident: a mocked paged search returns the same page forever, and the paging loop (and the
# mock's recorded calls) grow until the worker is killed. `except Exception` must not stop the guard.
RUNAWAY_SUITE = {
    "test_paging.py": """\
        import asyncio
        from unittest.mock import AsyncMock, MagicMock


        def search_all(client):
            pages, token = [], None
            while True:
                page = client.search(query="q", token=token)
                pages.append(page["items"])
                token = page["next"]
                if token is None:
                    return pages


        def test_paging_forever():
            client = MagicMock(name="client")
            client.search.return_value = {"items": list(range(50)), "next": "same"}
            try:
                search_all(client)
            except Exception:
                pass


        def test_pure_python_loop():
            kept = []
            while True:
                kept.append([0] * 100)


        async def test_async_paging_forever():
            client = MagicMock(name="aclient")
            client.search = AsyncMock(return_value={"items": list(range(50)), "next": "same"})
            pages = []
            while True:
                pages.append(await client.search(token="same"))
                await asyncio.sleep(0)


        def test_swallows_the_first_stop():
            kept, stops = [], 0
            while True:
                try:
                    while True:
                        kept.append([0] * 100)
                except BaseException:  # a retry loop that outlasts the first stop signal
                    stops += 1
                    if stops == 2:
                        raise
        """,
    "test_fine.py": """\
        import pytest


        @pytest.mark.parametrize("i", range(4))
        def test_fine(i):
            pass
        """,
}
RUNAWAY_TESTS = [
    "test_paging_forever",
    "test_pure_python_loop",
    "test_async_paging_forever",
    "test_swallows_the_first_stop",
]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs current RSS")
@pytest.mark.parametrize("xdist", [(), XDIST], ids=["serial", "xdist"])
def test_max_rss_stops_runaway_tests_while_they_run(tmp_path: Path, xdist: tuple[str, ...]) -> None:
    completed = run_pytest(
        tmp_path,
        RUNAWAY_SUITE,
        f"--memsafe-max-rss={BUDGET}",
        "--memsafe-report=json:memory.json",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *xdist,
    )
    assert completed.returncode == 1, completed.stdout
    assert summary_lines(completed) == [("FAILED", f"test_paging.py::{name}") for name in RUNAWAY_TESTS]
    assert "4 passed" in completed.stdout
    for name in RUNAWAY_TESTS:
        assert re.search(
            rf"MemoryBudgetExceeded: memsafe: stopped test_paging.py::{name} while it ran: "
            r"RSS \d+\.\d MiB is over the --memsafe-max-rss limit of 150\.0 MiB",
            completed.stdout,
        )
    assert re.search(r"[\d,]+ calls  client\.search", completed.stdout)
    assert re.search(r"[\d,]+ calls  aclient\.search", completed.stdout)
    processes = json.loads((tmp_path / "memory.json").read_text())["processes"]
    stopped = [test for process in processes for test in process["over_budget"]]
    assert sorted(test["nodeid"] for test in stopped) == sorted(f"test_paging.py::{name}" for name in RUNAWAY_TESTS)
    assert {test["when"] for test in stopped} == {"call"}
    # Stopped near the budget: a runaway is caught within a few samples, not gigabytes later.
    assert max(process["peak_rss"] for process in processes) < 1024 * MiB


def test_max_rss_ini_setting(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmemsafe_max_rss = 150M\n")
    completed = run_pytest(tmp_path, BUDGET_SUITE)
    assert sorted(nodeid for _, nodeid in summary_lines(completed)) == [
        "test_budget.py::test_big_1",
        "test_budget.py::test_big_2",
    ]
    (tmp_path / "pytest.ini").write_text("[pytest]\nmemsafe_max_rss = lots\n")
    completed = run_pytest(tmp_path, BUDGET_SUITE)
    assert completed.returncode == 4
    assert "ini setting memsafe_max_rss: 'lots' is not a positive size" in completed.stderr


def test_the_stop_signal_is_not_raised_inside_the_event_loop() -> None:
    import asyncio

    from pytest_memsafe import _in_asyncio

    frames = {}

    def callback() -> None:
        frames["loop"] = sys._getframe(1)  # asyncio's Handle._run, which runs the callback

    async def main() -> None:
        frames["test"] = sys._getframe()
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert _in_asyncio(frames["loop"])
    assert not _in_asyncio(frames["test"])
    assert not _in_asyncio(None)


# --memsafe-max-mock-calls: the incident's paging loop through every kind of mock, sync and async.
# Every runaway test also swallows `Exception`, as retrying paging code does; test_shared_* call
# one module-level mock 600 times each, 1,200 in all: counted per test, neither crosses the limit.
MOCK_LIMIT = 1000
MOCK_SUITE = {
    "test_mocks.py": """\
        from unittest.mock import AsyncMock, MagicMock, patch

        import pytest

        SHARED = MagicMock(name="shared")


        def remote_search(query, token):
            raise ConnectionError("the real search is not reachable from tests")


        def search_all(search):
            pages, token = [], None
            while True:
                try:
                    page = search(query="q", token=token)
                except Exception:
                    continue
                pages.append(page["items"])
                token = page["next"]
                if token is None:
                    return pages


        def test_magicmock_paging():
            client = MagicMock(name="client")
            client.search.return_value = {"items": list(range(50)), "next": "same"}
            search_all(client.search)


        def test_patch_paging():
            with patch("test_mocks.remote_search", return_value={"items": [], "next": "same"}):
                search_all(remote_search)


        def test_mocker_paging(mocker):
            mocker.patch("test_mocks.remote_search", return_value={"items": [], "next": "same"})
            search_all(remote_search)


        async def test_async_paging():
            client = MagicMock(name="aclient")
            client.search = AsyncMock(return_value={"items": list(range(50)), "next": "same"})
            pages = []
            while True:
                try:
                    pages.append(await client.search(token="same"))
                except Exception:
                    pass


        def test_swallows_every_stop():
            client = MagicMock(name="stubborn")
            for _ in range(3000):
                try:
                    client.ping()
                except BaseException:
                    pass


        @pytest.fixture
        def warmed_up():
            client = MagicMock(name="fixture_client")
            while True:
                client.warm()


        def test_runaway_fixture(warmed_up):
            pass


        def test_shared_1():
            for _ in range(600):
                SHARED.get()


        def test_shared_2():
            for _ in range(600):
                SHARED.get()
            assert len(SHARED.mock_calls) == 1200


        def test_under_the_limit():
            client = MagicMock()
            for _ in range(900):
                client.get()
            client.get.assert_called_with()
        """,
}
MOCK_RUNAWAYS = {
    "test_magicmock_paging": "client.search",
    "test_patch_paging": "remote_search",
    "test_mocker_paging": "remote_search",
    "test_async_paging": "aclient.search",
    "test_swallows_every_stop": "stubborn.ping",
}


@pytest.mark.parametrize("xdist", [(), XDIST], ids=["serial", "xdist"])
def test_max_mock_calls_stops_runaway_mocks(tmp_path: Path, xdist: tuple[str, ...]) -> None:
    completed = run_pytest(
        tmp_path,
        MOCK_SUITE,
        f"--memsafe-max-mock-calls={MOCK_LIMIT}",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *xdist,
    )
    assert completed.returncode == 1, completed.stdout
    assert sorted(summary_lines(completed)) == sorted(
        [("FAILED", f"test_mocks.py::{name}") for name in MOCK_RUNAWAYS]
        + [("ERROR", "test_mocks.py::test_runaway_fixture")]
    )
    assert "3 passed" in completed.stdout
    for name, mock in {**MOCK_RUNAWAYS, "test_runaway_fixture": "fixture_client.warm"}.items():
        when = "setup" if name == "test_runaway_fixture" else "call"
        assert (
            f"memsafe: stopped the {when} of test_mocks.py::{name}: the mock {mock!r} recorded 1,001 calls in it, "
            "over the --memsafe-max-mock-calls limit of 1,000"
        ) in completed.stdout
    # Raised where the mock is called, past `except Exception`; the one test that swallows
    # every stop is failed by its report.
    assert completed.stdout.count("MockCallLimitExceeded: memsafe: stopped") == len(MOCK_RUNAWAYS)
    assert "ERROR at setup of test_runaway_fixture" in completed.stdout


def test_max_mock_calls_ini_setting_and_bad_values(tmp_path: Path) -> None:
    suite = {
        "test_loop.py": """\
            from unittest.mock import Mock


            def test_loop():
                ping = Mock()
                while True:
                    ping()
            """
    }
    (tmp_path / "pytest.ini").write_text("[pytest]\nmemsafe_max_mock_calls = 500\n")
    completed = run_pytest(tmp_path, suite)
    assert summary_lines(completed) == [("FAILED", "test_loop.py::test_loop")]
    assert (
        "the mock 'mock' recorded 501 calls in it, over the --memsafe-max-mock-calls limit of 500" in completed.stdout
    )

    (tmp_path / "pytest.ini").write_text("[pytest]\nmemsafe_max_mock_calls = many\n")
    completed = run_pytest(tmp_path, suite)
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR
    assert "ini setting memsafe_max_mock_calls: 'many' is not a positive whole number" in completed.stderr
    completed = run_pytest(tmp_path, suite, "--memsafe-max-mock-calls=0")
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR
    assert "argument --memsafe-max-mock-calls: '0' is not a positive whole number" in completed.stderr


def test_max_mock_calls_leaves_unittest_mock_as_it_was(tmp_path: Path) -> None:
    from unittest import mock

    from pytest_memsafe import MockCallGuard

    original = mock.CallableMixin._increment_mock_call
    guard = MockCallGuard(2)
    try:
        client = mock.MagicMock()
        client.a(), client.a(), client.a()  # between phases nothing is counted
        assert "_memsafe_calls_at" not in dir(client.a)
    finally:
        guard.pytest_unconfigure()
    assert mock.CallableMixin._increment_mock_call is original


# Workers that die in a test: the memory report names the test each was running.
DYING_SUITE = {
    "test_dying.py": """\
        import os
        import signal


        def test_exit():
            os._exit(1)


        async def test_killed():
            os.kill(os.getpid(), signal.SIGKILL)
        """,
    "test_fine.py": """\
        import pytest


        @pytest.mark.parametrize("i", range(4))
        def test_fine(i):
            pass
        """,
}


def test_report_names_the_test_a_dead_worker_was_running(tmp_path: Path) -> None:
    # The JSON field (died_running) is checked by test_json_report_lists_a_crashed_worker.
    completed = run_pytest(
        tmp_path,
        DYING_SUITE,
        "--memsafe-report",
        "--memsafe-max-rss=1G",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        # --dist load: under loadfile or loadgroup xdist re-sends a crashing test to a new worker.
        "-n",
        "2",
        "--dist",
        "load",
    )
    assert completed.returncode == 1, completed.stdout
    assert "4 passed" in completed.stdout
    died = dict(re.findall(r"^(gw\d+) died while running (\S+)$", completed.stdout, re.MULTILINE))
    assert len(re.findall(r"^gw\d+ +no data: the worker went down", completed.stdout, re.MULTILINE)) == 2
    assert sorted(died.values()) == ["test_dying.py::test_exit", "test_dying.py::test_killed"]
    for worker, nodeid in died.items():  # the same worker as in xdist's own crash report
        assert f"worker '{worker}' crashed while running '{nodeid}'" in completed.stdout


# --- CPython 3.11.0-3.11.7: a garbage collection inside ast.parse (python/cpython#106905) -------

# The bug in isolation: garbage whose finalizer parses (as every traceback formatted on 3.11 does,
# e.g. asyncio logging a never-retrieved task exception), collected while a large parse builds
# its tree. Without the guard, every outer ast.parse raises SystemError on 3.11.0-3.11.7.
AST_SUITE = {
    "test_ast.py": """\
        import ast

        SOURCE = "\\n".join(f"def f{i}(x):\\n    return x + {i}" for i in range(2000))


        class ParsesWhenFreed:
            def __init__(self):
                self.cycle = self  # only the cyclic collector frees it

            def __del__(self):
                ast.parse("a + b")


        def test_parse_while_garbage_with_finalizers_waits():
            for _ in range(5):
                for _ in range(50):
                    ParsesWhenFreed()
                ast.parse(SOURCE)
        """
}


def ast_guard_header() -> list[str]:
    if not ast_parse_is_unsafe():
        return []
    return [
        f"memsafe: Python {platform.python_version()}: garbage collection paused inside ast.parse "
        "(CPython bug gh-106905, fixed in 3.11.8; -o memsafe_ast_guard=false turns this off)"
    ]


def test_ast_parse_is_unsafe_on_cpython_3_11_0_to_3_11_7_only() -> None:
    assert ast_parse_is_unsafe((3, 11, 0), "cpython") and ast_parse_is_unsafe((3, 11, 7), "cpython")
    assert not ast_parse_is_unsafe((3, 11, 8), "cpython") and not ast_parse_is_unsafe((3, 11, 14), "cpython")
    assert not ast_parse_is_unsafe((3, 10, 13), "cpython") and not ast_parse_is_unsafe((3, 12, 1), "cpython")
    assert not ast_parse_is_unsafe((3, 11, 7), "pypy")


def test_guarded_parse_pauses_collection_and_restores_it() -> None:
    seen = []

    def parse(source: str) -> ast.Module:
        seen.append(gc.isenabled())
        if source == "nested":
            guarded("inner")  # a nested call keeps the pause
            seen.append(gc.isenabled())
        if source == "boom":
            raise SyntaxError(source)
        return ast.parse(source)

    guarded = guard_ast_parse(parse)
    was_enabled = gc.isenabled()
    try:
        gc.enable()
        assert isinstance(guarded("x = 1"), ast.Module) and gc.isenabled()
        guarded("nested")
        assert gc.isenabled()
        with pytest.raises(SyntaxError):
            guarded("boom")
        assert gc.isenabled()
        assert seen == [False, False, False, False, False]
        gc.disable()
        guarded("x = 1")
        assert not gc.isenabled()  # a collector disabled before stays disabled
    finally:
        (gc.enable if was_enabled else gc.disable)()
    assert guarded.__wrapped__ is parse and guarded.__name__ == "parse"


def test_ast_guard_keeps_collections_out_of_ast_parse(tmp_path: Path) -> None:
    guarded = run_pytest(tmp_path, AST_SUITE)
    assert guarded.returncode == 0, guarded.stdout
    assert [line for line in guarded.stdout.splitlines() if line.startswith("memsafe:")] == ast_guard_header()

    unguarded = run_pytest(tmp_path, AST_SUITE, "-o", "memsafe_ast_guard=false")
    assert "memsafe:" not in unguarded.stdout
    if ast_parse_is_unsafe():  # the suite shows the bug where the guard is needed
        assert summary_lines(unguarded) == [("FAILED", "test_ast.py::test_parse_while_garbage_with_finalizers_waits")]
        assert "SystemError: AST constructor recursion depth mismatch" in unguarded.stdout
    else:
        assert unguarded.returncode == 0, unguarded.stdout
