"""The shortcuts ``--check`` takes give what the plain analysis gives, on fixtures that exercise them."""

from __future__ import annotations

import ast
import gc
import io
import textwrap
import tokenize
from pathlib import Path
from typing import Optional, Union

import pytest
from test_golden import CASES, case_settings, module_name
from test_prefilter import SOURCES

from memsafe_fix.analysis import chunks, targets
from memsafe_fix.analysis.markers import used_markers
from memsafe_fix.analysis.module import (
    Def,
    ModuleAnalysis,
    _comments_from_tree,
    _suppressed_codes,
    _suppressions,
    returns_its_argument,
    yields,
)
from memsafe_fix.config import Settings
from memsafe_fix.engine import Job, Mode, check_source, process, read_source

ROOT = Path(__file__).parent.parent

DECORATORS = textwrap.dedent(
    """\
    def plain(f):
        return f

    def nested_return(f):
        if f:
            try:
                return f
            except ValueError:
                return f
            finally:
                pass
        with open(f):
            for _ in f:
                return f
        return f

    def other_return(f):
        if f:
            return f
        return None

    def return_in_handler(f):
        try:
            pass
        except ValueError:
            return g
        return f

    def only_inner_returns(f):
        def inner():
            return f
        class Inner:
            def method(self):
                return f
        return f

    def rebinds(f):
        f = wrap(f)
        return f

    def rebinds_in_expression(f):
        [f := g for g in ()]
        return f

    def generator(f):
        x = (yield)
        return f

    def yield_in_lambda(f):
        g = lambda: (yield)
        return f

    def no_return(f):
        f.x = 1

    def bare_return(f):
        return

    def matched(f):
        match f:
            case 1:
                return g
        return f

    async def coroutine(f):
        return f

    def no_params():
        return None
    """
)


def _returns_its_argument_by_full_walk(function: Union[ast.FunctionDef, ast.AsyncFunctionDef]) -> bool:
    """The analysis before its statements-first shortcut."""
    params = [*function.args.posonlyargs, *function.args.args]
    if not isinstance(function, ast.FunctionDef) or not params or yields(function):
        return False
    name = params[0].arg
    returns: list[ast.Return] = []
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return):
            returns.append(node)
        elif isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
            return False
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return bool(returns) and all(isinstance(r.value, ast.Name) and r.value.id == name for r in returns)


def _functions(source: str) -> list[Union[ast.FunctionDef, ast.AsyncFunctionDef]]:
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_returns_its_argument_on_decorator_shapes() -> None:
    answers = {f.name: returns_its_argument(f) for f in _functions(DECORATORS)}
    assert {name for name, yes in answers.items() if yes} == {
        "plain",
        "nested_return",
        "only_inner_returns",
        "yield_in_lambda",
    }
    assert answers == {f.name: _returns_its_argument_by_full_walk(f) for f in _functions(DECORATORS)}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_returns_its_argument_and_markers_as_the_full_walks_find_them(path: Path) -> None:
    source = read_source(path.read_bytes())[0]
    for function in _functions(source):
        assert returns_its_argument(function) == _returns_its_argument_by_full_walk(function)
    module = ModuleAnalysis(source, Settings(), f"test_{path.parent.name}", path)
    by_ast_walk = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            name = module.imports.qualify(node)
            if name and name.startswith("pytest.mark.") and name.count(".") == 2:
                by_ast_walk.add(node.attr)
    assert used_markers(module) == by_ast_walk


MARKERS = textwrap.dedent(
    """\
    import pytest
    import pytest as pt
    from pytest import mark
    from pytest import mark as m

    slow = pytest.mark.slow


    @pt.mark.aliased_module
    @m.aliased_mark(
        reason="the name a chain starts from is on a decorator line, above the def's own line",
    )
    @mark.from_import
    def test_a():
        pass


    @(
        pytest
        .mark
        .split_over_lines
    )
    class TestB:
        pytestmark = [pytest.mark.in_class_body]

        def test_b(self, request):
            if request:
                request.applymarker(pytest.mark.in_body)
            x = [pytest.param(1, marks=pytest.mark.in_param) for _ in ()]
            y = lambda: m.in_lambda
            z = f"{pytest.mark.in_fstring}" f'''{
                pt.mark.in_multiline_fstring
            }'''
            w = pytest.mark.continued \\
                .no_marker_three_deep
            match x:
                case [1]:
                    mark.in_match_case
            return x, y, z, w


    def test_c():  # pytest.mark.only_in_a_comment
        "pytest.mark.only_in_a_string"
    """
)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("form_feed", ["", "\f"], ids=["plain", "form-feed"])
def test_used_markers_skips_only_nodes_without_a_marker(newline: str, form_feed: str) -> None:
    """The walk skips nodes whose lines name no ``pytest``/``mark`` alias: markers on
    decorator lines above a ``def``, split over lines, in f-strings, bodies, lambdas and
    ``match`` cases are all found (and ``str.splitlines``'s extra line breaks do not shift
    the lines counted)."""
    source = MARKERS.replace("\n\n\n", f"\n{form_feed}\n\n").replace("\n", newline)
    module = ModuleAnalysis(source, Settings(), "test_markers")
    by_ast_walk = set()
    for node in ast.walk(module.tree):
        name = module.imports.qualify(node) if isinstance(node, ast.Attribute) else None
        if name and name.startswith("pytest.mark.") and name.count(".") == 2:
            by_ast_walk.add(node.attr)  # type: ignore[attr-defined]
    expected = {
        "slow",
        "aliased_module",
        "aliased_mark",
        "from_import",
        "split_over_lines",
        "in_class_body",
        "in_body",
        "in_param",
        "in_lambda",
        "in_fstring",
        "in_multiline_fstring",
        "continued",
        "in_match_case",
    }
    assert used_markers(module) == by_ast_walk == expected


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunked"])
@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_check_frees_each_file_without_the_cyclic_collector(
    case: Path, chunked: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checked file's analysis is released (``ModuleAnalysis.release``) and builds no
    reference cycles, so its tree is freed when it is done: the engine keeps the cyclic
    collector off while a file is analysed, and each collection after it would walk it all."""
    if chunked:
        monkeypatch.setattr(chunks, "CHUNKED_FROM", 0)
        monkeypatch.setattr(chunks, "CHUNK_CHARS", 1)
    path = tmp_path / f"{module_name(case)}.py"
    path.write_bytes((case / "input.py").read_bytes())
    job = Job(path, str(path), case_settings(case), Mode.CHECK)
    process(job)  # imported modules are loaded once per run and kept: not this file's garbage
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        process(job)
        assert gc.collect() == 0
    finally:
        if collecting:
            gc.enable()


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_check_mode_reports_the_findings_check_source_does(case: Path, tmp_path: Path) -> None:
    """``--check`` leaves the file's quote unworked-out (only fix code uses it): the findings
    it reports are those of the analysis that works it out."""
    path = tmp_path / f"{module_name(case)}.py"
    path.write_bytes((case / "input.py").read_bytes())
    settings = case_settings(case)
    source = read_source(path.read_bytes())[0]
    expected = check_source(source, settings, path.stem, path)
    checked = process(Job(path, str(path), settings, Mode.CHECK))
    assert checked.error is None
    assert [(f.code, f.line, f.col, f.message, f.fixable) for f in checked.findings] == [
        (f.code, f.line, f.col, f.message, f.fixable) for f in expected
    ]


def _local_values_by_one_walk_per_name(function: Def, name: str) -> list[ast.expr]:
    """``targets._local_values`` before it worked out every name in one walk."""
    nodes = targets._own_nodes(function)
    values = [
        node.value
        for node in nodes
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    ]
    stores = sum(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in nodes)
    if stores > len(values):
        values.append(ast.Constant(None))
    return values


LOCALS = textwrap.dedent(
    """\
    def test_a(request):
        client = Client()
        client = other = Client()
        x = x = make()
        for item in range(3):
            pass
        with open("f") as handle, ctx() as (first, second):
            (third := 1)
        try:
            pass
        except ValueError as error:
            pass

        def inner():
            hidden = Client()

        lam = lambda: (unseen := 1)
        return client, other, item, handle, first, second, third, error, lam
    """
)


@pytest.mark.parametrize("path", [None, *SOURCES], ids=lambda p: "locals" if p is None else str(p.relative_to(ROOT)))
def test_local_values_as_one_walk_per_name_finds_them(path: Optional[Path]) -> None:
    source = LOCALS if path is None else read_source(path.read_bytes())[0]
    module = ModuleAnalysis(source, Settings(), "test_locals")
    for function in (d for d in module.defs if not d.is_class):
        names = {n.id for n in ast.walk(function.node) if isinstance(n, ast.Name)} | {"absent"}
        for name in sorted(names):
            assert ast.dump(ast.Module(targets._local_values(function, name), [])) == ast.dump(
                ast.Module(_local_values_by_one_walk_per_name(function, name), [])
            )


SUPPRESSIONS = textwrap.dedent(
    '''\
    import pytest  # noqa: F401
    x = "a # noqa: MSF001 in a string" + 'b'  # memsafe: ignore[MSF002]
    y = "# noqa" if x else "#"  # NOQA: msf005, E501
    z = ("implicit"  # noqa: MSF004
         "concatenation")
    doc = """
    # noqa: MSF006 inside a string over lines
    """  # noqa
    b = b"#bytes" # memsafe: ignore
    f = f"{x} # noqa: MSF003"
    g = f"{x}"  # noqa: async-mock
    @pytest.mark.parametrize("v", ["# noqa"])  # noqa: MSF001
    def test_a(v):
    \tpass  # memsafe: ignore[MSF001, MSF002]
    def test_b():  # not a suppression
        return "noqa"
    '''
).replace("def test_b", "\fdef test_b")


SUPPRESSION_SOURCES = {
    "comments": SUPPRESSIONS,
    # No f-string and no "#" inside a string over lines: the tree's string places decide.
    "comments-from-the-tree": SUPPRESSIONS.replace('f"', '"')
    .replace('"implicit"  # noqa: MSF004', '"implicit"')
    .replace("# noqa: MSF006 inside", "noqa: MSF006 inside"),
    "comments-crlf": SUPPRESSIONS.replace("\n", "\r\n"),
    "comments-non-ascii": SUPPRESSIONS.replace("import pytest", "import pytest  # é", 1),
    **{str(path.relative_to(ROOT)): read_source(path.read_bytes())[0] for path in SOURCES},
}


@pytest.mark.parametrize("name", SUPPRESSION_SOURCES)
def test_suppressions_from_the_tree_as_tokenize_finds_them(name: str) -> None:
    """Suppression comments found from the tree's string places (falling back to tokenize
    where those cannot tell) are those tokenize finds."""
    source = SUPPRESSION_SOURCES[name]
    tree = ast.parse(source)
    expected: dict[int, Optional[frozenset[str]]] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            for codes in _suppressed_codes(token.string):
                known = expected.get(token.start[0], frozenset())
                expected[token.start[0]] = None if codes is None or known is None else known | codes
    assert _suppressions(source, tree) == expected
    if name.startswith("comments"):
        assert len(expected) == (8 if name == "comments-from-the-tree" else 9)
        assert (_comments_from_tree(source, tree) is not None) == (name == "comments-from-the-tree")
