"""``xdist_group`` under ``--dist loadgroup``, end to end, on two stacks: the newest pytest and
pytest-xdist (this interpreter's: pytest 9.2 with pytest-xdist 3.8 drops the groups unless the
pytest-memsafe plugin restores them) and pytest 9.1.x (which groups by itself), in the small
environment ``.ci/run`` makes at ``.venv-pytest91`` (which also has pytest-benchmark). A suite is rewritten by ``memsafe-fix
--write``; worker ids then show where each test of each group ran."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PYTEST_91 = ROOT / ".venv-pytest91" / "bin" / "python"
EXAMPLES = ROOT / "examples"

# Tests that need their class's earlier tests in the same process: they pass only when the
# class's group runs on one worker.
ORDERED_SUITE = "".join(
    f"""
class TestSession{name}:
    opened = []

    def test_0_open(self):
        TestSession{name}.opened.append(MagicMock())
"""
    + "".join(
        f"""
    def test_{i}_uses_the_session(self):
        assert TestSession{name}.opened, "test_0_open ran on another worker"
"""
        for i in range(1, 6)
    )
    for name in ("Alpha", "Beta", "Gamma")
)
GROUPS = {
    **{f"session_{name}": 6 for name in ("alpha", "beta", "gamma")},
    **{"notifier": 2, "notifier_with_tear_down": 1, "reports": 1, "notifier_case": 1},
}


def stack(name: str) -> str:
    if name == "newest":
        return sys.executable
    if not PYTEST_91.exists():
        message = f"no {PYTEST_91.relative_to(ROOT)}: .ci/run makes it"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    return str(PYTEST_91)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("grouping") / "examples"
    shutil.copytree(EXAMPLES, project)
    (project / "tests" / "test_ordered.py").write_text(
        "from unittest.mock import MagicMock\n\n" + textwrap.dedent(ORDERED_SUITE)
    )
    written = subprocess.run(
        [sys.executable, "-m", "memsafe_fix", "--write", "."], cwd=project, capture_output=True, text=True
    )
    assert written.returncode in (0, 1), written.stdout + written.stderr
    assert '@pytest.mark.xdist_group(name="session_alpha")' in (project / "tests" / "test_ordered.py").read_text()
    return project


def run_pytest(project: Path, python: str, *args: str, must_pass: bool = True) -> str:
    """The output of ``pytest -v ARGS``; fails unless all tests pass, if they must."""
    completed = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args], cwd=project, capture_output=True, text=True
    )
    assert completed.returncode == 0 or not must_pass, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def memsafe_lines(output: str) -> list[str]:
    """The plugin's header lines about grouping (not the one on Python 3.11.0-3.11.7 about
    ``ast.parse``, tested in test_pytest_plugin.py)."""
    return [line for line in output.splitlines() if line.startswith("memsafe:") and "gh-106905" not in line]


def workers_per_group(project: Path, python: str, *args: str) -> dict[str, dict[str, str]]:
    """group -> {test id: worker that ran it}, from ``pytest -v -n 2``."""
    completed_stdout = run_pytest(project, python, "-n", "2", *args)
    groups: dict[str, dict[str, str]] = {}
    for worker, test, group in re.findall(r"^\[(gw\d)\] \[ *\d+%\] PASSED (\S+?)@([\w.]+)\s*$", completed_stdout, re.M):
        groups.setdefault(group, {})[test] = worker
    return groups


@pytest.mark.parametrize(
    ("stack_name", "plugin"),
    [("newest", "plugin"), ("pytest 9.1", "plugin"), ("pytest 9.1", "no plugin")],
)
def test_every_test_of_a_group_runs_on_one_worker(suite: Path, stack_name: str, plugin: str) -> None:
    args = ["--dist", "loadgroup"] + (["-p", "no:memsafe"] if plugin == "no plugin" else [])
    groups = workers_per_group(suite, stack(stack_name), *args)
    assert {group: len(tests) for group, tests in groups.items()} == GROUPS
    assert {group: sorted(set(tests.values())) for group, tests in groups.items() if len(set(tests.values())) > 1} == {}


def test_n_without_dist_groups_with_the_plugin(suite: Path) -> None:
    groups = workers_per_group(suite, sys.executable)
    assert {group: len(tests) for group, tests in groups.items()} == GROUPS
    assert all(len(set(tests.values())) == 1 for tests in groups.values())


def test_one_header_line_where_the_plugin_restores_groups(suite: Path) -> None:
    newest = memsafe_lines(run_pytest(suite, sys.executable, "-n", "2", "--dist", "loadgroup"))
    pytest_version, xdist_version = metadata.version("pytest"), metadata.version("pytest-xdist")
    if pytest.version_tuple[:2] >= (9, 2) and xdist_version == "3.8.0":
        assert newest == [
            f"memsafe: pytest {pytest_version} drops the xdist_group ids pytest-xdist {xdist_version} sets; "
            "the workers restore them (-p no:memsafe turns this off)"
        ]
    assert memsafe_lines(run_pytest(suite, stack("pytest 9.1"), "-n", "2", "--dist", "loadgroup")) == []
    # Under --dist load the ordered classes are split, as they would be without the plugin.
    assert memsafe_lines(run_pytest(suite, sys.executable, "-n", "2", "--dist", "load", must_pass=False)) == []
    assert memsafe_lines(run_pytest(suite, sys.executable)) == []


BENCHMARK_PROJECT = {
    "pyproject.toml": """\
        [project]
        name = "sample"
        optional-dependencies.test = ["pytest", "pytest-xdist", "pytest-benchmark"]

        [tool.pytest.ini_options]
        addopts = "-ra"
        """,
    "tests/test_speed.py": """\
        from unittest.mock import MagicMock


        def test_sum(benchmark):
            benchmark(sum, range(100))


        class TestClient:
            client = []

            def test_0_open(self):
                TestClient.client.append(MagicMock())

            def test_1_use(self):
                assert TestClient.client
        """,
}


def test_pytest_benchmark_keeps_running_and_n_alone_groups(tmp_path: Path) -> None:
    python = stack("pytest 9.1")  # the environment that has pytest-benchmark
    for name, text in BENCHMARK_PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    before = (tmp_path / "pyproject.toml").read_text()
    written = subprocess.run(
        [sys.executable, "-m", "memsafe_fix", "--write", "."], cwd=tmp_path, capture_output=True, text=True
    )
    assert "pytest-benchmark is declared" in written.stdout + written.stderr
    assert (tmp_path / "pyproject.toml").read_text() == before  # no `--dist` in addopts
    assert "1 passed" in run_pytest(tmp_path, python, "--benchmark-only")
    output = run_pytest(tmp_path, python, "-n", "2")
    assert "memsafe: -n without --dist: using --dist loadgroup" in output
    workers = set(re.findall(r"^\[(gw\d)\] \[ *\d+%\] PASSED \S+::TestClient::\S+@client\s*$", output, re.M))
    assert len(workers) == 1, output
