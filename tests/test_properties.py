"""Property tests, bounded for CI (a few seconds): on any valid Python module (hypothesmith)
and on generated mock-using test modules (``mock_modules.py``), the fixer either refuses the
file with a clear error or returns code that compiles and that a second run leaves unchanged.
``benchmarks/fuzz.py`` runs the same checks on thousands of modules, and runs a sample of them
under pytest before and after ``--write``."""

from __future__ import annotations

import random

import hypothesmith
import libcst as cst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mock_modules import mock_module

from memsafe_fix.config import Settings
from memsafe_fix.engine import fix_source
from memsafe_fix.fixer import LossySource

# Generating arbitrary Python (hypothesmith) costs about a second a module; mock modules, little.
ANY_MODULE = settings(
    max_examples=5, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
MOCK_MODULES = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
# What a file can be refused for: bad input (LibCST and ast disagree on a few exotic
# constructs), or bytes LibCST cannot write back. Never a FixError (a bug in memsafe-fix).
REFUSED = (SyntaxError, ValueError, cst.ParserSyntaxError, LossySource)


def fixes_cleanly(source: str) -> None:
    try:
        fixed, _, _ = fix_source(source, Settings(), "test_generated")
    except REFUSED:
        return
    compile(fixed, "test_generated", "exec", dont_inherit=True)
    assert fix_source(fixed, Settings(), "test_generated")[0] == fixed


@ANY_MODULE
@given(hypothesmith.from_node())
def test_any_module(source: str) -> None:
    fixes_cleanly(source)


@MOCK_MODULES
@given(st.randoms(use_true_random=False))
def test_mock_using_test_modules(rng: random.Random) -> None:
    source = mock_module(rng)
    compile(source, "test_generated", "exec", dont_inherit=True)  # the generator makes valid modules
    fixed, fixed_findings, _ = fix_source(source, Settings(), "test_generated")
    assert fixed_findings  # every generated module uses mocks in a test class or function
    compile(fixed, "test_generated", "exec", dont_inherit=True)
    assert fix_source(fixed, Settings(), "test_generated")[0] == fixed
