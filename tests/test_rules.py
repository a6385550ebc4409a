"""Each rule's own documentation and examples (Fixit style): the docstring has the sections
the README links to, valid examples produce no finding, invalid ones are fixed as shown."""

from __future__ import annotations

import re
import sys
from dataclasses import replace

import pytest

from memsafe_fix.config import Settings
from memsafe_fix.engine import check_source, fix_source
from memsafe_fix.rules import ALL_RULES, Rule
from memsafe_fix.rules.xdist_group import _class_lines

SECTIONS = ("## What it does", "## Why", "## Example", "## Fix safety")


def only(rule: Rule) -> Settings:
    return replace(Settings(), select=(rule.code,))


def test_codes_and_names_are_unique() -> None:
    assert len({r.code for r in ALL_RULES}) == len({r.name for r in ALL_RULES}) == len(ALL_RULES)


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_documentation_sections(rule: Rule) -> None:
    doc = sys.modules[type(rule).__module__].__doc__ or ""
    assert doc.startswith(f"{rule.code} {rule.name}.")
    for section in SECTIONS:
        assert section in doc


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_valid_examples(rule: Rule) -> None:
    assert rule.valid
    for source in rule.valid:
        assert check_source(source, only(rule), "test_example") == []


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.code)
def test_invalid_examples(rule: Rule) -> None:
    assert rule.invalid
    for before, after in rule.invalid:
        fixed, findings, _ = fix_source(before, only(rule), "test_example")
        assert fixed == after
        assert {f.code for f in findings} == {rule.code}
        assert fix_source(after, only(rule), "test_example")[0] == after


def test_class_lines_are_the_lines_starting_with_class() -> None:
    # shared_group_names searches for the keyword rather than a multi-line ``^``: the same lines.
    text = (
        "class A(B): pass\n\tclass  TestC(unittest.TestCase):\n  # class D\nsubclass E\nx = 1; class F\n"
        "    class G\r\nclass\tH: class I\nsubclassclass J\nclass\nclass K"
    )
    multi_line = re.compile(r"^[ \t]*class[ \t]+(\w+)(.*)", re.MULTILINE)
    assert list(_class_lines(text)) == multi_line.findall(text)
    assert [name for name, _ in _class_lines(text)] == ["A", "TestC", "G", "H", "K"]
