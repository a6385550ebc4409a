"""Time and peak memory of ``memsafe-fix --check`` on one generated test file per size: every
analysis must stay linear in the file's size.

    .venv/bin/python benchmarks/big_file.py [--megabytes 1 10] [--mode check]

Each file is mock-using test classes (``setup_method`` state, a ``patch`` decorator) repeated
to the size asked for; 10 MB is about 28,000 classes. Target for 10 MB with ``--check``: under
10 s and under 300 MB. Prints, per size: classes, seconds, peak MiB, and seconds per MB.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def generate(size: int) -> tuple[str, int]:
    parts, length, count = [HEADER], len(HEADER), 0
    while length < size:
        part = CLASS.format(i=count)
        parts.append(part)
        length += len(part)
        count += 1
    return "".join(parts), count


def measure(path: Path, mode: str) -> tuple[float, float]:
    """(wall seconds, peak MiB) of one ``memsafe-fix`` run in its own process."""
    command = [sys.executable, "-m", "memsafe_fix"]
    start = time.perf_counter()
    subprocess.run([*command, f"--{mode}", "-q", path.name], cwd=path.parent, capture_output=True)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--mode", choices=["check", "diff", "write"], default="check")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in options.megabytes:
            source, classes = generate(int(megabytes * 1_000_000))
            path = Path(folder) / f"test_big_{megabytes:g}mb.py"
            path.write_text(source)
            seconds, peak = measure(path, options.mode)
            # ru_maxrss of children is the largest child so far: sizes go up, so it is this run's.
            print(
                f"{megabytes:g} MB ({classes} classes), --{options.mode}: {seconds:.1f} s, "
                f"peak {peak:.0f} MiB, {seconds / megabytes:.2f} s/MB"
            )


if __name__ == "__main__":
    main()
