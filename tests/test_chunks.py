"""Big files are checked a chunk of top-level statements at a time (``analysis/chunks.py``):
findings, markers and patch targets must be those of the whole file's analysis. Here every
file is cut at every place a chunk may end, the hardest case for the context each chunk needs."""

from __future__ import annotations

import random
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pytest
from mock_modules import mock_module
from test_golden import CASES, case_settings, module_name

import memsafe_fix.analysis.chunks as chunks
from memsafe_fix.analysis.markers import used_markers
from memsafe_fix.analysis.module import ModuleAnalysis
from memsafe_fix.config import Settings
from memsafe_fix.engine import Job, Mode, _check_in_chunks, check_source, patch_targets, read_source

ROOT = Path(__file__).parent.parent
QUICK_PLAN = chunks.quick_plan

EDGE_CASES = {
    # Lines at column 0 inside strings, brackets and continuations are no place to cut.
    "strings": (
        '"""Module docstring\nclass NotAClass:\n    pass\n"""\n'
        "from unittest.mock import MagicMock, patch\n\n"
        'QUERY = """\nSELECT 1\n"""\n'
        "TABLE = [\n1,\n2]\n"
        "TOTAL = 1 + \\\n2\n\n\n"
        "class TestQuery:\n"
        "    def setup_method(self):\n"
        "        self.db = MagicMock()\n\n"
        "    def test_query(self):\n"
        '        sql = """\nselect *\nfrom t\n"""\n'
        "        self.db.run(sql)\n"
    ),
    # Bases, helpers and fixtures defined after their users, in other chunks.
    "later_definitions": """\
        import pytest
        from unittest.mock import MagicMock


        class TestChild(Base):
            def test_a(self, client):
                assert make()


        def test_function(client):
            assert client


        class Base:
            def setup_method(self):
                self.m = MagicMock()


        def make():
            return helper()


        def helper():
            return MagicMock()


        @pytest.fixture(name="client")
        def _client_fixture():
            return MagicMock()


        pytestmark = [pytest.mark.performance]
        """,
    # A subclass reading ``self`` after calling its base's teardown, in a later chunk.
    "subclass_teardown": """\
        import gc
        from unittest.mock import MagicMock


        class TestBase:
            def setup_method(self):
                self.m = MagicMock()

            def teardown_method(self):
                gc.collect()


        class TestOther:
            def test_x(self):
                MagicMock()


        class TestSub(TestBase):
            def teardown_method(self):
                super().teardown_method()
                assert self.m
        """,
    # A module fixture reading ``request.instance`` after its ``yield``, at the end.
    "late_instance": """\
        import pytest
        from unittest.mock import MagicMock


        class TestA:
            def setup_method(self):
                self.m = MagicMock()

            def test_a(self):
                assert self.m


        @pytest.fixture(autouse=True)
        def check(request):
            yield
            assert request.instance.m
        """,
    # Decorators, top-level ``if``/``else`` and ``try``, ``;`` statements, a file without a final newline.
    "compound": """\
        import sys
        import pytest
        from unittest import mock
        if sys.version_info >= (3, 8):
            from unittest.mock import AsyncMock
        else:
            AsyncMock = None
        try:
            import gc
        except ImportError:
            gc = None
        finally:
            pass
        slow = pytest.mark.performance; other = 1


        @slow
        @pytest.mark.parametrize("x", [
        1,
        ])
        def test_slow(x):
            mock.MagicMock()


        class Client:
            async def fetch(self):
                pass


        client = Client()


        @mock.patch.object(Client, "fetch")
        class TestPatched:
            def test_p(self, fetch):
                with mock.patch.object(client, "fetch"):
                    pass""",
    # Nested test classes and a unittest case.
    "nested": """\
        import unittest
        from unittest.mock import MagicMock


        class TestOuter:
            def setup_method(self):
                self.m = MagicMock()

            def teardown_method(self):
                self.m.reset_mock()

            class TestInner:
                def setup_method(self):
                    self.m = MagicMock()

                def teardown_method(self):
                    assert self.m


        class TestCase(unittest.TestCase):
            def setUp(self):
                self.m = MagicMock()

            def test_x(self):
                assert self.m
        """,
}


def _chunked(source: str, settings: Settings, name: str, path: Path) -> Optional[tuple]:
    job = Job(path, path.name, settings, Mode.CHECK, verbose=True)
    return _check_in_chunks(job, source, name)


def _whole(source: str, settings: Settings, name: str, path: Path) -> tuple:
    module = ModuleAnalysis(source, settings, name, path)
    return check_source(source, settings, name, path), used_markers(module), patch_targets(module)


@pytest.fixture(autouse=True, params=["from-text", "parsed"])
def _smallest_chunks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks found from the text (checked against each chunk's parse), or by parsing."""
    if request.param == "parsed":
        monkeypatch.setattr(chunks, "quick_plan", lambda *args: None)
    monkeypatch.setattr(chunks, "CHUNKED_FROM", 0)
    monkeypatch.setattr(chunks, "CHUNK_CHARS", 1)
    monkeypatch.setattr(chunks, "MAX_CONTEXT_CHUNKS", 10**9)


def _assert_same(source: str, settings: Settings, name: str, path: Path) -> None:
    chunked = _chunked(source, settings, name, path)
    assert chunked is not None, "the file should split into chunks"
    findings, markers, targets = chunked
    whole_findings, whole_markers, whole_targets = _whole(source, settings, name, path)
    assert [(f.code, f.line, f.col, f.message, f.fixable) for f in findings] == [
        (f.code, f.line, f.col, f.message, f.fixable) for f in whole_findings
    ]
    assert markers == whole_markers
    assert targets == whole_targets


SETTINGS = [Settings(), Settings(scope="all"), replace(Settings(), ignore=("MSF002",))]


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "scope-all", "no-msf002"])
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_check_as_the_whole_file(case: str, settings: Settings, tmp_path: Path) -> None:
    source = textwrap.dedent(EDGE_CASES[case])
    path = tmp_path / "test_edge.py"
    path.write_text(source)
    _assert_same(source, settings, "test_edge", path)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_inputs_check_as_the_whole_file(case: Path) -> None:
    source = read_source((case / "input.py").read_bytes())[0]
    if chunks._ODD_LINE_BREAKS.search(source):
        pytest.skip("parsed whole")
    for settings in (case_settings(case), replace(case_settings(case), scope="all")):
        if settings.function_gc == "fixture":
            continue
        _assert_same(source, settings, module_name(case), case / "input.py")


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/**/test_*.py")), ids=lambda p: p.name)
def test_examples_check_as_the_whole_file(path: Path) -> None:
    source = read_source(path.read_bytes())[0]
    _assert_same(source, Settings(), path.stem, path)


@pytest.mark.parametrize("seed", range(20))
def test_generated_modules_check_as_the_whole_file(seed: int, tmp_path: Path) -> None:
    source = mock_module(random.Random(seed))  # some with CRLF line endings
    path = tmp_path / "test_generated.py"
    path.write_bytes(source.encode())
    _assert_same(source, Settings(), "test_generated", path)


def test_crlf_file_checks_as_the_whole_file(tmp_path: Path) -> None:
    source = textwrap.dedent(EDGE_CASES["later_definitions"]).replace("\n", "\r\n")
    path = tmp_path / "test_edge.py"
    path.write_bytes(source.encode())
    _assert_same(source, Settings(), "test_edge", path)


def test_syntax_error_is_left_to_the_whole_file(tmp_path: Path) -> None:
    source = "class TestA:\n    pass\n\n\nx = (\n\nclass TestB:\n    pass\n"
    assert chunks.plan(source, Settings(), "test_bad", tmp_path / "test_bad.py") is None


def test_units_from_text_are_checked_against_the_parse(tmp_path: Path) -> None:
    """Column-0 lines in strings look like statements: the chunks' parses reject that split."""
    source = textwrap.dedent(EDGE_CASES["strings"])
    plan = QUICK_PLAN(source, Settings(), "test_edge", None)
    assert plan is not None
    assert not all(_valid(plan))
    plan = QUICK_PLAN(textwrap.dedent(EDGE_CASES["later_definitions"]), Settings(), "test_edge", None)
    assert plan is not None
    assert all(_valid(plan))


def _valid(plan: chunks.Plan) -> list[bool]:
    found = []
    for chunk, context in chunks.contexts(plan):
        try:
            found.append(chunks.ChunkAnalysis(plan, chunk, context, Settings(), "test_edge", None).valid())
        except SyntaxError:
            found.append(False)
    return found


def test_cuts_only_between_statements() -> None:
    source = textwrap.dedent(EDGE_CASES["strings"])
    plan = chunks.plan(source, Settings(), "test_edge", None)
    assert plan is not None
    starts = [unit.line for chunk in plan.chunks for unit in chunk.units]
    assert starts == [1, 5, 7, 10, 13, 17]
    assert "".join(source[chunk.start : chunk.end] for chunk in plan.chunks) == source
