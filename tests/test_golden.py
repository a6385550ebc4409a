"""Golden fixtures: ``tests/fixtures/<rule>/<case>/input.py`` must become ``expected.py``
(byte for byte), report ``findings.txt``, compile, and be left alone by a second run.

Regenerate after an intended change with ``MEMSAFE_UPDATE_GOLDEN=1 pytest tests/test_golden.py``
and review the diff like any other code change.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from memsafe_fix.config import PYTEST_COLLECTION_OPTIONS, Settings, _ini_list, _memsafe_values
from memsafe_fix.engine import check_source, fix_source, read_source
from memsafe_fix.report import format_finding

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(p.parent for p in FIXTURES.glob("*/*/input.py"))
UPDATE = os.environ.get("MEMSAFE_UPDATE_GOLDEN") == "1"
# Modules the fixture files import as the project's own.
FIRST_PARTY = frozenset({"app", "shop", "myproject", "tests"})


def case_settings(case: Path) -> Settings:
    settings_file = case / "settings.toml"
    table = tomllib.loads(settings_file.read_text()) if settings_file.exists() else {}
    pytest_options = {k: _ini_list(table.pop(k)) for k in PYTEST_COLLECTION_OPTIONS if k in table}
    return replace(Settings(), **_memsafe_values(table, settings_file), **pytest_options)


def module_name(case: Path) -> str:
    return f"test_{case.name}"


def run_case(case: Path) -> tuple[bytes, str]:
    source, encoding = read_source((case / "input.py").read_bytes())
    settings = case_settings(case)
    # The file's path lets rules resolve the project modules it imports (async_patch/project).
    path = case / "input.py"
    findings = check_source(source, settings, module_name(case), path)
    new_source, _, _ = fix_source(source, settings, module_name(case), FIRST_PARTY, path)
    report = "".join(format_finding("input.py", f) + "\n" for f in findings)
    return new_source.encode(encoding), report


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden(case: Path) -> None:
    output, report = run_case(case)
    if UPDATE:
        (case / "expected.py").write_bytes(output)
        (case / "findings.txt").write_text(report)
    assert output == (case / "expected.py").read_bytes()
    assert report == (case / "findings.txt").read_text()


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_expected_compiles_and_is_stable(case: Path) -> None:
    expected = (case / "expected.py").read_bytes()
    compile(expected, str(case / "expected.py"), "exec", dont_inherit=True)
    source, _ = read_source(expected)
    settings = case_settings(case)
    again, fixed, remaining = fix_source(source, settings, module_name(case), FIRST_PARTY, case / "expected.py")
    assert again == source
    assert fixed == [] and not any(f.fixable for f in remaining)


def test_every_rule_has_fixtures() -> None:
    from memsafe_fix.rules import ALL_RULES

    folders = {p.parent.name for p in CASES}
    assert {rule.name.replace("-", "_") for rule in ALL_RULES} <= folders
