"""MSF003 performance-skip.

## What it does
Adds `@pytest.mark.skipif(os.getenv("PYTEST_XDIST_WORKER") is not None, reason="...")` to
tests marked `performance` (the `performance-markers` setting), wherever the marker is applied:
a test function or method decorator, a class decorator, a class `pytestmark` or the module
`pytestmark`. The skip is added at the same level as the marker.

## Why
A timing test measures one process; on a busy xdist worker its numbers are noise and its
allocations add to the worker's peak memory. `PYTEST_XDIST_WORKER` is set only inside xdist
workers, so the tests still run in a plain `pytest` (or `pytest -n 0`) run.

An existing `skipif` whose condition mentions `PYTEST_XDIST_WORKER` in any form
(`os.getenv`, `os.environ.get`, `"PYTEST_XDIST_WORKER" in os.environ`, a variable holding the
condition or the marker) counts as present, at the test's level or any enclosing level.

## Example
```python
@pytest.mark.performance
def test_bulk_import():
    ...
```
becomes
```python
@pytest.mark.performance
@pytest.mark.skipif(os.getenv("PYTEST_XDIST_WORKER") is not None, reason="...")
def test_bulk_import():
    ...
```

## Fix safety
Safe for plain `pytest` runs (nothing changes there); under xdist the marked tests are skipped,
which is the point. A `pytestmark` that is not a marker or a list/tuple of markers is reported
without a fix.
"""

from __future__ import annotations

import ast
from typing import Iterator, Optional

from memsafe_fix.analysis.collection import matches_prefix_or_glob
from memsafe_fix.analysis.markers import XDIST_WORKER_VARIABLE, is_xdist_skip, marker_name, pytestmark_assignment
from memsafe_fix.analysis.module import Def
from memsafe_fix.edits import ExtendPytestmark, Finding, Fix, InsertDecorator
from memsafe_fix.rules.base import Context, Rule


class PerformanceSkip(Rule):
    code = "MSF003"
    name = "performance-skip"
    valid = (
        "import os\n\nimport pytest\n\n\n@pytest.mark.performance\n"
        '@pytest.mark.skipif("PYTEST_XDIST_WORKER" in os.environ, reason="serial only")\n'
        "def test_speed():\n    pass\n",
    )
    invalid = (
        (
            "import pytest\n\n\n@pytest.mark.performance\ndef test_speed():\n    pass\n",
            "import os\n\nimport pytest\n\n\n@pytest.mark.performance\n"
            "@pytest.mark.skipif(\n"
            '    os.getenv("PYTEST_XDIST_WORKER") is not None,\n'
            '    reason="timing is unreliable on pytest-xdist workers; run without -n",\n'
            ")\n"
            "def test_speed():\n    pass\n",
        ),
    )

    def check(self, context: Context) -> Iterator[Finding]:
        module = context.module
        module_mark = pytestmark_assignment(module.tree.body)
        covered = False
        if module_mark is not None:
            covered, finding = self._check_pytestmark(context, module_mark, None)
            if finding:
                yield finding
        if not covered:
            for top in module.top_level:
                yield from self._check_def(context, top)

    def _skip_marker(self, context: Context, scope: Optional[Def]) -> tuple[str, tuple[str, ...]]:
        """The ``skipif`` marker's code (wrapped to fit when it decorates ``scope``) and imports."""
        skipif, pytest_imports = context.spell("pytest.mark.skipif")
        getenv, os_imports = context.spell("os.getenv")
        args = [
            f"{getenv}({context.string(XDIST_WORKER_VARIABLE)}) is not None",
            f"reason={context.string(context.settings.skip_reason)}",
        ]
        code = context.call_code(scope, skipif, args) if scope else f"{skipif}({', '.join(args)})"
        return code, tuple(dict.fromkeys(pytest_imports + os_imports))

    def _is_perf(self, mark: ast.expr, context: Context) -> bool:
        return marker_name(mark, context.module) in context.settings.performance_markers

    def _check_pytestmark(
        self, context: Context, assignment: ast.Assign, scope: Optional[Def]
    ) -> tuple[bool, Optional[Finding]]:
        """Whether a ``pytestmark`` covers its tests' xdist skip, and the finding if it should."""
        value = assignment.value
        marks = list(value.elts) if isinstance(value, (ast.List, ast.Tuple)) else [value]
        if any(is_xdist_skip(m, context.module) for m in marks):
            return True, None
        if not any(self._is_perf(m, context) for m in marks):
            return False, None
        if context.module.suppressed(self.code, iter(range(assignment.lineno, assignment.end_lineno + 1))):
            return True, None
        fix = None
        # pytest takes a marker or a list of them (a tuple is an error there).
        if isinstance(value, (ast.List, ast.Attribute, ast.Call)):
            skip, imports = self._skip_marker(context, None)
            fix = Fix((ExtendPytestmark(scope.index if scope else None, skip),), imports)
        message = "`pytestmark` marks tests as performance tests but does not skip them under pytest-xdist"
        return fix is not None, context.finding(self.code, assignment, message, fix)

    def _check_def(self, context: Context, scope: Def) -> Iterator[Finding]:
        module = context.module
        decorators = scope.node.decorator_list
        if any(is_xdist_skip(d, module) for d in decorators):
            return
        if scope.is_class:
            if scope.index not in context.test_class_indexes:
                return
        elif not matches_prefix_or_glob(scope.name, context.settings.python_functions) or context.is_conftest:
            return
        perf = next((i for i, d in enumerate(decorators) if self._is_perf(d, context)), None)
        if perf is not None:
            if not context.suppressed(self.code, scope):
                skip, imports = self._skip_marker(context, scope)
                fix = Fix((InsertDecorator(scope.index, perf + 1, skip),), imports)
                kind = "test class" if scope.is_class else "test"
                message = f"performance {kind} `{scope.name}` is not skipped under pytest-xdist"
                yield context.finding(self.code, scope.node, message, fix)
            return
        if scope.is_class:
            class_mark = pytestmark_assignment(scope.node.body)
            if class_mark is not None:
                covered, finding = self._check_pytestmark(context, class_mark, scope)
                if finding:
                    yield finding
                if covered:
                    return
            for child in scope.children:
                yield from self._check_def(context, child)
