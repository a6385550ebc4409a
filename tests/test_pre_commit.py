"""The pre-commit hooks, installed from this checkout with ``pre-commit try-repo`` (which
includes uncommitted changes) into a temporary git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PRE_COMMIT = shutil.which("pre-commit") or str(Path(sys.executable).with_name("pre-commit"))
MOCK_CLASS = (
    "from unittest.mock import MagicMock\n\n\nclass TestA:\n    def test_a(self):\n        assert MagicMock()\n"
)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def try_repo(repo: Path, hook: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PRE_COMMIT, "try-repo", str(ROOT), hook, "--all-files"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PRE_COMMIT_HOME": str(home)},
    )


def test_autofix_hook_fixes_then_passes_and_check_hook_agrees(tmp_path: Path) -> None:
    assert Path(PRE_COMMIT).exists(), "pre-commit is part of the test extra"
    repo = tmp_path / "project"
    (repo / "tests").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "tests" / "test_a.py").write_text(MOCK_CLASS)
    (repo / "helpers.py").write_text(MOCK_CLASS)  # not a test file: the hooks leave it alone
    git(repo, "add", ".")
    home = tmp_path / "pre-commit-home"

    first = try_repo(repo, "memsafe-fix", home)
    assert first.returncode == 1, first.stdout + first.stderr  # pre-commit fails when files change
    assert "gc.collect(1)" in (repo / "tests" / "test_a.py").read_text()
    assert (repo / "helpers.py").read_text() == MOCK_CLASS

    git(repo, "add", ".")
    for hook in ("memsafe-fix", "memsafe-fix-check"):
        again = try_repo(repo, hook, home)
        assert again.returncode == 0, again.stdout + again.stderr
