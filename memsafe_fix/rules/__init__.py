"""The rules, one module each; ``ALL_RULES`` (per file) and ``PROJECT_RULES`` (per pytest
configuration, run by ``doctor.py``) are in code order."""

from memsafe_fix.rules.ast_gc import AstGc
from memsafe_fix.rules.async_patch import AsyncPatch
from memsafe_fix.rules.base import Context, ProjectRule, Rule
from memsafe_fix.rules.dist_loadgroup import DistLoadgroup
from memsafe_fix.rules.function_gc import FunctionGc
from memsafe_fix.rules.gc_teardown import GcTeardown
from memsafe_fix.rules.lost_groups import LostGroups
from memsafe_fix.rules.performance_skip import PerformanceSkip
from memsafe_fix.rules.release_state import ReleaseState
from memsafe_fix.rules.strict_markers import StrictMarkers
from memsafe_fix.rules.xdist_group import XdistGroup

ALL_RULES: tuple[Rule, ...] = (
    XdistGroup(),
    GcTeardown(),
    PerformanceSkip(),
    AsyncPatch(),
    FunctionGc(),
    ReleaseState(),
)
PROJECT_RULES: tuple[ProjectRule, ...] = (DistLoadgroup(), StrictMarkers(), LostGroups(), AstGc())
RULES_BY_CODE = {rule.code: rule for rule in ALL_RULES}
# Code -> name of every rule, for reports.
RULE_NAMES = {rule.code: rule.name for rule in (*ALL_RULES, *PROJECT_RULES)}

__all__ = ["ALL_RULES", "PROJECT_RULES", "RULES_BY_CODE", "RULE_NAMES", "Context", "ProjectRule", "Rule"]
