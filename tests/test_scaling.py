"""Every analysis is linear in the file's size: the work (lines of memsafe-fix executed, which
unlike time does not depend on the machine) grows in proportion to the number of test classes.
Speed itself is measured by ``benchmarks/big_file.py``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import memsafe_fix
import memsafe_fix.analysis.chunks as chunks
from memsafe_fix.config import Settings
from memsafe_fix.engine import Job, Mode, _check_in_chunks, fix_source

PACKAGE = str(Path(memsafe_fix.__file__).parent)
CLASS = textwrap.dedent(
    """
    class TestService{i}:
        def setup_method(self):
            self.client = MagicMock()

        def test_call(self):
            self.client.get("x")

        @patch("os.getcwd", return_value="/")
        def test_patched(self, getcwd):
            assert getcwd() == "/"

    """
)


def lines_executed(classes: int, chunked: bool = False) -> int:
    source = "from unittest.mock import MagicMock, patch\n\n" + "".join(CLASS.format(i=i) for i in range(classes))
    count = 0

    def trace(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if not frame.f_code.co_filename.startswith(PACKAGE):
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        if chunked:
            assert _check_in_chunks(Job(Path("test_big.py"), "test_big.py", Settings(), Mode.CHECK), source, "test_big")
        else:
            fix_source(source, Settings(), "test_big")
    finally:
        sys.settrace(None)
    return count


def test_work_grows_linearly_with_the_number_of_classes() -> None:
    small, large = lines_executed(25), lines_executed(100)
    assert large < 4 * 1.25 * small, (small, large)


def test_chunked_check_work_grows_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big file's ``--check`` a chunk at a time: a few classes a chunk, each chunk's context
    (the imports) the same size."""
    monkeypatch.setattr(chunks, "CHUNKED_FROM", 0)
    monkeypatch.setattr(chunks, "CHUNK_CHARS", 1000)
    small, large = lines_executed(25, chunked=True), lines_executed(100, chunked=True)
    assert large < 4 * 1.25 * small, (small, large)
