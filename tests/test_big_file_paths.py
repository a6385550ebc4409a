"""The shortcuts that keep a big test file's ``--check`` fast (``benchmarks/big_file.py``) give
what the plain computations they replace give: on the golden fixtures, the examples, generated
mock-using modules and the benchmark's own big-file classes."""

from __future__ import annotations

import ast
import bisect
import importlib.util
import json
import random
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Iterator, Optional

import pytest
from mock_modules import mock_module
from test_golden import case_settings
from test_prefilter import SOURCES

import memsafe_fix.analysis.chunks as chunks
import memsafe_fix.cache as cache
from memsafe_fix.analysis.collection import resolve_bases
from memsafe_fix.analysis.module import Def, ModuleAnalysis, child_nodes
from memsafe_fix.config import Settings
from memsafe_fix.edits import Finding, Fix
from memsafe_fix.engine import ALL_RULES, check_source, read_source
from memsafe_fix.report import Located, Problem, json_report
from memsafe_fix.rules.async_patch import _calls_on_patch_lines
from memsafe_fix.rules.base import Context
from memsafe_fix.rules.release_state import TEARDOWN, needs_release, releases_state, state_attributes
from memsafe_fix.rules.xdist_group import class_group

ROOT = Path(__file__).parent.parent
BIG_FILE = ROOT / "benchmarks" / "big_file.py"


def _big_file_source(size: int) -> str:
    """The benchmark's generated file (``benchmarks`` is no package)."""
    spec = importlib.util.spec_from_file_location("big_file", BIG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(size)[0]


GENERATED = [mock_module(random.Random(seed)) for seed in range(40)]
BIG_FILE_CLASSES = _big_file_source(20_000)


def _settings(path: Path) -> Settings:
    return case_settings(path.parent) if (path.parent / "input.py").exists() else Settings()


def _module_name(path: Path) -> str:
    return path.stem if path.stem == "conftest" else f"test_{path.parent.name}"


def _findings(source: str, path: Path) -> list[Finding]:
    return check_source(source, _settings(path), _module_name(path), path)


def _all_sources() -> list[tuple[str, str, Path]]:
    """(id, source, path) of every file the comparisons run on."""
    found = [(str(p.relative_to(ROOT)), read_source(p.read_bytes())[0], p) for p in SOURCES]
    found += [(f"generated-{seed}", source, ROOT / "test_generated.py") for seed, source in enumerate(GENERATED)]
    found.append(("big-file-classes", BIG_FILE_CLASSES, ROOT / "test_big.py"))
    return found


ALL_SOURCES = _all_sources()


@pytest.mark.parametrize(("source", "path"), [s[1:] for s in ALL_SOURCES], ids=[s[0] for s in ALL_SOURCES])
def test_cache_encodes_findings_as_the_generic_encoder_does(source: str, path: Path) -> None:
    findings = _findings(source, path)
    # ``--check`` of a big file keeps one shared ``Fix`` for every fixable finding.
    shared = Fix(())
    findings += [Finding(f.code, f.line, f.col, f.message, shared) for f in findings]
    encoded = cache._encode_findings(findings)
    assert encoded == [cache._encode(finding) for finding in findings]
    assert json.dumps(encoded) == json.dumps([cache._encode(finding) for finding in findings])


def _class_group_by_module_functions(name: str) -> str:
    """``class_group`` before its compiled patterns and cache."""
    stripped = re.sub(r"^(Test_?|test_)|_?Tests?$", "", name)
    name = stripped or name
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"_+", "_", name).strip("_").lower()


def test_class_group_names_as_before() -> None:
    names = {match for _, source, _ in ALL_SOURCES for match in re.findall(r"class\s+(\w+)", source)}
    names |= {"APIKeySecurity", "Test_", "test_", "Tests", "TestHTTPClientTests", "_Test_A__B_", "T", "ÄbcTest"}
    assert len(names) > 150
    for name in sorted(names):
        assert class_group(name) == _class_group_by_module_functions(name), name
        assert class_group(name) == _class_group_by_module_functions(name), name  # from the cache


def _needs_release_evaluated_whole(cls: Def, context: Context) -> bool:
    """``needs_release`` before MSF002 and MSF006 shared what it reads from the code."""
    if context.is_unittest(cls) or any(
        isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in s.targets)
        for s in cls.node.body
    ):
        return False
    attributes = state_attributes(cls, context)
    if not attributes:
        return False
    bases = resolve_bases(cls, context.module).known
    if any(b.index in context.releasing for b in bases if b.module is context.module):
        return False
    teardowns = [c.methods()[TEARDOWN] for c in [cls, *bases] if TEARDOWN in c.methods()]
    return not any(releases_state(t, attributes) for t in teardowns)


@pytest.mark.parametrize(("source", "path"), [s[1:] for s in ALL_SOURCES], ids=[s[0] for s in ALL_SOURCES])
def test_needs_release_as_evaluated_whole(source: str, path: Path) -> None:
    module = ModuleAnalysis(source, _settings(path), _module_name(path), path)
    context = Context(module)
    # Before any teardown is planned to release, after MSF002 and MSF006 planned theirs, and
    # with every class planned (which settles every subclass of a same-file base).
    for releasing in (None, "rules", "all"):
        if releasing == "rules":
            for rule in ALL_RULES:
                list(rule.check(context))
        elif releasing == "all":
            context.releasing |= {d.index for d in module.defs}
        for cls in context.test_classes:
            assert needs_release(cls, context) == _needs_release_evaluated_whole(cls, context), cls.name


def _calls_on_patch_lines_by_child_nodes(module: ModuleAnalysis) -> Iterator[tuple[ast.Call, Optional[Def]]]:
    """MSF004's walk before it read the node fields itself."""
    lines = [number for number, text in enumerate(module.lines, 1) if "patch" in text]
    stack: list[tuple[ast.AST, Optional[Def]]] = [(module.tree, None)]
    while stack and lines:
        node, scope = stack.pop()
        is_def = isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        body = {id(stmt) for stmt in node.body} if is_def else set()  # type: ignore[attr-defined]
        inner = module.def_of(node) if is_def else None
        for child in child_nodes(node):
            if isinstance(child, (ast.expr_context, ast.Name, ast.Constant)):
                continue
            start = getattr(child, "lineno", None)
            if start is not None:
                decorators = getattr(child, "decorator_list", None)
                if decorators:
                    start = min(start, *(d.lineno for d in decorators))
                first = bisect.bisect_left(lines, start)
                if first == len(lines) or lines[first] > (child.end_lineno or start):
                    continue
            child_scope = inner if id(child) in body else scope
            if isinstance(child, ast.Call):
                yield child, child_scope
            stack.append((child, child_scope))


@pytest.mark.parametrize(("source", "path"), [s[1:] for s in ALL_SOURCES], ids=[s[0] for s in ALL_SOURCES])
def test_patch_calls_and_scopes_as_found_by_child_nodes(source: str, path: Path) -> None:
    module = ModuleAnalysis(source, _settings(path), _module_name(path), path)
    found = list(_calls_on_patch_lines(module))
    assert [(id(call), scope) for call, scope in found] == [
        (id(call), scope) for call, scope in _calls_on_patch_lines_by_child_nodes(module)
    ]
    if "patch(" in source:
        assert found


@pytest.mark.parametrize(("source", "path"), [s[1:] for s in ALL_SOURCES], ids=[s[0] for s in ALL_SOURCES])
def test_chunk_words_as_the_unicode_pattern_finds_them(source: str, path: Path) -> None:
    for text in (source, source + "\nx_1 = _y2 + Z9z(__a__, 1e3, 0x1F, é)\n"):
        words = set(re.findall(r"[^\W\d]\w*", text))
        if not text.isascii():
            words |= {unicodedata.normalize("NFKC", w) for w in words if not w.isascii()}
        assert chunks._words(text) == words


def test_big_file_benchmark_times_another_tree_interleaved() -> None:
    command = [sys.executable, str(BIG_FILE), "--megabytes", "0.02", "--against", str(ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()[1:]
    assert [line.split(": ")[0] for line in lines] == [
        f"0.02 MB, 66 classes, --check ({ROOT})",
        "0.02 MB, 66 classes, --check",
    ]


def _json_report_by_json_dumps(findings: list[Located], problems: list[Problem]) -> str:
    """``json_report`` before it wrote the records itself."""
    records = [
        {
            "kind": "finding",
            "path": path,
            "line": f.line,
            "column": f.col,
            "code": f.code,
            "message": f.message,
            "fixable": f.fixable,
        }
        for path, f in findings
    ]
    records += [
        {
            "kind": p.kind,
            "path": p.path,
            "line": p.line,
            "column": p.col,
            "code": None,
            "message": p.message,
            "fixable": False,
        }
        for p in problems
    ]
    return json.dumps(records, indent=2)


def test_json_report_is_what_json_dumps_writes() -> None:
    located = [(s[0], f) for s in ALL_SOURCES for f in _findings(s[1], s[2])]
    assert len(located) > 500 and any(f.fixable for _, f in located) and not all(f.fixable for _, f in located)
    odd = 'a "quoted" \\ back\\slash, tab\t, newline\n, NUL \x00, é, 😀, \u2028'
    located += [(odd, Finding("MSF001", 1, 2, odd, None)), ("p.py", Finding(odd, 10**20, 0, "", Fix(())))]
    problems = [
        Problem(None, 1, 1, "error", "bad configuration"),
        Problem(odd, 3, 4, "syntax-error", odd),
        Problem("x.py", 1, 1, "internal-error", ""),
    ]
    for findings, some_problems in ((located, problems), (located, []), ([], problems), ([], [])):
        assert json_report(findings, some_problems) == _json_report_by_json_dumps(findings, some_problems)
