"""The shortcuts that keep a big test file's ``--check`` fast (``benchmarks/big_file.py``) give
what the plain computations they replace give: on the golden fixtures, the examples, generated
mock-using modules and the benchmark's own big-file classes."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest
from mock_modules import mock_module
from test_golden import case_settings
from test_prefilter import SOURCES

import memsafe_fix.cache as cache
from memsafe_fix.config import Settings
from memsafe_fix.engine import check_source, read_source
from memsafe_fix.edits import Finding, Fix
from memsafe_fix.rules.xdist_group import class_group

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import big_file  # noqa: E402  (the benchmark's generator, not a package)

GENERATED = [mock_module(random.Random(seed)) for seed in range(40)]
BIG_FILE_CLASSES = big_file.generate(20_000)[0]


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
