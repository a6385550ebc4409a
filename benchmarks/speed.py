"""Time memsafe-fix on a generated suite: clean files (ast only) versus files it rewrites.

    .venv/bin/python benchmarks/speed.py [--files 400]

Prints wall-clock seconds for `--check` and `--diff` over plain files (no mock or marker: not
analysed), clean files with markers, and mock-heavy files (``big_file.py``'s class template), and
the cost of a bare `ast.parse` and `libcst.parse_module` of one file for comparison. One big
file instead of many: ``big_file.py``.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libcst
from big_file import CLASS, HEADER  # this folder is on sys.path when run as a script

CLEAN = """\
import pytest


class TestMath{i}:
    @pytest.mark.parametrize("n", range(5))
    def test_square(self, n):
        assert n * n >= 0

    def test_sum(self):
        assert sum(range({i})) >= 0
"""
# No mock, marker or nested class: the engine's pre-filter skips the analysis (only ast.parse).
PLAIN = """\
import os


class TestPaths{i}:
    def test_join(self):
        assert os.path.join("a", "{i}") == "a/{i}"

    def test_sum(self):
        assert sum(range({i})) >= 0
"""
# Mock-using classes, as ``big_file.py`` repeats them, and a performance test.
DIRTY = (
    HEADER
    + CLASS
    + """

@pytest.mark.performance
def test_speed_{i}():
    assert True
"""
)


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True)
    return time.perf_counter() - start


def per_call(function, argument, repeat: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        function(argument)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=400)
    files = parser.parse_args().files
    tool = [sys.executable, "-m", "memsafe_fix"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind, template in (("plain", PLAIN), ("clean", CLEAN), ("dirty", DIRTY)):
            (root / kind).mkdir()
            for i in range(files):
                (root / kind / f"test_{i:05}.py").write_text(template.format(i=i))
        print(f"{files} files each; wall-clock seconds (including interpreter start-up)")
        for kind in ("plain", "clean", "dirty"):
            for mode in ("--check", "--diff"):
                print(f"  {kind:5} {mode:8} {timed([*tool, mode, kind], root):6.2f}")
        source = DIRTY.format(i=1)
        print(
            f"one file: ast.parse {per_call(ast.parse, source) * 1e3:.2f} ms, "
            f"libcst.parse_module {per_call(libcst.parse_module, source, 20) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
