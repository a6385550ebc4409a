"""A run stopped by SIGTERM or SIGKILL stops writing: its worker processes exit with it, no
file is rewritten afterwards (beyond the one each worker may have been writing), and the run's
index folder is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FILES = 1500
MOCK_CLASS = (
    "from unittest.mock import MagicMock\n\n\nclass TestA{i}:\n    def test_a(self):\n        assert MagicMock()\n"
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2, reason="needs /proc and a parallel run"
)


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def changed(files: list[Path]) -> int:
    return sum("xdist_group" in f.read_text() for f in files)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_run_stops_writing(tmp_path: Path, signum: int) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '--dist loadgroup'\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tmp").mkdir()
    files = [tmp_path / "tests" / f"test_{i:04d}.py" for i in range(FILES)]
    for i, file in enumerate(files):
        file.write_text(MOCK_CLASS.format(i=i))
    # Output to a file, not a pipe: workers that outlive the run would hold a pipe open.
    output = tmp_path / "output.txt"
    with output.open("w") as handle:
        run = subprocess.Popen(
            [sys.executable, "-m", "memsafe_fix", "--write", "tests"],
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
            stdout=handle,
            stderr=handle,
        )
    while changed(files[:: FILES // 50]) < 2:  # some of each worker's share is written
        assert run.poll() is None, output.read_text()
        time.sleep(0.05)
    workers = children(run.pid)
    run.send_signal(signum)
    written = changed(files)
    run.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "a worker outlived the run"
    assert changed(files) - written <= 2 * len(workers)  # at most a file in flight per worker
    assert changed(files) < FILES
    assert list((tmp_path / "tmp").iterdir()) == []  # the index folder is gone
    if signum == signal.SIGTERM:
        assert run.returncode != 0
        assert "Traceback" not in output.read_text()
