"""The index of imported modules that a run's worker processes share."""

from __future__ import annotations

import ast
import os
import pickle
import textwrap
from pathlib import Path

import pytest

from memsafe_fix.analysis import index
from memsafe_fix.analysis.index import load_tree

MODULE = textwrap.dedent(
    """\
    import functools


    class Client:
        async def fetch(self):
            return await self.session.get()

        async def events(self):
            yield 1

        def teardown_method(self, method):
            gc.collect()


    def retry(func):
        @functools.wraps(func)
        async def wrapper(*args):
            return await func(*args)

        return wrapper
    """
)


def test_trimmed_tree_keeps_what_rules_read(tmp_path: Path) -> None:
    (tmp_path / "client.py").write_text(MODULE)
    tree = load_tree(tmp_path / "client.py")
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert isinstance(functions["fetch"].body[0], ast.Pass)  # a plain body is dropped
    assert isinstance(functions["events"].body[0].value, ast.Yield)  # still an async generator
    assert "gc.collect()" in ast.unparse(functions["teardown_method"])  # MSF002 reads it
    assert "return wrapper" in ast.unparse(functions["retry"])  # a decorator's body stays
    assert "session" not in ast.unparse(tree)
    compile(tree, "client.py", "exec")  # positions are complete


def test_conftest_is_kept_whole(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(MODULE)
    assert ast.unparse(load_tree(tmp_path / "conftest.py")) == ast.unparse(ast.parse(MODULE))


def test_processes_share_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "client.py").write_text(MODULE)
    monkeypatch.setattr(index, "_folder", str(tmp_path / "index"))
    (tmp_path / "index").mkdir()
    first = load_tree(tmp_path / "client.py")
    assert len(list((tmp_path / "index").glob("*.pickle"))) == 1

    def no_parse(source: str) -> ast.Module:
        raise AssertionError("parsed again: the index was not used")

    monkeypatch.setattr(index.ast, "parse", no_parse)  # as another process, which finds it stored
    assert ast.dump(load_tree(tmp_path / "client.py")) == ast.dump(first)
    (tmp_path / "client.py").write_text(MODULE + "\nX = 1\n")  # a changed file is a new entry
    with pytest.raises(AssertionError, match="parsed again"):
        load_tree(tmp_path / "client.py")


class _Payload:
    """Unpickling it creates ``marker``: what a planted pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_an_index_folder_from_the_environment_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "client.py").write_text(MODULE)
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / f"{index._key(tmp_path / 'client.py')}.pickle").write_bytes(pickle.dumps(_Payload(tmp_path / "ran")))
    monkeypatch.setenv("MEMSAFE_FIX_INDEX", str(planted))  # the variable earlier versions read
    assert "session" not in ast.unparse(load_tree(tmp_path / "client.py"))
    assert not (tmp_path / "ran").exists()
