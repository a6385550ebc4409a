"""python/cpython#106905 in isolation, on each Python given (default: the one running this):

    .venv/bin/python benchmarks/ast_gc_bug.py ~/.pyenv/versions/3.1*/bin/python

Garbage whose finalizer calls ``ast.parse`` (as every traceback formatted on 3.11 does, for its
``^^^`` markers: asyncio logging a never-retrieved task exception from a finalizer, for one) is
collected while a large ``ast.parse`` builds its tree. CPython 3.11.0-3.11.7 keep the AST
constructor's depth counter in global state, so the outer parse raises ``SystemError: AST
constructor recursion depth mismatch``; 3.11.8 and 3.12.2 fixed it, 3.12.0 and 3.12.1 collect
only between bytecodes, and 3.10 has no such check. Prints, per Python, how many of 20 parses
failed, without and with the pytest-memsafe guard (automatic collection paused inside
``ast.parse``; the same few lines as ``pytest_memsafe.guard_ast_parse``, inlined so that any
Python can run it).
"""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import ast, gc, sys

class ParsesWhenFreed:
    def __init__(self):
        self.cycle = self  # only the cyclic collector frees it
    def __del__(self):
        ast.parse("a + b")

def guarded(source):
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if enabled:
            gc.enable()

source = "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(2000))
counts = []
for parse in (ast.parse, guarded):
    failed = 0
    for _ in range(20):
        for _ in range(50):
            ParsesWhenFreed()
        try:
            parse(source)
        except SystemError:
            failed += 1
    counts.append(failed)
print(sys.version.split()[0], *counts)
"""


def main() -> None:
    pythons = sys.argv[1:] or [sys.executable]
    print("| Python | ast.parse failures of 20 | with collection paused inside ast.parse |")
    print("|---|---|---|")
    for python in pythons:
        completed = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=300)
        version, plain, guarded = (completed.stdout.split() + ["?", "?", "?"])[:3]
        print(f"| {version} | {plain} | {guarded} |")


if __name__ == "__main__":
    main()
