"""CPU time and peak memory of ``memsafe-fix`` on one generated test file per size: every
analysis must stay linear in the file's size.

    .venv/bin/python benchmarks/big_file.py [--megabytes 1 2.5 5 10] [--mode check diff write] [--parse]
        [--against TREE]

Each file is mock-using test classes (``setup_method`` state, a ``patch`` decorator: the
``CLASS`` template, which ``speed.py`` uses too) repeated to the size asked for; 10 MB is about
28,000 classes. Target for 10 MB with ``--check``: under 10 s and under 300 MB (``--check`` reads
files of 512 KB or more a chunk of top-level statements at a time, see
``memsafe_fix/analysis/chunks.py``). ``--diff`` and ``--write`` parse the whole file with LibCST:
give them smaller sizes. ``--parse`` also times a bare ``ast.parse`` of each file (in a process of
its own, with the cyclic collector off as the engine runs), for comparison. ``--against TREE``
also runs the memsafe-fix of another source tree (``git worktree add /tmp/main main``), each
of its runs right before the same run of this one: on a shared machine only times taken
together compare.

Each run starts without a result cache (it writes one, as a first run does). Prints, per size
and mode: classes, CPU seconds (user + sys of the process, the measure to compare on a shared
machine), wall seconds, peak RSS, and CPU seconds per MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

HEADER = "import gc\nfrom unittest.mock import MagicMock, patch\n\nimport pytest\n\n"
CLASS = """
class TestService{i}:
    def setup_method(self):
        self.client = MagicMock()

    def test_call(self):
        self.client.get("x")
        self.client.get.assert_called_once_with("x")

    @patch("os.getcwd", return_value="/")
    def test_patched(self, getcwd):
        assert getcwd() == "/"

"""
# A bare parse of the file, as the engine does it (cyclic collector off).
PARSE = "import ast, gc, sys; gc.disable(); ast.parse(open(sys.argv[1]).read())"


def generate(size: int) -> tuple[str, int]:
    parts, length, count = [HEADER], len(HEADER), 0
    while length < size:
        part = CLASS.format(i=count)
        parts.append(part)
        length += len(part)
        count += 1
    return "".join(parts), count


def measure(command: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, peak MiB) of one command in a process of its own."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _, _, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        raise
    process.returncode = 0  # reaped by wait4
    wall = time.perf_counter() - start
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, nargs="+", default=[1, 2.5, 5, 10])
    parser.add_argument("--mode", choices=["check", "diff", "write"], nargs="+", default=["check"])
    parser.add_argument("--parse", action="store_true", help="also time a bare ast.parse of each file")
    parser.add_argument("--against", type=Path, metavar="TREE", help="also time the memsafe-fix of this source tree")
    options = parser.parse_args()
    # The other tree's package comes first on the path (``-m memsafe_fix`` runs from the file's folder).
    against = {**os.environ, "PYTHONPATH": str(options.against.resolve())} if options.against else None
    print("size, classes, what: CPU s (user+sys), wall s, peak RSS MiB, CPU s/MB")
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in options.megabytes:
            source, classes = generate(int(megabytes * 1_000_000))
            path = Path(folder) / f"test_big_{megabytes:g}mb.py"
            runs: list[tuple[str, list[str], Optional[dict[str, str]]]] = []
            for mode in options.mode:
                command = [sys.executable, "-m", "memsafe_fix", f"--{mode}", "-q", path.name]
                if against is not None:
                    runs.append((f"--{mode} ({options.against})", command, against))
                runs.append((f"--{mode}", command, None))
            if options.parse:
                runs.append(("ast.parse", [sys.executable, "-c", PARSE, path.name], None))
            for label, command, env in runs:
                path.write_text(source)  # ``--write`` changed it
                shutil.rmtree(path.parent / ".memsafe_fix_cache", ignore_errors=True)  # each run is a cold one
                cpu, wall, peak = measure(command, path.parent, env)
                print(
                    f"{megabytes:g} MB, {classes} classes, {label}: {cpu:.1f} CPU s, {wall:.1f} s, "
                    f"{peak:.0f} MiB, {cpu / megabytes:.2f} CPU s/MB",
                    flush=True,
                )


if __name__ == "__main__":
    main()
