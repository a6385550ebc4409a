"""The fixer's spliced path (LibCST parses only the top-level statements the edits touch, see
``fixer._apply_spliced``) gives the same text as parsing the whole file, or declines (None) and
leaves the file to the whole-file path: on every golden fixture input, on generated mock-using
modules, and on layouts made to trip the splice (comments owned by nested blocks, ``;``,
``@(`` decorators, line endings, indentation)."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Optional, Union

import libcst as cst
import pytest
from mock_modules import mock_module
from test_golden import CASES, FIRST_PARTY, case_settings, module_name

from memsafe_fix.analysis.module import ModuleAnalysis
from memsafe_fix.config import Settings
from memsafe_fix.engine import _check, fix_source, read_source
from memsafe_fix.fixer import _apply_spliced, _default_indent, apply_fixes


def both_paths(
    source: str, settings: Settings, name: str = "test_generated", path: Optional[Path] = None
) -> tuple[Union[str, Exception], Union[str, Exception, None]]:
    """(whole-file result, spliced result or None when the splice declines); an exception
    raised stands for the result."""
    module = ModuleAnalysis(source, settings, name, path)
    fixes = [finding.fix for finding in _check(module) if finding.fix is not None]
    assert fixes, "a case must have something to fix"
    names = [d.name for d in module.defs]
    nodes = [d.node for d in module.defs]
    results: list[Union[str, Exception, None]] = []
    for run in (
        lambda: apply_fixes(source, fixes, names, FIRST_PARTY),
        lambda: _apply_spliced(source, fixes, names, FIRST_PARTY, module.tree, nodes),
    ):
        try:
            results.append(run())
        except Exception as exc:  # compared below
            results.append(exc)
    whole, spliced = results
    assert whole is not None
    return whole, spliced


def assert_same(whole: Union[str, Exception], spliced: Union[str, Exception, None]) -> None:
    if isinstance(whole, Exception):
        # A file the whole-file path refuses is never fixed by a slice: apply_fixes falls back.
        assert not isinstance(spliced, str), f"whole-file path raised {whole!r}, the splice did not"
    elif isinstance(spliced, str):
        assert spliced == whole


FIXTURE_CASES = [case for case in CASES if (case / "expected.py").read_bytes() != (case / "input.py").read_bytes()]


@pytest.mark.parametrize("case", FIXTURE_CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_inputs_splice_to_the_same_text(case: Path) -> None:
    source, _ = read_source((case / "input.py").read_bytes())
    whole, spliced = both_paths(source, case_settings(case), module_name(case), case / "input.py")
    assert_same(whole, spliced)


def test_most_golden_inputs_take_the_spliced_path() -> None:
    spliced = 0
    for case in FIXTURE_CASES:
        source, _ = read_source((case / "input.py").read_bytes())
        spliced += isinstance(both_paths(source, case_settings(case), module_name(case), case / "input.py")[1], str)
    assert spliced >= len(FIXTURE_CASES) - 3  # CRLF, lone-CR and form-feed inputs fall back


def test_generated_modules_splice_to_the_same_text() -> None:
    spliced = 0
    for seed in range(60):
        whole, result = both_paths(mock_module(random.Random(seed)), Settings())
        assert_same(whole, result)
        spliced += isinstance(result, str)
    # Those whose tests are indented unlike the helper class at their top fall back.
    assert spliced >= 30


HEADER = """\
import gc
from unittest import mock

import pytest

"""

# name -> (source, whether the splice takes it)
LAYOUTS = {
    # Comments after a nested block are owned by it: the teardown line goes after them.
    "footer_comments": (
        """\
        class TestA:
            def test_a(self):
                with mock.patch("os.getcwd") as m:
                    m()
                    # inner comment

                # outer comment
        # column 0 comment

        x = 1
        """,
        True,
    ),
    "semicolon_after": (
        """\
        def test_a():
            m = mock.Mock()
            m()
        x = 1; y = 2
        """,
        True,
    ),
    "class_shares_line": (
        """\
        x = 1
        class TestA: a = mock.Mock(); b = 2
        """,
        True,
    ),
    "parenthesized_decorator": (
        """\
        @(
            pytest.mark.slow
        )
        class TestA:
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        False,
    ),
    "comments_between_decorators": (
        """\
        # leading comment
        @pytest.mark.slow  # why
        # between
        @pytest.mark.other
        # before class
        class TestA(
            object,  # base
        ):  # header comment
            # body comment

            '''Doc.'''
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        True,
    ),
    "decorated_first_method": (
        """\
        class TestA:
            @pytest.mark.slow
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        True,
    ),
    "header_string_with_hash_line": (
        '''\
        def meta(*args):
            return type(*args)


        class TestA(metaclass=meta("""
        # not a comment
        """ and type)):
            def test_a(self):
                m = mock.Mock()
                m()
        ''',
        True,
    ),
    "two_space_first_block": (
        """\
        if True:
          VALUE = 1


        class TestA:
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        False,
    ),
    # The statement after the imports gets blank lines above it (and here a decorator): the
    # file's head is sliced up to the end of its header.
    "imports_then_decorated_class": (
        """\
        from unittest import mock
        # about the class

        class TestA(object):  # header comment
            # body comment
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        True,
    ),
    "imports_then_untouched_class": (
        """\
        from unittest import mock
        class Helper:
            '''Doc.'''
            value = 1
        def test_a():
            m = mock.Mock()
            m()
        """,
        True,
    ),
    # The statement after the imports (which gets blank lines) shares its line with another.
    "head_shares_line": (
        """\
        from unittest import mock
        x = 1; y = 2
        def test_a():
            m = mock.Mock()
            m()
        """,
        False,
    ),
    "backslash_at_end": (
        """\
        def test_a():
            m = mock.Mock()
            m() \\

        x = 1
        """,
        False,
    ),
    "no_trailing_newline": (
        """\
        def test_a():
            m = mock.Mock()
            m()""",
        True,
    ),
    "docstring_and_future": (
        """\
        '''Module doc.'''
        from __future__ import annotations
        import os
        from unittest import mock
        def test_a():
            m = mock.Mock()
            m()
        """,
        True,
    ),
    # Test classes inside top-level blocks: the whole block is the slice.
    "class_in_type_checking_else": (
        """\
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            pass
        else:
            class TestA:
                def test_a(self):
                    m = mock.Mock()
                    m()
        """,
        True,
    ),
    "class_in_try": (
        """\
        try:
            class TestA:
                def test_a(self):
                    m = mock.Mock()
                    m()
        except Exception:
            pass
        """,
        True,
    ),
    "nested_classes": (
        """\
        class TestA:
            class TestB:
                def test_b(self):
                    m = mock.Mock()
                    m()
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        True,
    ),
    # ``ast`` gives the names NFKC-normalized (``Test``), LibCST as written (``Te\ufb06``).
    "nfkc_names": (
        """\
        class Te\ufb06:
            def test_\ufb01(self):
                m = mock.Mock()
                m()
        def test_b():
            m = mock.Mock()
            m()
        """,
        True,
    ),
    # Its first block is indented with four spaces, this one with a tab after them.
    "mixed_indentation": (
        """\
        class TestA:
            def test_a(self):
            \tm = mock.Mock()
            \tm()
        class TestB:
        \tdef test_b(self):
        \t    m = mock.Mock()
        \t    m()
        """,
        False,
    ),
    "pytestmark_list_then_class": (
        """\
        pytestmark = [
            pytest.mark.slow,
        ]
        class TestA:
            def test_a(self):
                m = mock.Mock()
                m()
        """,
        True,
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_splice_to_the_same_text_or_fall_back(layout: str) -> None:
    text, may_splice = LAYOUTS[layout]
    source = textwrap.dedent(text)
    if not source.startswith(("'''", "from ")):  # those about the file's head bring their own
        source = HEADER + source
    whole, spliced = both_paths(source, Settings())
    assert isinstance(whole, str)
    assert_same(whole, spliced)
    assert isinstance(spliced, str) == may_splice


@pytest.mark.parametrize(
    "source, may_splice",
    [
        (HEADER.replace("\n", "\r\n") + "def test_a():\r\n    m = mock.Mock()\r\n    m()\r\n", True),
        # The last line has no line break: its slice's own default would be LF.
        (HEADER.replace("\n", "\r\n") + "def test_a(): m = mock.Mock(); m()", False),
        (HEADER.replace("\n", "\r") + "def test_a():\r    m = mock.Mock()\r    m()\r", False),
        (HEADER + "def test_a():\r\n    m = mock.Mock()\n    m()\n", False),
    ],
    ids=["crlf", "crlf_no_final_newline", "lone_cr", "mixed"],
)
def test_line_endings(source: str, may_splice: bool) -> None:
    whole, spliced = both_paths(source, Settings())
    assert isinstance(whole, str)
    assert_same(whole, spliced)
    assert isinstance(spliced, str) == may_splice


def test_fix_source_output_is_the_whole_file_paths() -> None:
    """Through ``fix_source`` (the engine's call), the splice changes nothing either."""
    source = mock_module(random.Random(7))
    module = ModuleAnalysis(source, Settings(), "test_generated")
    fixes = [finding.fix for finding in _check(module) if finding.fix is not None]
    whole = apply_fixes(source, fixes, [d.name for d in module.defs])
    assert fix_source(source, Settings(), "test_generated")[0] == whole


@pytest.mark.parametrize(
    "source",
    [
        "x = 1\n",
        "def f():\n  pass\n",
        "x = [\n        1]\nif x:\n\tpass\n",
        "'''\n    text\n'''\nclass A:\n   def f(self):\n         pass\n",
        "def f(): pass\n",
    ],
)
def test_default_indent_is_libcsts(source: str) -> None:
    assert _default_indent(source) == cst.parse_module(source).default_indent
