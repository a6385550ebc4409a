"""The rules, one module each; ``ALL_RULES`` is in code order."""

from memsafe_fix.rules.base import Context, Rule
from memsafe_fix.rules.function_gc import FunctionGc
from memsafe_fix.rules.gc_teardown import GcTeardown
from memsafe_fix.rules.performance_skip import PerformanceSkip
from memsafe_fix.rules.xdist_group import XdistGroup

ALL_RULES: tuple[Rule, ...] = (XdistGroup(), GcTeardown(), PerformanceSkip(), FunctionGc())
RULES_BY_CODE = {rule.code: rule for rule in ALL_RULES}
# Code -> name of every rule, for reports.
RULE_NAMES = {rule.code: rule.name for rule in ALL_RULES}

__all__ = ["ALL_RULES", "RULES_BY_CODE", "RULE_NAMES", "Context", "Rule"]
