"""Findings and the edits that fix them.

Rules find problems with ``ast`` and describe fixes as edits addressed by *definition index*:
the position of a ``class``/``def`` statement among all of them in source order, which is the
same whether the file is walked by ``ast`` or by LibCST. Only a file with edits is parsed by
LibCST (see ``fixer.py``; only the top-level statements the edits touch), with every rule's
edits applied in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union


@dataclass(frozen=True)
class InsertDecorator:
    """Insert ``code`` (an expression) as a decorator at ``position`` in the decorator list."""

    target: int
    position: int
    code: str


@dataclass(frozen=True)
class AppendStatements:
    """Append statements to the end of a function body (before a trailing ``return``, and
    before a trailing call of ``before``, such as ``gc.collect``); a body that is only ``pass``
    or ``...`` is replaced."""

    target: int
    code: str
    before: Optional[str] = None


@dataclass(frozen=True)
class InsertMethod:
    """Insert a method into a class: after the method with definition index ``after``, or,
    when ``after`` is None, after the leading docstring and class attributes."""

    target: int
    after: Optional[int]
    code: str


@dataclass(frozen=True)
class ExtendPytestmark:
    """Add ``code`` to the ``pytestmark`` assigned in a class (``target``) or the module (None)."""

    target: Optional[int]
    code: str


@dataclass(frozen=True)
class InsertModuleStatement:
    """Insert a top-level statement after the module's leading imports."""

    code: str


@dataclass(frozen=True)
class AppendToPytestOption:
    """Project-level rules: append ``values`` to the pytest option ``key`` (``addopts``,
    ``markers``) in a TOML pytest configuration, creating the option (and the
    ``[tool.pytest.ini_options]`` table) when it is missing. Applied by ``doctor.py``."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class AddArgument:
    """Append ``code`` (``name=value``) to the arguments of the call with *call index*
    ``call``: its position among all calls in the file, ordered by where they start (an outer
    call before the calls inside it). ``callee`` is the called expression, to verify it."""

    call: int
    callee: str
    code: str


@dataclass(frozen=True)
class ReplaceCallee:
    """Call ``code`` instead of ``callee`` in the call with call index ``call``."""

    call: int
    callee: str
    code: str


@dataclass(frozen=True)
class ImportName:
    """Add ``name`` to the first top-level ``from module import ...`` statement."""

    module: str
    name: str


Edit = Union[
    InsertDecorator,
    AppendStatements,
    InsertMethod,
    ExtendPytestmark,
    InsertModuleStatement,
    AddArgument,
    ReplaceCallee,
    ImportName,
    AppendToPytestOption,
]


@dataclass(frozen=True)
class Fix:
    edits: tuple[Edit, ...]
    # Modules (``gc``, ``os``, ``pytest``) that must be imported for the edits' code to run.
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    code: str
    line: int
    col: int
    message: str
    fix: Optional[Fix] = field(default=None, compare=False)

    @property
    def fixable(self) -> bool:
        return self.fix is not None


class FixError(Exception):
    """The planned edits do not match the file (a bug in memsafe-fix, never the user's)."""


class LossySource(Exception):
    """LibCST cannot write this file back byte for byte (a form feed at the start of a
    statement's line): fixing it would lose bytes, so it is left alone."""

    def __init__(self, line: int) -> None:
        super().__init__(f"LibCST cannot write line {line} back byte for byte (a form feed at its start?)")
        self.line = line
