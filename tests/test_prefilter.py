"""The engine's text pre-filter (``could_have_findings``): a file it lets through unanalysed
must be one the full analysis finds nothing in and no marker use in."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
from cli_runner import invoke
from test_golden import CASES, case_settings

import memsafe_fix.engine as engine
from memsafe_fix.analysis.markers import used_markers
from memsafe_fix.analysis.module import ModuleAnalysis
from memsafe_fix.config import Settings
from memsafe_fix.engine import check_source, could_have_findings, read_source

ROOT = Path(__file__).parent.parent
SOURCES = sorted(
    [*(case / name for case in CASES for name in ("input.py", "expected.py")), *ROOT.glob("examples/**/*.py")]
)
CLEAN = textwrap.dedent(
    """\
    import os


    class TestMath:
        def test_square(self):
            assert 3 * 3 == 9

        def test_cwd(self):
            assert os.getcwd()
    """
)


def _findings_and_markers(source: str, path: Path, settings: Settings, prefilter: bool) -> tuple[list, frozenset[str]]:
    name = path.stem if path.stem == "conftest" else f"test_{path.parent.name}"
    if prefilter and not could_have_findings(source, settings, name):
        return [], frozenset()  # what the engine reports for the file: clean, no markers
    return check_source(source, settings, name, path), used_markers(ModuleAnalysis(source, settings, name, path))


def _without_tokens(source: str) -> str:
    """The file with every mock and marker spelled otherwise: left for the pre-filter to skip
    unless it nests classes, and then it must be clean."""
    return re.sub("mark", "murk", re.sub("mock", "mick", source, flags=re.IGNORECASE), flags=re.IGNORECASE)


@pytest.mark.parametrize("variant", [lambda source: source, _without_tokens], ids=["as-is", "without-tokens"])
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_prefilter_never_changes_findings_or_markers(path: Path, variant: Callable[[str], str]) -> None:
    source = variant(read_source(path.read_bytes())[0])
    for settings in (case_settings(path.parent) if path.parent in CASES else Settings(), Settings(scope="all")):
        with_prefilter = _findings_and_markers(source, path, settings, prefilter=True)
        assert with_prefilter == _findings_and_markers(source, path, settings, prefilter=False)


@pytest.mark.parametrize(
    "source",
    [
        "from unittest import mock\n\nclass TestA:\n    def test_a(self):\n        mock.patch('os.getcwd')\n",
        "def test_a(mocker):\n    mocker.patch('os.getcwd')\n",
        "import pytest\n\n@pytest.mark.performance\ndef test_a():\n    pass\n",
        # Nested under a class with a teardown: MSF002 acts without any mock.
        "class TestOuter:\n    def teardown_method(self):\n        pass\n\n    class TestInner:\n"
        "        def test_x(self):\n            pass\n",
        "def test_ｍock():\n    pass\n",
    ],
)
def test_prefilter_lets_through_what_a_rule_may_act_on(source: str) -> None:
    assert could_have_findings(source, Settings(), "test_a")


def test_prefilter_skips_files_with_no_token_unless_scope_all_or_conftest() -> None:
    assert not could_have_findings(CLEAN, Settings(), "test_a")
    assert check_source(CLEAN, Settings(), "test_a") == []
    assert could_have_findings(CLEAN, Settings(scope="all"), "test_a")
    assert check_source(CLEAN, Settings(scope="all"), "test_a") != []
    assert could_have_findings(CLEAN, Settings(), "conftest")
    factory = replace(Settings(), mock_factories=("tests.helpers.make_client",))
    assert could_have_findings(CLEAN.replace("os.getcwd()", "make_client()"), factory, "test_a")


def test_cli_does_not_analyse_a_clean_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--dist loadgroup'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_clean.py").write_text(CLEAN)
    (tmp_path / "tests" / "test_mock.py").write_text(
        "from unittest.mock import MagicMock\n\n\nclass TestA:\n    def test_a(self):\n        assert MagicMock()\n"
    )
    monkeypatch.chdir(tmp_path)
    analysed: list[str] = []

    def counting(source: str, settings: Settings, module_name: str, *args: object) -> ModuleAnalysis:
        analysed.append(module_name)
        return ModuleAnalysis(source, settings, module_name, *args)

    monkeypatch.setattr(engine, "ModuleAnalysis", counting)
    result = invoke("--check", "tests")
    assert result.exit_code == 1
    assert "test_mock.py" in result.everything and "test_clean.py" not in result.everything
    assert analysed == ["test_mock"]
