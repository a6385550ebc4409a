"""``--memsafe-explain`` (``pytest-memsafe/pytest_memsafe_explain.py``), run by real pytest on
suites built to grow one way each: by imports, by mocks kept on ``self``, by a module-level
cache. Sizes are checked against what the suites allocate (with wide margins), never timed."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

MiB = 1024**2

# 20 tests, each keeping about 0.5 MiB of mocks and data on `self` (pytest keeps the instances).
SELF_SUITE = {
    "test_self.py": """\
        from unittest.mock import AsyncMock, MagicMock

        import pytest


        class TestKeepsMocks:
            def setup_method(self):
                self.client = MagicMock()
                for index in range(30):
                    getattr(self.client, f"call_{index}")(index)
                self.events = AsyncMock()
                self.rows = [[str(index) * 20, index] for index in range(2_000)]

            @pytest.mark.parametrize("i", range(20))
            def test_uses_the_client(self, i):
                self.client.get(i)
        """,
}

# 20 tests, each adding about 0.5 MiB to a module-level dict nothing ever clears.
CACHE_SUITE = {
    "results_cache.py": """\
        CACHE = {}


        def remember(key):
            CACHE[key] = [[str(index) * 30, key] for index in range(4_000)]
            return CACHE[key]
        """,
    "test_cache.py": """\
        import pytest

        import results_cache


        @pytest.mark.parametrize("i", range(20))
        def test_remembers(i):
            assert results_cache.remember(i)
        """,
}

# 12 tests, each importing 5 modules of a package nothing imported before (about 0.3 MiB each).
IMPORT_MODULES = 60
IMPORT_SUITE = {
    **{
        f"lazy_pkg/mod_{index}.py": f"TABLE = {[f'row {index} {row}' for row in range(2000)]!r}\n"
        for index in range(IMPORT_MODULES)
    },
    "lazy_pkg/__init__.py": "",
    "test_imports.py": """\
        import importlib

        import pytest


        @pytest.mark.parametrize("batch", range(12))
        def test_imports_a_batch(batch):
            for index in range(batch * 5, batch * 5 + 5):
                importlib.import_module(f"lazy_pkg.mod_{index}")
        """,
}

# A stand-in for plotext that is not installed.
NO_PLOTEXT = {"hide/plotext.py": "raise ImportError('plotext hidden by the test')\n"}


def run_pytest(tmp_path: Path, files: dict[str, str], *args: str, env: dict[str, str] | None = None):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "ignore", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap_address_space,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )


def cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 * 1024**3, 4 * 1024**3))


def explained(tmp_path: Path, files: dict[str, str], *args: str) -> dict[str, Any]:
    """The explanation of the one process that ran the tests, from the JSON report."""
    completed = run_pytest(tmp_path, files, "--memsafe-explain", "--memsafe-report=json:report.json", *args)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    (process,) = [process for process in report["processes"] if process["tests"]]
    return process


def test_mocks_on_self_are_attributed_to_the_instances(tmp_path: Path) -> None:
    process = explained(tmp_path, SELF_SUITE)
    data = process["explain"]
    instances = data["instances"]
    assert instances["holding_state"] == 20 and instances["attributes"] == 60
    assert instances["mocks"] == {"MagicMock": 20, "AsyncMock": 20}
    assert instances["classes"] == [{"class": "test_self.py::TestKeepsMocks", "attributes": 60}]
    # 20 x (2,000 rows + 30 child mocks): megabytes that only the instances keep.
    assert instances["only_they_keep_bytes"] >= 5 * MiB
    kinds = {entry["type"] for entry in instances["types"]}
    assert "list" in kinds and ({"MagicProxy", "mock class", "MagicMock"} & kinds)
    assert data["imports"]["modules"] == 0
    assert all(holder["bytes"] < MiB for holder in data["module_state_holders"])  # re._cache and the like
    assert data["sampled"]["tests"] >= 1
    assert len(data["rss_series"]["rss"]) == 20

    # With --memsafe-gc the instances are released after each test: nothing left to attribute.
    released = explained(tmp_path, SELF_SUITE, "--memsafe-gc")["explain"]["instances"]
    assert released["holding_state"] == 0 and released["only_they_keep_bytes"] == 0


def test_a_module_level_cache_is_named(tmp_path: Path) -> None:
    data = explained(tmp_path, CACHE_SUITE)["explain"]
    holders = data["module_state_holders"]
    assert holders[0]["holder"] == "results_cache.CACHE"
    assert holders[0]["bytes"] >= 6 * MiB  # 20 x 4,000 rows of a list and a 30-120 char str
    assert data["kept"]["module state"]["sampled_bytes"] > 0
    assert data["instances"]["holding_state"] == 0


def test_modules_first_imported_during_tests_are_counted(tmp_path: Path) -> None:
    process = explained(tmp_path, IMPORT_SUITE)
    imports = process["explain"]["imports"]
    # (pytest or the standard library may import a module of its own during the first test)
    assert IMPORT_MODULES <= imports["modules"] <= IMPORT_MODULES + 10
    assert imports["tests"] == 12
    packages = {package["name"]: package["modules"] for package in imports["packages"]}
    assert packages["lazy_pkg"] in (IMPORT_MODULES, IMPORT_MODULES + 1)  # + lazy_pkg itself, unless collected
    assert all(5 <= test["modules"] <= 15 for test in imports["top_tests"])
    assert all(test["nodeid"].startswith("test_imports.py::test_imports_a_batch[") for test in imports["top_tests"])
    assert process["explain"]["instances"]["holding_state"] == 0


def test_the_words_name_the_rule_or_say_none_and_the_chart_degrades(tmp_path: Path) -> None:
    suite = {**SELF_SUITE, **CACHE_SUITE, **NO_PLOTEXT}
    completed = run_pytest(tmp_path, suite, "--memsafe-explain", env={"PYTHONPATH": str(tmp_path / "hide")})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "memsafe: where the memory went" in out and "main: RSS +" in out
    assert "is kept only by test-class instances: MSF006 (release-state" in out
    assert "is module state (largest: results_cache.CACHE): no memsafe-fix rule frees it" in out
    assert "memsafe: chart: install pytest-memsafe[chart] (plotext)" in out


def test_each_worker_explains_itself_in_the_json_and_the_chart(tmp_path: Path) -> None:
    pytest.importorskip("plotext")
    suite = {**SELF_SUITE, **CACHE_SUITE}
    args = ("--memsafe-explain", "--memsafe-chart=out/chart.html", "-n", "2", "--dist", "loadfile")
    completed = run_pytest(tmp_path, suite, "--memsafe-report=json:r.json", *args)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "memsafe: chart written to" in completed.stdout
    assert "<html" in (tmp_path / "out" / "chart.html").read_text().lower()
    report = json.loads((tmp_path / "r.json").read_text())
    workers = {process["name"]: process["explain"] for process in report["processes"] if process["tests"]}
    assert sorted(workers) == ["gw0", "gw1"]
    assert sorted(len(data["rss_series"]["rss"]) for data in workers.values()) == [20, 20]
    by_self = [data for data in workers.values() if data["instances"]["holding_state"]]
    by_cache = [data for data in workers.values() if data["module_state_holders"][:1]]
    assert len(by_self) == 1 and by_self[0]["instances"]["only_they_keep_bytes"] >= 5 * MiB
    assert any(data["module_state_holders"][0]["holder"] == "results_cache.CACHE" for data in by_cache)


def test_off_the_explain_module_is_not_even_imported(tmp_path: Path) -> None:
    suite = {
        "test_off.py": """\
            import sys


            def test_not_loaded():
                assert "pytest_memsafe_explain" not in sys.modules
            """,
    }
    completed = run_pytest(tmp_path, suite, "--memsafe-report=json:r.json")
    assert completed.returncode == 0, completed.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert all("explain" not in process for process in report["processes"])
