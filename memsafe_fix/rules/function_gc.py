"""MSF005 function-gc.

## What it does
For module-level test functions that use mocks, and yield fixtures that create mocks, adds a
`gc.collect()` call, as set by `function-gc`:
- `inline` (default): at the end of the test body (before a trailing `return`), and after the
  `yield` of the fixture (at the end of its body);
- `fixture`: one module-level autouse fixture instead, which also runs when a test fails:
  ```python
  @pytest.fixture(autouse=True)
  def _memsafe_gc_collect():
      yield
      gc.collect()
  ```
- `off`: the rule does nothing.

## Why
This is the seed pattern's variation for function tests. Measured honestly: mocks held in a
test's locals are freed by Python's normal cyclic garbage collector anyway, so a per-test
`gc.collect()` lowers peak memory only a little and costs time on every test. Set
`function-gc = "off"` if your suite does not need it.

## Example
```python
def test_send(mocker):
    client = mocker.patch("app.client")
    send()
```
becomes
```python
def test_send(mocker):
    client = mocker.patch("app.client")
    send()
    gc.collect()
```

## Fix safety
Safe: it only adds a collection. An inline call is skipped when the test fails or returns early;
use `fixture` mode if that matters.
"""

from __future__ import annotations

from typing import Iterator

from memsafe_fix.analysis.collection import has_own_yield, is_fixture, is_test_function
from memsafe_fix.analysis.module import Def
from memsafe_fix.edits import AppendStatements, Finding, Fix, InsertModuleStatement
from memsafe_fix.rules.base import GC_COLLECT, Context, Rule

GC_FIXTURE_NAME = "_memsafe_gc_collect"


class FunctionGc(Rule):
    code = "MSF005"
    name = "function-gc"
    valid = (
        "import gc\nfrom unittest.mock import MagicMock\n\n\ndef test_a():\n    MagicMock()\n    gc.collect()\n",
        "def test_plain():\n    assert 1 + 1 == 2\n",
    )
    invalid = (
        (
            "from unittest.mock import MagicMock\n\n\ndef test_a():\n    MagicMock()\n",
            "import gc\nfrom unittest.mock import MagicMock\n\n\ndef test_a():\n    MagicMock()\n    gc.collect(1)\n",
        ),
    )

    def check(self, context: Context) -> Iterator[Finding]:
        mode = context.settings.function_gc
        if mode == "off":
            return
        targets = [d for d in context.module.top_level if self._needs_collect(context, d)]
        if not targets:
            return
        collect, gc_imports = context.collect_call()
        if mode == "inline":
            for func in targets:
                kind = "fixture" if is_fixture(func, context.module) else "test"
                fix = Fix((AppendStatements(func.index, f"{collect}\n"),), gc_imports)
                yield context.finding(
                    self.code, func.node, f"{kind} `{func.name}` uses mocks but does not call `gc.collect()`", fix
                )
            return
        if any(self._is_gc_fixture(context, d) for d in context.module.top_level):
            return
        fixture, pytest_imports = context.spell("pytest.fixture")
        code = f"@{fixture}(autouse=True)\ndef {GC_FIXTURE_NAME}():\n    yield\n    {collect}\n"
        fix = Fix((InsertModuleStatement(code),), tuple(dict.fromkeys(gc_imports + pytest_imports)))
        message = f"module has tests that use mocks (first: `{targets[0].name}`) but no autouse fixture calling `gc.collect()`"
        yield context.finding(self.code, targets[0].node, message, fix)

    def _needs_collect(self, context: Context, func: Def) -> bool:
        if func.is_class or context.suppressed(self.code, func):
            return False
        is_test = not context.is_conftest and is_test_function(func, context.module)
        yield_fixture = is_fixture(func, context.module) and has_own_yield(func) and func.name != GC_FIXTURE_NAME
        return (
            (is_test or yield_fixture)
            and context.mocks.uses_mocks(func.node)
            and not context.calls(func.node, GC_COLLECT)
        )

    def _is_gc_fixture(self, context: Context, func: Def) -> bool:
        return (
            not func.is_class
            and is_fixture(func, context.module)
            and context.calls(func.node, GC_COLLECT)
            and (
                func.name == GC_FIXTURE_NAME
                or "autouse" in {k.arg for d in func.node.decorator_list for k in getattr(d, "keywords", ())}
            )
        )
