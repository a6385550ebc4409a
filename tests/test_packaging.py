"""The distributions: metadata an index shows, and an sdist whose tests can run; and the example
suite the README points to, which must pass before and after `--write`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import distribution
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", "build", "dist")


def build(tmp_path: Path, kind: str) -> Path:
    """Build the sdist or wheel of a clean copy of this checkout with the project's backend."""
    source = tmp_path / "source"
    if not source.exists():
        shutil.copytree(ROOT, source, ignore=LEFT_OUT)
    out = tmp_path / "dist"
    out.mkdir(exist_ok=True)
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    built = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return out / built.stdout.strip().splitlines()[-1]


def test_sdist_carries_what_its_tests_need_and_the_metadata(tmp_path: Path) -> None:
    with tarfile.open(build(tmp_path, "sdist")) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        metadata = sdist.extractfile(f"{top}/PKG-INFO").read().decode()  # type: ignore[union-attr]
    needed = {
        path.relative_to(ROOT).as_posix()
        for folder in (ROOT / "tests", EXAMPLES)
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert needed - names == set()
    assert {"LICENSE", "memsafe_fix/py.typed", "tests/conftest.py", "tests/cli_runner.py"} <= names
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert "Classifier: Framework :: Pytest" in metadata
    assert "Classifier: Programming Language :: Python :: 3.13" in metadata


def test_wheel_ships_the_type_marker_and_the_license(tmp_path: Path) -> None:
    with zipfile.ZipFile(build(tmp_path, "wheel")) as wheel:
        names = set(wheel.namelist())
    assert "memsafe_fix/py.typed" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not any(name.startswith(("tests/", "examples/")) for name in names)


def run_examples(project: Path) -> dict[str, str]:
    """Each example test's outcome, with only the pytest plugins `examples/pyproject.toml`
    declares (autoloading off): a plugin the suite needs but does not declare fails it."""
    declared = tomllib.loads((project / "pyproject.toml").read_text())["dependency-groups"]["test"]
    plugins = [
        entry_point.name
        for requirement in declared
        for entry_point in distribution(requirement.split(">")[0].split("=")[0].strip()).entry_points
        if entry_point.group == "pytest11"
    ]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", *(f"-p{p}" for p in plugins)],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""},
    )
    outcomes = {}
    for line in completed.stdout.splitlines():
        outcome, _, test = line.partition(" ")
        if outcome in ("PASSED", "FAILED", "ERROR", "SKIPPED") and "::" in test:
            outcomes[test.split(" - ")[0]] = outcome
    assert outcomes, completed.stdout + completed.stderr
    return outcomes


def test_example_suite_passes_before_and_after_write(tmp_path: Path) -> None:
    project = tmp_path / "examples"
    shutil.copytree(EXAMPLES, project)
    before = run_examples(project)
    assert set(before.values()) == {"PASSED"}, before
    written = subprocess.run([sys.executable, "-m", "memsafe_fix", "--write", "."], cwd=project, capture_output=True)
    assert written.returncode in (0, 1), written.stderr
    assert (project / "tests" / "test_notifier.py").read_text() != (EXAMPLES / "tests" / "test_notifier.py").read_text()
    assert run_examples(project) == before
