"""The rules, one module each; ``ALL_RULES`` is in code order."""

from memsafe_fix.rules.async_patch import AsyncPatch
from memsafe_fix.rules.base import Context, Rule
from memsafe_fix.rules.function_gc import FunctionGc
from memsafe_fix.rules.gc_teardown import GcTeardown
from memsafe_fix.rules.performance_skip import PerformanceSkip
from memsafe_fix.rules.release_state import ReleaseState
from memsafe_fix.rules.xdist_group import XdistGroup

ALL_RULES: tuple[Rule, ...] = (
    XdistGroup(),
    GcTeardown(),
    PerformanceSkip(),
    AsyncPatch(),
    FunctionGc(),
    ReleaseState(),
)
RULES_BY_CODE = {rule.code: rule for rule in ALL_RULES}

__all__ = ["ALL_RULES", "RULES_BY_CODE", "Context", "Rule"]
