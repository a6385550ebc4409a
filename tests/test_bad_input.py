"""Hostile input outside the parser: every case gives one line naming the real culprit, exit 2,
no traceback, and the other paths are still processed; nothing hangs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
from cli_runner import invoke

MOCK_CLASS = textwrap.dedent(
    """\
    from unittest.mock import MagicMock


    class TestA:
        def test_a(self):
            assert MagicMock()
    """
)
SCRIPT = Path(sys.executable).with_name("memsafe-fix")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "memsafe_fix"]
# Permissions do not stop root: as root, the command runs as `nobody` through setpriv.
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--dist loadgroup'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_ok.py").write_text(MOCK_CLASS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_one_error(result: object, line: str) -> None:
    """Exit 2, exactly ``line`` as the error, no traceback, and ``tests/test_ok.py`` checked."""
    everything = result.everything  # type: ignore[attr-defined]
    assert result.exit_code == 2, everything  # type: ignore[attr-defined]
    assert "Traceback" not in everything
    errors = [text for text in everything.splitlines() if "error:" in text]
    assert errors == [line]
    assert "tests/test_ok.py:4:1: MSF001" in everything


def test_symlink_loop_is_one_error_and_the_rest_is_processed(project: Path) -> None:
    (project / "tests" / "test_loop.py").symlink_to("test_loop.py")
    assert_one_error(
        invoke("--check", "tests"), "tests/test_loop.py:1:1: error: cannot read file: Too many levels of symbolic links"
    )
    named = invoke("--check", "tests/test_loop.py", "tests/test_ok.py")
    assert_one_error(named, "tests/test_loop.py:1:1: error: cannot read: Too many levels of symbolic links")


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("pyproject.toml", 'tool = "x"\n', "pyproject.toml:1:1: error: `tool` must be a table"),
        (
            "pyproject.toml",
            "[tool]\nmemsafe-fix = 5\n",
            "pyproject.toml:1:1: error: `tool.memsafe-fix` must be a table",
        ),
        ("pytest.toml", "pytest = 5\n", "pytest.toml:1:1: error: `pytest` must be a table"),
        (
            "pytest.ini",
            '[pytest]\naddopts = -q\npython_files = "test_*.py\n',
            "pytest.ini:3:1: error: cannot read `python_files`: No closing quotation",
        ),
        (
            "pyproject.toml",
            '[tool.memsafe-fix]\nexclude = ["!"]\n',
            "pyproject.toml:1:1: error: invalid pattern '!' in `exclude` (Invalid git pattern: '!')",
        ),
        (
            "pyproject.toml",
            '[tool.memsafe-fix.per-file-ignores]\n"tests\\\\" = ["MSF001"]\n',
            "pyproject.toml:1:1: error: invalid pattern 'tests\\\\' in `per-file-ignores` (Invalid git pattern: 'tests\\\\')",
        ),
    ],
)
def test_broken_configuration_blames_its_file(project: Path, name: str, text: str, error: str) -> None:
    broken = project / "broken"
    broken.mkdir()
    (broken / name).write_text(text)
    (broken / "test_b.py").write_text(MOCK_CLASS)
    assert_one_error(invoke("--check", "broken", "tests"), f"broken/{error}")


def test_memory_error_names_itself(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError()

    monkeypatch.setattr("memsafe_fix.engine.ModuleAnalysis", exhausted)
    result = invoke("--write", "tests")
    assert result.exit_code == 2
    assert "tests/test_ok.py:1:1: internal error: MemoryError; file left unchanged" in result.stderr
    assert (project / "tests" / "test_ok.py").read_text() == MOCK_CLASS


def test_fifo_is_never_read(project: Path) -> None:
    os.mkfifo(project / "tests" / "test_x.py")
    walked = subprocess.run([*COMMAND, "--check", "tests"], capture_output=True, text=True, timeout=60)
    assert walked.returncode == 1 and "test_x.py" not in walked.stdout + walked.stderr  # no test file
    named = subprocess.run(
        [*COMMAND, "--check", "tests/test_x.py", "tests/test_ok.py"], capture_output=True, text=True, timeout=60
    )
    assert named.returncode == 2
    assert named.stderr == "tests/test_x.py:1:1: error: not a regular file\n"
    assert "tests/test_ok.py:4:1: MSF001" in named.stdout


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, list[str]]]:
    """A folder and a command prefix for which file permissions hold: the current user's, or
    `nobody`'s when running as root."""
    if os.geteuid() != 0:
        with tempfile.TemporaryDirectory() as folder:
            yield Path(folder), []
        return
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be denied")
    folder = Path(tempfile.mkdtemp(prefix="memsafe-fix-nobody-"))
    folder.chmod(0o755)
    probe = subprocess.run([*AS_NOBODY, *COMMAND, "--version"], capture_output=True, cwd=folder)
    if probe.returncode != 0:
        shutil.rmtree(folder)
        pytest.skip("`nobody` cannot run this interpreter")
    try:
        yield folder, AS_NOBODY
    finally:
        for path in folder.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize("mode", [0o000, 0o444, 0o111], ids=["---", "r--", "--x"])
def test_unreadable_folders_are_reported(unprivileged: tuple[Path, list[str]], mode: int) -> None:
    folder, prefix = unprivileged
    (folder / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--dist loadgroup'\n")
    (folder / "tests" / "sub").mkdir(parents=True)
    (folder / "tests" / "test_ok.py").write_text(MOCK_CLASS)
    (folder / "tests" / "sub" / "test_hidden.py").write_text(MOCK_CLASS)
    for path in (folder, folder / "tests"):
        path.chmod(0o755)
    (folder / "tests" / "sub").chmod(mode)
    for args in (["tests"], ["tests/sub", "tests/test_ok.py"]):
        completed = subprocess.run([*prefix, *COMMAND, "--check", *args], capture_output=True, text=True, cwd=folder)
        assert completed.returncode == 2, completed.stderr
        assert completed.stderr == "tests/sub:1:1: error: cannot read folder: Permission denied\n"
        assert "tests/test_ok.py:4:1: MSF001" in completed.stdout


def test_read_only_file_is_refused_with_one_line_and_others_are_written(unprivileged: tuple[Path, list[str]]) -> None:
    folder, prefix = unprivileged
    (folder / "tests").mkdir()
    read_only = folder / "tests" / "test_a.py"
    read_only.write_text(MOCK_CLASS)
    (folder / "tests" / "test_b.py").write_text(MOCK_CLASS)
    for path in (folder, folder / "tests"):
        path.chmod(0o777)  # `nobody` may write the folder and test_b.py, not test_a.py
    (folder / "tests" / "test_b.py").chmod(0o666)
    read_only.chmod(0o444)
    completed = subprocess.run([*prefix, *COMMAND, "--write", "tests"], capture_output=True, text=True, cwd=folder)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "tests/test_a.py:1:1: error: cannot write file: the file is read-only"
    ]
    assert read_only.read_text() == MOCK_CLASS
    assert stat.S_IMODE(read_only.stat().st_mode) == 0o444
    assert "gc.collect(1)" in (folder / "tests" / "test_b.py").read_text()
