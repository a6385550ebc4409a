"""MSF013 ast-gc.

## What it does
A project-level check of the Python the tests run on. When this run adds (or, with `--check`,
would add) garbage collections to the project's test files (MSF002, MSF005), that Python is
CPython 3.11.0 to 3.11.7, and the pytest-memsafe plugin is not installed there, it reports once,
at the pytest configuration file (the `addopts` line, else the section header, else line 1),
without a fix.

The environment is MSF012's: the project's virtualenv (`.venv`, `venv`, `$VIRTUAL_ENV`), whose
Python version is read from its `pyvenv.cfg`, else the Python memsafe-fix runs on. Nothing in it
is run.

Turn it off with `ignore` or `per-file-ignores` (`"pyproject.toml" = ["MSF013"]`).

## Why
CPython 3.11.0 to 3.11.7 keep the AST constructor's recursion-depth counter in global state
(python/cpython#106905, fixed in 3.11.8). When a garbage collection starts while `ast.parse`
builds its tree and runs a finalizer that parses too, the outer `ast.parse` raises
`SystemError: AST constructor recursion depth mismatch`. In 3.11 every formatted traceback parses
its source lines (for the `^^^` markers), so asyncio logging a task's never-retrieved exception
from a finalizer is enough, and pytest parses a test's whole file to show its failure: the
error then comes out of pytest itself, and under xdist the worker that ran the test goes down
with the rest of its tests. Which collection lands inside which parse depends on every
allocation before it, so any change to the suite can make it appear or vanish; the collections
the pattern adds after each test are such a change. Measured on a2a-python (an asyncio suite
with `xfail` tests, `-n 2`, Python 3.11.7): with its `xdist_group`s spread over the workers or
`--dist load`, a worker stopped the run in 5 of 6 runs of the rewritten suite and in none of 8
runs of the original (README, Known issues). The ways out: Python 3.11.8 or newer, or pytest-memsafe in the test environment (on
these releases it pauses the automatic collection while `ast.parse` runs, which removes the
bug's trigger).

## Example
`.venv` is a Python 3.11.7 virtualenv without pytest-memsafe, and MSF002 adds teardowns:
```
pyproject.toml:2:1: MSF013 the tests run on CPython 3.11.7 (`.venv/...`), whose ast.parse can fail ...
```

## Fix safety
No fix: which Python to run or which package to install is the project's choice.
"""

from __future__ import annotations

import re
from typing import Iterator

from memsafe_fix.analysis.pytest_config import Project
from memsafe_fix.edits import Finding
from memsafe_fix.rules.base import ProjectRule

PLUGIN = "pytest-memsafe"
FIXED_IN = (3, 11, 8)


def has_ast_gc_bug(version: str, implementation: str = "cpython") -> bool:
    """CPython 3.11.0 to 3.11.7 (python/cpython#106905)."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    return implementation == "cpython" and len(numbers) == 3 and (3, 11, 0) <= numbers < FIXED_IN


class AstGc(ProjectRule):
    code = "MSF013"
    name = "ast-gc"

    def check(self, project: Project) -> Iterator[Finding]:
        environment = project.environment
        python = environment.python
        if not project.adds_collections or python is None or environment.version(PLUGIN) is not None:
            return
        if not has_ast_gc_bug(python, environment.implementation or "cpython"):
            return
        message = (
            f"the tests run on CPython {python} ({environment.where}), whose ast.parse fails with `SystemError: AST "
            "constructor recursion depth mismatch` when a garbage collection inside it runs a finalizer that parses "
            "too (CPython bug gh-106905, fixed in 3.11.8): pytest parses test files to show failures, so an xdist "
            "worker can crash, and the collections added after each test change where collections run. Upgrade to "
            f"Python 3.11.8 or newer, or install {PLUGIN} in the test environment (it pauses collection inside "
            "ast.parse)"
        )
        yield self.finding(project, project.position("addopts"), message, None)
