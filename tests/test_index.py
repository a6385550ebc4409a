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


class _ReferenceTrimmer(ast.NodeTransformer):
    """The trimming rules written plainly, walking every node (the trimmer visits statements
    only and rules ``yield`` out from the text first): both must give the same tree."""

    def visit_FunctionDef(self, node):  # type: ignore[no-untyped-def]
        from memsafe_fix.analysis.module import returns_its_argument, yields

        if (
            node.name in index.KEPT_BODIES
            or any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) for s in index._statements(node.body))
            or returns_its_argument(node)
        ):
            return self.generic_visit(node)
        stand_in = ast.Expr(ast.Yield(None)) if yields(node) else ast.Pass()
        own: list[ast.AST] = list(node.body)
        found = []
        while own:
            child = own.pop()
            if isinstance(child, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                if any(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self" for t in targets):
                    found.append(child)
            elif isinstance(child, ast.Expr) and isinstance(child.value, ast.Call):
                call = child.value
                if isinstance(call.func, ast.Name) and call.func.id == "setattr" and call.args:
                    if isinstance(call.args[0], ast.Name) and call.args[0].id == "self":
                        found.append(child)
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                own.extend(ast.iter_child_nodes(child))
        found.sort(key=lambda stmt: (stmt.lineno, stmt.col_offset))
        node.body = [ast.fix_missing_locations(ast.copy_location(stand_in, node.body[0])), *found]
        return node

    visit_AsyncFunctionDef = visit_FunctionDef


TRIMMING_CASES = textwrap.dedent(
    """\
    class Service:
        def __init__(self, client=None):
            if client:
                self.client = client
            else:
                try:
                    self.client: Client = make()
                except ValueError:
                    setattr(self, "client", None)
                finally:
                    self.count += 1
            match client:
                case None:
                    self.kind = "none"
                case _:
                    self.kind = helper(lambda: (yield_ := 1))
            text = "yield is only a word here"  # yield in a comment

        def gen(self):
            for item in range(3):
                with ctx():
                    x = [(yield item)]

        async def agen(self):
            while True:
                yield from_()

        def outer(self):
            def inner():
                yield 1
            return inner

        def same(self):
            return self

        def rebinds(func):
            func = wrap(func)
            return func

        def shim(func):
            func.__override__ = True
            return func

        def other(func, y):
            if y:
                return y
            return func

        @property
        def value(self):
            return self._value

        def one_line(self): self.x = 1

        def no_such_words(a, b):
            c = a + b
            print(c)

        def words_in_a_string_only(self_, deferred):
            "self, def, return and yield are only words here"
            self_.value = deferred
    """
)


@pytest.mark.parametrize("case", ["cases", *sorted(str(p) for p in Path(__file__).parent.glob("fixtures/**/*.py"))])
def test_trimming_matches_the_reference_walk(case: str) -> None:
    source = TRIMMING_CASES if case == "cases" else Path(case).read_text(encoding="utf-8")
    try:
        expected = _ReferenceTrimmer().visit(ast.parse(source))
    except SyntaxError:
        pytest.skip("not a module")
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    trimmed = index._Trimmer(lines).visit(ast.parse(source))
    assert ast.dump(trimmed, include_attributes=True) == ast.dump(expected, include_attributes=True)


def test_trimming_keeps_yield_but_not_bodies() -> None:
    trimmed = index._Trimmer(TRIMMING_CASES.split("\n")).visit(ast.parse(TRIMMING_CASES))
    text = ast.unparse(trimmed)
    assert "def gen(self):\n        yield" in text
    assert "async def agen(self):\n        yield" in text
    assert "self.client = client" in text and "setattr(self, 'client', None)" in text
    assert "self.kind = 'none'" in text and "text = " not in text
    assert "func.__override__ = True" in text  # a shim returning its argument is kept whole
