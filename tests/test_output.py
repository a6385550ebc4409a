"""What the command prints: stdout the same on a terminal as in a pipe, summaries that count what
could not be checked, errors as entries of the machine formats, and ruff's option conventions."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from cli_runner import invoke

from memsafe_fix import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

MOCK_CLASS = textwrap.dedent(
    """\
    from unittest.mock import MagicMock


    class TestA:
        def test_a(self):
            assert MagicMock()
    """
)
CLEAN = "def test_plain():\n    assert True\n"
BROKEN = "class TestBroken:\n    def test_a(self)\n        pass\n"
SCRIPT = Path(sys.executable).with_name("memsafe-fix")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memsafe_fix"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # `--dist loadgroup` already set: the project-level rules have nothing to say here.
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--dist loadgroup'\n")
    (tmp_path / "tests").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


TERMINAL = "terminal"


def run_with_terminal(command: list[str], stdout: object, stderr: object) -> tuple[int, bytes]:
    """Run ``command`` with the streams given as ``TERMINAL`` on a pseudo-terminal; its exit
    code and what the terminal showed. The terminal is read while the command runs, so that
    output it should not get cannot block it."""
    leader, follower = pty.openpty()
    shown: list[bytes] = []

    def read() -> None:
        try:
            while chunk := os.read(leader, 4096):
                shown.append(chunk)
        except OSError:  # the terminal is closed once everything is read
            pass

    reader = threading.Thread(target=read)
    reader.start()
    try:
        streams = {"stdout": stdout, "stderr": stderr}
        streams = {name: follower if value == TERMINAL else value for name, value in streams.items()}
        completed = subprocess.run(command, timeout=300, **streams)  # type: ignore[call-overload]
    finally:
        os.close(follower)
        reader.join()
        os.close(leader)
    return completed.returncode, b"".join(shown)


def test_redirected_diff_is_byte_identical_with_a_progress_bar_on_the_terminal(project: Path) -> None:
    for i in range(60):
        (project / "tests" / f"test_{i:02}.py").write_text(MOCK_CLASS)
    piped = subprocess.run([*COMMAND, "--diff", "tests"], capture_output=True)
    assert piped.returncode == 1 and piped.stdout.count(b"--- a/tests/test_") == 60
    with open(project / "fix.patch", "wb") as patch:
        code, shown = run_with_terminal([*COMMAND, "--diff", "tests"], stdout=patch, stderr=TERMINAL)
    assert code == 1
    assert (project / "fix.patch").read_bytes() == piped.stdout
    assert b"memsafe-fix" in shown and b"--- a/tests/" not in shown  # the bar, and no diff, on the terminal


def test_progress_bar_never_on_a_terminal_stdout(project: Path) -> None:
    for i in range(60):
        (project / "tests" / f"test_{i:02}.py").write_text(CLEAN)
    with open(project / "errors.txt", "wb") as errors:
        code, shown = run_with_terminal([*COMMAND, "tests"], stdout=TERMINAL, stderr=errors)
    assert code == 0 and (project / "errors.txt").read_bytes() == b""  # no bar: stderr is no terminal
    assert shown.replace(b"\r\n", b"\n") == b"All checked: no findings in 60 files.\n"


def test_summaries_count_the_files_that_could_not_be_checked(project: Path) -> None:
    (project / "tests" / "test_broken.py").write_text(BROKEN)
    alone = invoke("tests/test_broken.py")
    assert alone.exit_code == 2
    assert "no findings" not in alone.everything.lower() and "All checked" not in alone.everything
    assert "No file checked; 1 file could not be checked." in alone.stdout
    (project / "tests" / "test_ok.py").write_text(CLEAN)
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    checked = invoke("tests")
    assert "Found 2 findings (2 fixable with `--write`); 1 file could not be checked." in checked.stdout
    (project / "tests" / "test_a.py").unlink()
    assert "No findings in 1 file; 1 file could not be checked." in invoke("tests").stdout
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    written = invoke("--write", "tests")
    assert "Fixed 2 findings in 1 file; 0 remaining without a safe fix; 1 file could not be checked." in written.stdout
    diffed = invoke("--diff", "tests")  # nothing left to change, but an error to count
    assert diffed.exit_code == 2 and "Would fix 0 findings in 0 files; 1 file could not be checked." in diffed.stderr


def test_broken_configuration_checks_no_file_and_says_so(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nscope = 'some'\n")
    (project / "tests" / "test_a.py").write_text(CLEAN)
    result = invoke("tests")
    assert result.exit_code == 2
    assert "in 0 files" not in result.everything and "All checked" not in result.everything
    assert "pyproject.toml:1:1: error: `scope` must be one of" in result.stderr
    assert "No file checked; 1 error." in result.stdout


def test_paths_matching_no_file_are_a_warning(project: Path) -> None:
    (project / "docs").mkdir()
    (project / "docs" / "conf.py").write_text(CLEAN)
    result = invoke("docs")
    assert result.exit_code == 0
    assert result.stderr == "warning: no test files found in docs\n"
    assert result.stdout == ""


def test_unknown_rule_codes_exit_2_with_the_valid_ones(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    for option in ("--select", "--ignore", "--extend-select"):
        result = invoke(option, "MSF999", "tests")
        assert result.exit_code == 2, option
        assert "MSF999" in result.stderr and "MSF001" in result.stderr and "MSF011" in result.stderr
    assert invoke("--select", "MSF00,MSF010", "tests").exit_code == 1  # prefixes are codes too
    for text in ('select = ["MSF999"]', 'ignore = ["MSF9"]', 'per-file-ignores = { "tests/*" = ["XYZ1"] }'):
        (project / "pyproject.toml").write_text(f"[tool.memsafe-fix]\n{text}\n")
        result = invoke("tests")
        assert result.exit_code == 2, text
        assert "pyproject.toml:1:1: error: unknown rule code" in result.stderr
        assert "valid: MSF001, MSF002" in result.stderr


def test_errors_are_entries_of_the_json_and_github_formats(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    (project / "tests" / "test_broken.py").write_text(BROKEN)
    (project / "tests" / "test_dangling.py").symlink_to(project / "nowhere.py")
    as_json = invoke("--output-format", "json", "tests")
    assert as_json.exit_code == 2
    records = json.loads(as_json.stdout)
    assert [(r["kind"], r["path"], r["line"], r["code"]) for r in records] == [
        ("finding", "tests/test_a.py", 4, "MSF001"),
        ("finding", "tests/test_a.py", 4, "MSF002"),
        ("error", "tests/test_dangling.py", 1, None),
        ("syntax-error", "tests/test_broken.py", 2, None),
    ]
    assert all(set(r) == {"kind", "path", "line", "column", "code", "message", "fixable"} for r in records)
    assert records[2]["message"].startswith("cannot read file: ")
    assert as_json.stderr == ""  # everything is in the JSON
    github = invoke("--output-format", "github", "tests").stdout.splitlines()
    assert github[3].startswith(
        "::error title=memsafe-fix (syntax error),file=tests/test_broken.py,line=2,col="
    ) and github[3].endswith("tests/test_broken.py:2:21: syntax error: expected ':'")
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nscope = 'some'\n")
    config = json.loads(invoke("--output-format", "json", "tests").stdout)
    assert [(r["kind"], r["path"]) for r in config] == [("error", "pyproject.toml")]


def test_noqa_comments_suppress_like_memsafe_ignore(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(
        textwrap.dedent(
            """\
            from unittest.mock import MagicMock


            class TestCoded:  # noqa: MSF001
                def test_a(self):
                    assert MagicMock()


            class TestBare:  # noqa
                def test_a(self):
                    assert MagicMock()


            class TestOther:  # noqa: E501
                def test_a(self):
                    assert MagicMock()
            """
        )
    )
    found = {
        line.split(": ", 1)[1].split(" ")[0] + "@" + line.split(":")[1]
        for line in invoke("tests").stdout.splitlines()
        if ": MSF" in line
    }
    assert found == {"MSF002@4", "MSF001@14", "MSF002@14"}


def test_select_ignore_extend_select_and_isolated(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    (project / "pyproject.toml").write_text(
        '[tool.memsafe-fix]\nselect = ["MSF001"]\n\n[tool.pytest.ini_options]\naddopts = "--dist loadgroup"\n'
    )

    def codes(*args: str) -> set[str]:
        return {line.split(" ")[1] for line in invoke(*args, "tests").stdout.splitlines() if ": MSF" in line}

    assert codes() == {"MSF001"}
    assert codes("--select", "MSF002") == {"MSF002"}  # replaces the configured selection
    assert codes("--extend-select", "MSF002") == {"MSF001", "MSF002"}
    assert codes("--select", "MSF00", "--ignore", "MSF001") == {"MSF002"}
    assert codes("--isolated") == {"MSF001", "MSF002"}  # the configuration is not read
    assert invoke("--isolated", "--config", "pyproject.toml", "tests").exit_code == 2


def test_stdin_filename_alone_reads_stdin(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*COMMAND, "--check", "--stdin-filename", "tests/test_x.py"],
        input=MOCK_CLASS,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert completed.returncode == 1 and completed.stdout.startswith("tests/test_x.py:4:1: MSF001 [*]")
    assert list(tmp_path.iterdir()) == []


def test_statistics_prints_only_the_table(project: Path) -> None:
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    result = invoke("--statistics", "tests")
    assert result.exit_code == 1
    assert result.stdout == "    1\tMSF001\t[*] xdist-group\n    1\tMSF002\t[*] gc-teardown\n"


def test_show_settings_is_toml_naming_the_files_read_and_the_default_excludes(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.memsafe-fix]\ngroup-name = "module"\n')
    (project / "pytest.ini").write_text("[pytest]\npython_classes = Check\n")
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    shown = invoke("--show-settings", "tests/test_a.py")
    assert shown.exit_code == 0
    settings = tomllib.loads(shown.stdout)
    assert settings["config-file"] == (project / "pyproject.toml").resolve().as_posix()
    assert settings["pytest-config-file"] == (project / "pytest.ini").resolve().as_posix()
    assert settings["tool"]["memsafe-fix"]["group-name"] == "module"
    assert (
        ".venv" in settings["tool"]["memsafe-fix"]["exclude"]
        and "*.egg-info" in settings["tool"]["memsafe-fix"]["exclude"]
    )
    assert settings["pytest"]["python_classes"] == ["Check"]
    isolated = tomllib.loads(invoke("--isolated", "--show-settings", "tests").stdout)
    assert "config-file" not in isolated and "group-name" not in isolated["tool"]["memsafe-fix"]  # the default: unset


def test_git_info_exclude_is_respected_like_gitignore(project: Path) -> None:
    subprocess.run(["git", "init", "-q", "."], check=True)
    (project / ".git" / "info").mkdir(exist_ok=True)
    (project / ".git" / "info" / "exclude").write_text("scratch/\n")
    (project / "scratch").mkdir()
    (project / "scratch" / "test_local.py").write_text(MOCK_CLASS)
    (project / "tests" / "test_a.py").write_text(MOCK_CLASS)
    output = invoke(".").everything
    assert "tests/test_a.py:4:1" in output and "scratch" not in output
    (project / "pyproject.toml").write_text("[tool.memsafe-fix]\nrespect-gitignore = false\n")
    assert "scratch/test_local.py:4:1" in invoke(".").everything


def test_short_version_and_all_rules(tmp_path: Path) -> None:
    assert invoke("-V").stdout == f"memsafe-fix {__version__}\n"
    shown = subprocess.run([*COMMAND, "rule", "--all"], capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0
    starts = [line.split(" ")[0] for line in shown.stdout.splitlines() if line.startswith("MSF0")]
    assert starts[:2] == ["MSF001", "MSF002"] and {"MSF006", "MSF010", "MSF011"} <= set(starts)
