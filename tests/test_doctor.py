"""The config doctor: project-level findings MSF010 (dist-loadgroup) and MSF011
(strict-markers) about the pytest configuration of the tests a run processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from cli_runner import invoke

from memsafe_fix.analysis.environment import project_environment
from memsafe_fix.analysis.project import installed_roots
from memsafe_fix.analysis.pytest_config import (
    Dependencies,
    addopts_tokens,
    dist_option,
    find_dependencies,
    strict_markers,
    xdist_disabled,
)
from memsafe_fix.cli import rule_documentation
from memsafe_fix.config import PytestConfig, find_pytest_config
from memsafe_fix.rules import PROJECT_RULES

MOCK_CLASS = textwrap.dedent(
    """\
    from unittest.mock import MagicMock


    class TestA:
        def test_a(self):
            assert MagicMock()
    """
)
PERFORMANCE = textwrap.dedent(
    """\
    import pytest


    @pytest.mark.performance
    def test_speed():
        pass
    """
)
XDIST_EXTRA = '[project]\nname = "sample"\noptional-dependencies.test = ["pytest", "pytest-xdist>=3"]\n\n'
# MSF001 stays on: the xdist_group markers it would add count as used.
ONLY_DOCTOR = '[tool.memsafe-fix]\nselect = ["MSF001", "MSF01"]\n\n'


def make(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    return root


@pytest.fixture(autouse=True)
def _empty_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Projects here have no virtualenv: without this, the packages of the interpreter running
    these tests (pytest-memsafe, pytest-xdist) would count as theirs (MSF010, MSF012)."""
    environment = tmp_path_factory.mktemp("empty-venv")
    (environment / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    monkeypatch.setenv("VIRTUAL_ENV", str(environment))


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def doctor_lines(result) -> list[str]:
    return [line for line in result.everything.splitlines() if re.search(r": MSF01\d ", line)]


# --- reading the configuration ---------------------------------------------------------------


def ini(values: dict, mode: str = "ini") -> PytestConfig:
    return PytestConfig(Path("pyproject.toml"), "tool.pytest.ini_options", mode, values)


@pytest.mark.parametrize(
    ("addopts", "expected"),
    [
        ("-ra -q", None),
        ("--dist loadgroup", "--dist loadgroup"),
        ("--dist=loadscope -n 4", "--dist loadscope"),
        (["--dist", "load"], "--dist load"),
        ("--dist load --dist loadgroup", "--dist loadgroup"),  # the last one wins
        ("--dist loadgroup -d", "-d"),  # pytest-xdist applies -d (--dist load) after --dist
        ("-n auto", None),
    ],
)
def test_dist_option(addopts, expected) -> None:
    assert dist_option(addopts_tokens(ini({"addopts": addopts}))) == expected


def test_addopts_string_is_split_like_a_shell_and_a_list_is_kept() -> None:
    assert addopts_tokens(ini({"addopts": "-ra  -k 'a and b'"})) == ["-ra", "-k", "a and b"]
    assert addopts_tokens(ini({"addopts": ["-k", "a and b"]})) == ["-k", "a and b"]
    assert addopts_tokens(None) == []


def test_xdist_disabled() -> None:
    for spelling in ("-p no:xdist", "-pno:xdist", "-p=no:xdist", "--plugin=no:xdist"):
        assert xdist_disabled(addopts_tokens(ini({"addopts": spelling}))), spelling
    assert not xdist_disabled(addopts_tokens(ini({"addopts": "-p no:cacheprovider"})))


@pytest.mark.parametrize(
    ("values", "mode", "strict"),
    [
        ({}, "ini", False),
        ({"addopts": "-ra --strict-markers"}, "ini", True),
        ({"addopts": "--strict"}, "ini", True),  # pytest 9: all strictness options
        ({"addopts": "-o strict_markers=true"}, "ini", True),
        ({"strict_markers": "true"}, "ini", True),
        ({"strict_markers": "True"}, "ini", True),  # TOML `true` in [tool.pytest.ini_options]
        ({"strict": "yes"}, "ini", True),
        ({"strict": "true", "strict_markers": "false"}, "ini", False),
        ({"strict_markers": "false", "addopts": "--strict-markers"}, "ini", True),
        ({"strict": True}, "toml", True),
        ({"strict_markers": False}, "toml", False),
    ],
)
def test_strict_markers(values, mode, strict) -> None:
    assert (strict_markers(ini(values, mode)) is not None) is strict


def found_for(folder: Path):
    find_pytest_config.cache_clear()  # cached for one run; the files change between calls here
    return find_pytest_config(folder)


def test_pytest_config_is_found_as_pytest_finds_it(tmp_path: Path) -> None:
    make(tmp_path, {"setup.cfg": "[tool:pytest]\naddopts = -x\n", "tests/test_a.py": ""})
    assert found_for(tmp_path / "tests").path.name == "setup.cfg"
    make(tmp_path, {"tox.ini": "[tox]\n"})  # no [pytest]: not pytest's
    assert found_for(tmp_path / "tests").path.name == "setup.cfg"
    make(tmp_path, {"pyproject.toml": '[project]\nname = "x"\n'})  # no pytest table either
    assert found_for(tmp_path / "tests").path.name == "setup.cfg"
    make(tmp_path, {"pyproject.toml": '[tool.pytest]\naddopts = ["-x"]\n'})
    found = found_for(tmp_path / "tests")
    assert (found.path.name, found.section, found.mode) == ("pyproject.toml", "tool.pytest", "toml")
    make(tmp_path, {"pytest.ini": "[pytest]\n"})
    assert found_for(tmp_path / "tests").path.name == "pytest.ini"
    make(tmp_path, {"pytest.toml": "[pytest]\n"})
    assert found_for(tmp_path / "tests").path.name == "pytest.toml"
    make(tmp_path, {"tests/pytest.ini": ""})  # nearer wins, even without a [pytest] section
    assert found_for(tmp_path / "tests").path == tmp_path / "tests" / "pytest.ini"


def test_declared_dependencies(tmp_path: Path) -> None:
    def declared(files: dict[str, str]) -> Dependencies:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        return find_dependencies(make(folder, files))

    assert "pytest-xdist" in declared({"pyproject.toml": XDIST_EXTRA})
    assert "pytest-xdist" in declared({"pyproject.toml": '[dependency-groups]\ndev = ["Pytest_Xdist[psutil]"]\n'})
    assert "pytest-xdist" in declared({"pyproject.toml": '[tool.poetry.group.dev.dependencies]\npytest-xdist = "^3"\n'})
    assert "pytest-xdist" in declared({"setup.cfg": "[options.extras_require]\ntest =\n    pytest-xdist>=3\n"})
    assert "pytest-xdist" in declared({"tox.ini": "[testenv]\ndeps =\n    pytest\n    py311: pytest-xdist\n"})
    assert "pytest-xdist" in declared({"requirements/test.txt": "pytest-xdist==3.8.0  # pinned\n"})
    assert "pytest-xdist" in declared({"setup.py": 'setup(extras_require={"test": ["pytest-xdist"]})\n'})
    assert "pytest-xdist" not in declared({"pyproject.toml": '[project]\ndependencies = ["pytest"]\n'})
    assert "pytest-xdist" not in declared({"requirements.txt": "# pytest-xdist\npytest\n"})
    pinned = declared({"requirements-dev.txt": "pytest==9.2.0\npytest-xdist==3.8.0\n"})
    assert pinned.grouping_broken() == "pytest 9.2.0 with pytest-xdist 3.8.0"
    locked = declared(
        {
            "uv.lock": '[[package]]\nname = "pytest"\nversion = "9.2.0"\n\n[[package]]\nname = "pytest-xdist"\nversion = "3.7.0"\n'
        }
    )
    assert locked.grouping_broken() == "pytest 9.2.0 with pytest-xdist 3.7.0"
    assert declared({"requirements.txt": "pytest==9.1.1\npytest-xdist==3.8.0\n"}).grouping_broken() is None
    assert declared({"requirements.txt": "pytest>=9.2\npytest-xdist==3.8.0\n"}).grouping_broken() is None


# --- MSF010 -----------------------------------------------------------------------------------


def test_no_dist_with_xdist_declared_is_fixable_at_the_addopts_line(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA + '[tool.pytest.ini_options]\ntestpaths = ["tests"]\naddopts = "-ra"\n'})
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    result = invoke("--check", "tests")
    assert result.exit_code == 1
    assert doctor_lines(result) == [
        "pyproject.toml:7:1: MSF010 [*] MSF001 adds `xdist_group` markers to the tests, but `addopts` does not set "
        "`--dist loadgroup`, so pytest-xdist ignores them"
    ]


def test_no_dist_without_xdist_declared_is_reported_without_a_fix(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": '[project]\nname = "x"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'})
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith("pyproject.toml:4:1: MSF010 MSF001 adds")  # the section header; no [*]
    assert "pytest-xdist is not a declared dependency" in line
    before = (cwd / "pyproject.toml").read_bytes()
    written = invoke("--write", "tests")
    assert written.exit_code == 1  # a finding without a safe fix remains
    assert (cwd / "pyproject.toml").read_bytes() == before


@pytest.mark.parametrize(
    ("addopts", "shown"),
    [
        ('"--dist loadscope"', "--dist loadscope"),
        ('"--dist=loadfile"', "--dist loadfile"),
        ('["-n", "4", "--dist", "load"]', "--dist load"),
        ('"-d"', "-d"),
    ],
)
def test_other_dist_modes_are_reported_without_a_fix(cwd: Path, addopts: str, shown: str) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA + f"[tool.pytest.ini_options]\naddopts = {addopts}\n"})
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith(f"pyproject.toml:6:1: MSF010 `{shown}` in `addopts` ignores `xdist_group` markers")
    assert "[*]" not in line
    assert invoke("--diff", "tests").stdout.count("pyproject.toml") == 0


def test_loadgroup_set_or_no_groups_means_no_finding(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA + '[tool.pytest.ini_options]\naddopts = "--dist loadgroup"\n'})
    make(cwd, {"tests/test_a.py": MOCK_CLASS, "other/test_b.py": "def test_b():\n    pass\n"})
    assert doctor_lines(invoke("--check", "tests")) == []
    (cwd / "pyproject.toml").write_text(XDIST_EXTRA + "[tool.pytest.ini_options]\n")
    assert doctor_lines(invoke("--check", "other")) == []  # no xdist_group used or added


def test_existing_markers_count_and_select_ignore_apply(cwd: Path) -> None:
    grouped = (
        'import pytest\n\n\n@pytest.mark.xdist_group(name="a")\nclass TestA:\n    def test_a(self):\n        pass\n'
    )
    make(cwd, {"tests/test_a.py": grouped, "pyproject.toml": XDIST_EXTRA + '[tool.memsafe-fix]\nselect = ["MSF010"]\n'})
    (line,) = doctor_lines(invoke("tests"))
    assert line.startswith("pyproject.toml:1:1: MSF010 [*] tests use `xdist_group` markers, but")
    for settings in ('ignore = ["MSF010"]', 'select = ["MSF00"]', 'per-file-ignores = {"pyproject.toml" = ["MSF01"]}'):
        (cwd / "pyproject.toml").write_text(XDIST_EXTRA + f"[tool.memsafe-fix]\n{settings}\n")
        assert doctor_lines(invoke("tests")) == [], settings


def test_once_per_configuration_file(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA + ONLY_DOCTOR + "[tool.pytest.ini_options]\n"})
    make(
        cwd, {"tests/unit/test_a.py": MOCK_CLASS, "tests/api/test_b.py": MOCK_CLASS, "tests/api/test_c.py": MOCK_CLASS}
    )
    make(cwd, {"sub/pytest.ini": "[pytest]\naddopts = -ra\n", "sub/tests/test_d.py": MOCK_CLASS})
    result = invoke("--check", "tests", "sub", "tests/api/test_b.py")
    assert [line.split(" ")[0] for line in doctor_lines(result)] == ["pyproject.toml:8:1:", "sub/pytest.ini:2:1:"]


def test_ini_files_are_reported_never_edited(cwd: Path) -> None:
    make(
        cwd,
        {"pyproject.toml": XDIST_EXTRA + ONLY_DOCTOR, "tox.ini": "[tox]\nenvlist = py\n\n[pytest]\naddopts = -ra\n"},
    )
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith("tox.ini:5:1: MSF010 MSF001 adds")
    assert line.endswith("add `--dist loadgroup` to `addopts` in [pytest]")
    before = (cwd / "tox.ini").read_bytes()
    assert invoke("--write", "tests").exit_code == 1
    assert (cwd / "tox.ini").read_bytes() == before


def test_xdist_turned_off_in_addopts_is_not_fixed(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA + '[tool.pytest.ini_options]\naddopts = "-p no:xdist"\n'})
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert "[*]" not in line and "`-p no:xdist`" in line


def test_pinned_versions_that_ignore_groups_are_reported(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": '[tool.pytest.ini_options]\naddopts = "--dist loadgroup"\n'})
    make(cwd, {"requirements.txt": "pytest==9.2.0\npytest-xdist==3.8.0\n", "tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line == (
        "pyproject.toml:2:1: MSF010 `--dist loadgroup` is set, but the pinned pytest 9.2.0 with pytest-xdist "
        "3.8.0 ignore `xdist_group` (pytest-xdist issue #1386): install pytest-memsafe in the test environment, "
        "which restores the groups, or pin `pytest<9.2` until a fixed pytest-xdist is out"
    )
    (cwd / "requirements.txt").write_text("pytest==9.1.1\npytest-xdist==3.8.0\n")
    assert doctor_lines(invoke("--check", "tests")) == []


def venv(root: Path, versions: dict[str, str]) -> None:
    """A project virtualenv at ``.venv`` holding these distributions (their metadata only)."""
    site = root / ".venv" / "lib" / "python3.11" / "site-packages"
    for name, version in versions.items():
        make(site, {f"{name.replace('-', '_')}-{version}.dist-info/METADATA": f"Name: {name}\nVersion: {version}\n"})


@pytest.fixture
def project_venv(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    make(cwd, {"pyproject.toml": '[tool.pytest.ini_options]\naddopts = "--dist loadgroup"\n'})
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    return cwd


LOST_GROUPS = (
    "pyproject.toml:2:1: MSF012 pytest 9.2.0 with pytest-xdist 3.8.0 (installed in "
    "`.venv/lib/python3.11/site-packages`) ignore `xdist_group`: under `--dist loadgroup` the tests of a group "
    "are spread over the workers (pytest-xdist issue #1386). Install pytest-memsafe in the test environment "
    "(it restores the groups), pin `pytest<9.2`, or upgrade to a pytest-xdist release after 3.8.0 that fixes it"
)


def test_installed_versions_that_ignore_groups_are_reported(project_venv: Path) -> None:
    venv(project_venv, {"pytest": "9.2.0", "pytest-xdist": "3.8.0"})
    assert doctor_lines(invoke("--check", "tests")) == [LOST_GROUPS]


def test_a_lock_file_pinning_another_pytest_does_not_hide_what_is_installed(project_venv: Path) -> None:
    lock = '[[package]]\nname = "pytest"\nversion = "9.0.3"\n\n[[package]]\nname = "pytest-xdist"\nversion = "3.8.0"\n'
    make(project_venv, {"uv.lock": lock})
    venv(project_venv, {"pytest": "9.2.0", "pytest-xdist": "3.8.0"})
    assert doctor_lines(invoke("--check", "tests")) == [LOST_GROUPS]


@pytest.mark.parametrize(
    "installed",
    [
        {"pytest": "9.2.0", "pytest-xdist": "3.8.0", "pytest-memsafe": "0.1.0"},  # the plugin restores the groups
        {"pytest": "9.1.1", "pytest-xdist": "3.8.0"},
        {"pytest": "9.2.0", "pytest-xdist": "3.9.0"},
    ],
)
def test_installed_versions_that_keep_groups_are_not_reported(project_venv: Path, installed: dict[str, str]) -> None:
    venv(project_venv, installed)
    assert doctor_lines(invoke("--check", "tests")) == []


def test_without_a_project_venv_this_interpreters_packages_count(project_venv: Path) -> None:
    environment = project_environment(project_venv)
    assert environment.where == f"the environment of {sys.executable}"
    assert environment.version("pytest") == metadata.version("pytest")
    assert environment.version("pytest_memsafe") == metadata.version("pytest-memsafe")
    venv(project_venv, {"pytest": "9.2.0"})
    project_environment.cache_clear()
    installed_roots.cache_clear()
    assert project_environment(project_venv).versions == {"pytest": "9.2.0"}


# --- both [tool.pytest] and [tool.pytest.ini_options] -------------------------------------------

BOTH_TABLES = '[tool.pytest.ini_options]\naddopts = "-ra"\n\n[tool.pytest.benchmark]\nmin_rounds = 5\n'


def test_both_pytest_tables_follow_an_installed_pytest_8(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    make(cwd, {"pyproject.toml": XDIST_EXTRA + BOTH_TABLES, "tests/test_a.py": MOCK_CLASS})
    venv(cwd, {"pytest": "8.4.2", "pytest-xdist": "3.8.0"})
    result = invoke("--write", "tests")
    assert result.exit_code == 0, result.everything
    assert "xdist_group" in (cwd / "tests" / "test_a.py").read_text()
    assert 'addopts = "-ra --dist loadgroup"' in (cwd / "pyproject.toml").read_text()


def test_both_pytest_tables_are_reported_under_pytest_9_and_files_still_fixed(
    cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    make(cwd, {"pyproject.toml": BOTH_TABLES, "tests/test_a.py": MOCK_CLASS})
    venv(cwd, {"pytest": "9.1.1"})
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        "pyproject.toml:1:1: error: pytest 9.1.1 (installed in `.venv/lib/python3.11/site-packages`) stops on a "
        "file with both [tool.pytest] (`benchmark`) and [tool.pytest.ini_options]: move one into the other; "
        "memsafe-fix read [tool.pytest.ini_options]"
    ]
    assert "xdist_group" in (cwd / "tests" / "test_a.py").read_text()


# --- pytest-benchmark -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["declared", "installed"])
def test_dist_is_not_added_where_pytest_benchmark_is(cwd: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    extra = XDIST_EXTRA.replace('"pytest-xdist>=3"', '"pytest-xdist>=3", "pytest-benchmark"')
    make(
        cwd,
        {
            "pyproject.toml": (extra if where == "declared" else XDIST_EXTRA)
            + '[tool.pytest.ini_options]\naddopts = "-ra"\n'
        },
    )
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    venv(
        cwd,
        {"pytest": "9.1.1", "pytest-xdist": "3.8.0", **({"pytest-benchmark": "5.1.0"} if where == "installed" else {})},
    )
    before = (cwd / "pyproject.toml").read_text()
    (line,) = doctor_lines(invoke("--write", "tests"))
    assert (cwd / "pyproject.toml").read_text() == before
    assert "[*]" not in line and f"pytest-benchmark is {where} and `--dist` in `addopts` turns it off" in line
    assert "run `pytest -n N --dist loadgroup`, or install pytest-memsafe" in line


# --- MSF011 -----------------------------------------------------------------------------------


def test_strict_markers_with_unregistered_performance_marker(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": ONLY_DOCTOR + '[tool.pytest.ini_options]\naddopts = "--strict-markers"\n'})
    make(cwd, {"tests/test_perf.py": PERFORMANCE})
    assert doctor_lines(invoke("--check", "tests")) == [
        "pyproject.toml:5:1: MSF011 [*] `--strict-markers` in `addopts` makes unregistered markers errors, "
        "and `performance` is not registered in `markers`: collecting the tests that use it fails"
    ]
    assert invoke("--write", "tests").exit_code == 0
    assert (
        (cwd / "pyproject.toml")
        .read_text()
        .endswith('addopts = "--strict-markers"\nmarkers = ["performance: timing-sensitive tests"]\n')
    )
    assert doctor_lines(invoke("--check", "tests")) == []


def test_registered_markers_are_not_reported(cwd: Path) -> None:
    config = '[tool.pytest.ini_options]\nstrict_markers = true\nmarkers = ["performance(reason): slow"]\n'
    make(cwd, {"pyproject.toml": ONLY_DOCTOR + config, "tests/test_perf.py": PERFORMANCE})
    assert doctor_lines(invoke("--check", "tests")) == []
    (cwd / "pyproject.toml").write_text(ONLY_DOCTOR + "[tool.pytest.ini_options]\nstrict_markers = true\n")
    assert len(doctor_lines(invoke("--check", "tests"))) == 1
    # A conftest.py on the way to the tests registers it: seen even when only the test file is named.
    conftest = 'def pytest_configure(config):\n    config.addinivalue_line("markers", "performance: slow")\n'
    make(cwd, {"tests/conftest.py": conftest})
    assert doctor_lines(invoke("--check", "tests/test_perf.py")) == []
    assert doctor_lines(invoke("--check", "tests")) == []


def test_strict_off_or_overridden_means_no_finding(cwd: Path) -> None:
    config = "[tool.pytest.ini_options]\nstrict = true\nstrict_markers = false\n"
    make(cwd, {"pyproject.toml": ONLY_DOCTOR + config, "tests/test_perf.py": PERFORMANCE})
    assert doctor_lines(invoke("--check", "tests")) == []


def test_configured_performance_markers_are_the_ones_checked(cwd: Path) -> None:
    settings = '[tool.memsafe-fix]\nselect = ["MSF011"]\nperformance-markers = ["benchmark"]\n\n'
    make(cwd, {"pyproject.toml": settings + "[tool.pytest]\nstrict = true\n", "tests/test_perf.py": PERFORMANCE})
    assert doctor_lines(invoke("--check", "tests")) == []  # `performance` is not one of them here
    (cwd / "tests" / "test_perf.py").write_text(PERFORMANCE.replace("performance", "benchmark"))
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith("pyproject.toml:6:1: MSF011 [*] `strict = true` makes") and "`benchmark`" in line
    invoke("--write", "tests")
    assert (
        (cwd / "pyproject.toml")
        .read_text()
        .endswith('[tool.pytest]\nstrict = true\nmarkers = ["benchmark: timing-sensitive tests"]\n')
    )


def test_xdist_group_must_be_registered_when_xdist_is_not_a_dependency(cwd: Path) -> None:
    config = '[tool.pytest.ini_options]\naddopts = "--strict-markers --dist loadgroup"\nmarkers = ["performance: x"]\n'
    make(cwd, {"pyproject.toml": config, "tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith("pyproject.toml:3:1: MSF011 [*]") and "`xdist_group` is not registered" in line
    make(cwd, {"requirements-dev.txt": "pytest-xdist\n"})  # pytest-xdist registers it
    assert doctor_lines(invoke("--check", "tests")) == []


def test_multi_line_markers_string_gains_a_line(cwd: Path) -> None:
    config = '[tool.pytest.ini_options]\nstrict_markers = true\nmarkers = """\n    slow: slow tests\n"""\n'
    make(cwd, {"pyproject.toml": ONLY_DOCTOR + config, "tests/test_perf.py": PERFORMANCE})
    assert invoke("--write", "tests").exit_code == 0
    assert (
        (cwd / "pyproject.toml")
        .read_text()
        .endswith('markers = """\n    slow: slow tests\n    performance: timing-sensitive tests\n"""\n')
    )


def test_ini_strict_markers_reported_with_the_line_to_add(cwd: Path) -> None:
    make(cwd, {"pytest.ini": "[pytest]\naddopts = --strict-markers\n", "tests/test_perf.py": PERFORMANCE})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith("pytest.ini:2:1: MSF011 `--strict-markers`")
    assert line.endswith('; register "performance: timing-sensitive tests"')


# --- --diff, --write, output formats, errors --------------------------------------------------

COMMENTED = """\
# Project settings.
[project]
name = "sample"
optional-dependencies = { test = ['pytest', 'pytest-xdist'] }

[tool.pytest.ini_options]
# Options every run gets.
addopts = '-ra --strict-markers'   # literal string, odd spacing
markers = [
  "slow: slow tests",  # the slow ones
]
testpaths = [ "tests" ]

# Linting.
[tool.ruff]
line-length = 100
"""
COMMENTED_FIXED = COMMENTED.replace(
    "addopts = '-ra --strict-markers'", "addopts = '-ra --strict-markers --dist loadgroup'"
).replace(
    '  "slow: slow tests",  # the slow ones\n',
    '  "slow: slow tests",  # the slow ones\n  "performance: timing-sensitive tests",\n',
)


def test_write_keeps_every_other_byte_and_is_idempotent(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": COMMENTED, "tests/test_a.py": MOCK_CLASS, "tests/test_perf.py": PERFORMANCE})
    result = invoke("--write", "tests")
    assert result.exit_code == 0, result.everything
    assert (cwd / "pyproject.toml").read_text() == COMMENTED_FIXED
    again = invoke("--write", "tests")
    assert (again.exit_code, (cwd / "pyproject.toml").read_text()) == (0, COMMENTED_FIXED)
    assert "Fixed 0 findings in 0 files" in again.everything
    quiet = invoke("--diff", "tests")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('addopts = "-ra"\n', 'addopts = "-ra --dist loadgroup"\n'),
        ('addopts = ""\n', 'addopts = "--dist loadgroup"\n'),
        ("addopts = ['-ra']  # c\n", 'addopts = [\'-ra\', "--dist", "loadgroup"]  # c\n'),
        ('addopts = [\n    "-ra",\n]\n', 'addopts = [\n    "-ra",\n    "--dist",\n    "loadgroup",\n]\n'),
        ('addopts = """\n    -ra\n    -q\n"""\n', 'addopts = """\n    -ra\n    -q\n    --dist loadgroup\n"""\n'),
        ('testpaths = ["t"]\n\n# next\n', 'testpaths = ["t"]\naddopts = "--dist loadgroup"\n\n# next\n'),
    ],
)
def test_addopts_shapes(cwd: Path, before: str, after: str) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA + "[tool.pytest.ini_options]\n" + before, "tests/test_a.py": MOCK_CLASS})
    assert invoke("--write", "tests").exit_code == 0
    assert (cwd / "pyproject.toml").read_text() == XDIST_EXTRA + "[tool.pytest.ini_options]\n" + after


def test_no_pytest_configuration_gets_a_table_at_the_end(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA.rstrip("\n"), "tests/test_a.py": MOCK_CLASS})
    (line,) = doctor_lines(invoke("--check", "tests"))
    assert line.startswith(
        "pyproject.toml:1:1: MSF010 [*] MSF001 adds `xdist_group` markers to the tests, but no pytest configuration"
    )
    assert invoke("--write", "tests").exit_code == 0
    expected = XDIST_EXTRA.rstrip("\n") + '\n\n[tool.pytest.ini_options]\naddopts = "--dist loadgroup"\n'
    assert (cwd / "pyproject.toml").read_text() == expected


def test_a_pyproject_above_the_current_folder_gets_no_new_pytest_table(cwd: Path, monkeypatch) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA, "packages/foo/tests/test_x.py": MOCK_CLASS})
    monkeypatch.chdir(cwd / "packages" / "foo")
    result = invoke("--write", "tests/test_x.py")
    assert (cwd / "pyproject.toml").read_text() == XDIST_EXTRA
    (line,) = doctor_lines(result)
    assert f"{cwd / 'pyproject.toml'}:1:1: MSF010 MSF001 adds" in line
    assert "not fixed" in line and "[*]" not in line
    assert "xdist_group" in (cwd / "packages/foo/tests/test_x.py").read_text()  # the test file is fixed


def test_pyproject_changed_during_the_run_is_not_written(cwd: Path, monkeypatch) -> None:
    make(cwd, {"pyproject.toml": XDIST_EXTRA, "tests/test_a.py": MOCK_CLASS, "tests/test_b.py": MOCK_CLASS})
    from memsafe_fix import cli

    def run_and_edit(jobs, workers, cache):
        for number, result in enumerate(engine_run(jobs, workers, cache)):
            if number == 1:  # someone saves the file while the run goes on
                (cwd / "pyproject.toml").write_text(XDIST_EXTRA + "# edited\n")
            yield result

    engine_run = cli.run
    monkeypatch.setattr(cli, "run", run_and_edit)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert "pyproject.toml:1:1: error: changed while memsafe-fix ran; not written (run again)" in result.stderr
    assert (cwd / "pyproject.toml").read_text() == XDIST_EXTRA + "# edited\n"


def test_crlf_line_endings_are_kept(cwd: Path) -> None:
    text = (XDIST_EXTRA + '[tool.pytest.ini_options]\ntestpaths = ["t"]\n').replace("\n", "\r\n")
    make(cwd, {"pyproject.toml": text, "tests/test_a.py": MOCK_CLASS})
    assert invoke("--write", "tests").exit_code == 0
    assert (cwd / "pyproject.toml").read_bytes() == text.encode() + b'addopts = "--dist loadgroup"\r\n'


def test_diff_is_a_git_apply_able_diff_of_the_config(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": COMMENTED, "tests/test_perf.py": PERFORMANCE, "tests/test_a.py": MOCK_CLASS})
    result = invoke("--diff", "tests")
    assert result.exit_code == 1
    assert "--- a/pyproject.toml\n+++ b/pyproject.toml\n" in result.stdout
    assert '+  "performance: timing-sensitive tests",\n' in result.stdout
    assert (cwd / "pyproject.toml").read_text() == COMMENTED
    (cwd / "fix.patch").write_text(result.stdout)
    subprocess.run(["git", "init", "-q", "."], check=True)
    subprocess.run(["git", "apply", "fix.patch"], check=True)
    assert (cwd / "pyproject.toml").read_text() == COMMENTED_FIXED


def test_json_github_and_statistics(cwd: Path) -> None:
    make(cwd, {"pyproject.toml": ONLY_DOCTOR + '[tool.pytest.ini_options]\naddopts = "--dist load"\n'})
    make(cwd, {"tests/test_a.py": MOCK_CLASS})
    (entry,) = [e for e in json.loads(invoke("--output-format", "json", "tests").stdout) if e["code"] == "MSF010"]
    assert {k: entry[k] for k in ("path", "line", "column", "code", "fixable")} == {
        "path": "pyproject.toml",
        "line": 5,
        "column": 1,
        "code": "MSF010",
        "fixable": False,
    }
    github = invoke("--output-format", "github", "tests").stdout
    assert "::error title=memsafe-fix (MSF010),file=pyproject.toml,line=5,col=1::" in github
    assert "    1\tMSF010\t    dist-loadgroup" in invoke("--statistics", "tests").stdout


def test_bad_toml_is_one_error_line_and_other_files_are_processed(cwd: Path) -> None:
    make(cwd, {"a/pyproject.toml": "[tool.pytest.ini_options\naddopts = 1\n", "a/tests/test_a.py": MOCK_CLASS})
    make(cwd, {"b/pyproject.toml": XDIST_EXTRA + "[tool.pytest.ini_options]\n", "b/tests/test_b.py": MOCK_CLASS})
    result = invoke("--check", "a", "b")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert re.match(r"^a/pyproject\.toml:1:\d+: error: cannot read configuration: ", errors[0]), errors
    assert "b/tests/test_b.py:4:1: MSF001 [*]" in result.everything
    assert "b/pyproject.toml:5:1: MSF010 [*]" in result.everything


def test_rule_documentation() -> None:
    for rule in PROJECT_RULES:
        doc = rule_documentation(rule.code) or ""
        assert doc.startswith(f"{rule.code} {rule.name}.")
        for section in ("## What it does", "## Why", "## Example", "## Fix safety"):
            assert section in doc
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv[1:] = ['rule', 'MSF011']; from memsafe_fix.cli import main; main()",
        ],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0 and shown.stdout.startswith("MSF011 strict-markers.")


# --- real pytest ------------------------------------------------------------------------------

BILLING = textwrap.dedent(
    """\
    from unittest.mock import MagicMock


    class TestBilling:
        def setup_method(self):
            self.client = MagicMock()

        def test_0(self):
            assert self.client

        def test_1(self):
            assert self.client

        def test_2(self):
            assert self.client

        def test_3(self):
            assert self.client
    """
)
GROUPED_SUITE = {
    "requirements-test.txt": "pytest\npytest-xdist\n",
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-p no:cacheprovider"\n',
    "tests/test_billing.py": BILLING,
    **{f"tests/test_other_{i}.py": f"def test_other_{i}():\n    pass\n" for i in range(6)},
}


def workers_of(project: Path, *args: str) -> tuple[int, dict[str, set[str]]]:
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", *args], cwd=project, capture_output=True, text=True, timeout=300
    )
    workers: dict[str, set[str]] = {}
    for worker, test in re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)", completed.stdout):
        workers.setdefault(test.split("::")[0], set()).add(worker)
    return completed.returncode, workers


def test_added_dist_loadgroup_puts_a_group_on_one_worker(tmp_path: Path) -> None:
    project = make(tmp_path, GROUPED_SUITE)
    # Before: `-n 2` alone distributes with `--dist load`, spreading the class over both workers.
    code, before = workers_of(project, "-n", "2")
    assert code == 0 and len(before["tests/test_billing.py"]) == 2, before
    written = subprocess.run(
        [sys.executable, "-m", "memsafe_fix", "--write", "."], cwd=project, capture_output=True, text=True
    )
    assert written.returncode == 0, written.stdout + written.stderr
    assert '"-p no:cacheprovider --dist loadgroup"' in (project / "pyproject.toml").read_text()
    # After: the same command line, and addopts' --dist loadgroup keeps the group on one worker.
    code, after = workers_of(project, "-n", "2")
    assert code == 0 and len(after["tests/test_billing.py"]) == 1, after
    assert set(after) == set(before)
    serial = subprocess.run([sys.executable, "-m", "pytest", "-q"], cwd=project, capture_output=True, text=True)
    assert serial.returncode == 0 and "10 passed" in serial.stdout, serial.stdout + serial.stderr


def test_dist_in_addopts_breaks_pytest_without_xdist(tmp_path: Path) -> None:
    """Why MSF010 fixes only when pytest-xdist is declared: without the plugin (here turned
    off with -p no:xdist), --dist is an unknown option and pytest refuses to run at all."""
    make(tmp_path, {"pytest.ini": "[pytest]\naddopts = --dist loadgroup\n", "test_a.py": "def test_a():\n    pass\n"})
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 4 and "unrecognized arguments: --dist" in completed.stderr


# --- MSF013: CPython 3.11.0-3.11.7 (python/cpython#106905) --------------------------------------


def venv_python(root: Path, cfg: str) -> None:
    make(root, {".venv/pyvenv.cfg": f"home = /usr/bin\ninclude-system-site-packages = false\n{cfg}"})


AST_GC = (
    "pyproject.toml:2:1: MSF013 the tests run on CPython 3.11.7 (`.venv/lib/python3.11/site-packages`), whose "
    "ast.parse fails with `SystemError: AST constructor recursion depth mismatch` when a garbage collection inside "
    "it runs a finalizer that parses too (CPython bug gh-106905, fixed in 3.11.8): pytest parses test files to "
    "show failures, so an xdist worker can crash, and the collections added after each test change where "
    "collections run. Upgrade to Python 3.11.8 or newer, or install pytest-memsafe in the test environment (it "
    "pauses collection inside ast.parse)"
)


@pytest.mark.parametrize("cfg", ["version = 3.11.7\n", "implementation = CPython\nversion_info = 3.11.7.final.0\n"])
def test_python_3_11_7_without_the_plugin_is_reported_when_collections_are_added(project_venv: Path, cfg: str) -> None:
    venv(project_venv, {"pytest": "9.1.1", "pytest-xdist": "3.8.0"})
    venv_python(project_venv, cfg)
    assert doctor_lines(invoke("--check", "tests")) == [AST_GC]
    assert AST_GC in invoke("--write", "tests").everything
    # Once written, no run adds collections: nothing more to say.
    assert doctor_lines(invoke("--check", "tests")) == []


@pytest.mark.parametrize(
    ("cfg", "installed", "arguments"),
    [
        ("version = 3.11.8\n", {}, ()),  # fixed
        ("version = 3.12.1\n", {}, ()),
        ("version = 3.10.13\n", {}, ()),
        ("implementation = PyPy\nversion_info = 3.11.7.final.0\n", {}, ()),
        ("version = 3.11.7\n", {"pytest-memsafe": "0.1.0"}, ()),  # the plugin pauses collection in ast.parse
        ("version = 3.11.7\n", {}, ("--ignore", "MSF002,MSF005")),  # no collection added
        ("version = 3.11.7\n", {}, ("--ignore", "MSF013")),
    ],
)
def test_python_3_11_7_is_not_reported_otherwise(
    project_venv: Path, cfg: str, installed: dict[str, str], arguments: tuple[str, ...]
) -> None:
    venv(project_venv, {"pytest": "9.1.1", "pytest-xdist": "3.8.0", **installed})
    venv_python(project_venv, cfg)
    assert [line for line in doctor_lines(invoke("--check", *arguments, "tests")) if "MSF013" in line] == []


def test_a_venv_without_pyvenv_cfg_has_no_python_version(project_venv: Path) -> None:
    venv(project_venv, {"pytest": "9.1.1"})
    assert project_environment(project_venv).python is None
    assert doctor_lines(invoke("--check", "tests")) == []
