"""Finding files and their settings: the shortcuts a warm run takes (exclusion decided on path
text, each folder resolved once, settings and project roots found from the parent folder's
answer) give what the plain ways give, on trees that exercise them."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from memsafe_fix import discovery
from memsafe_fix.analysis import project
from memsafe_fix.cache import Cache
from memsafe_fix.config import ConfigError, ConfigSource, Settings, nearest_configuration, settings_for
from memsafe_fix.engine import Job, Mode, run


def _tree(root: Path) -> None:
    """Nested ``.gitignore`` files (with negations, anchored and folder patterns), excludes
    with and without slashes, links to files and folders inside and outside."""
    files = {
        "pyproject.toml": '[tool.memsafe-fix]\nextend-exclude = ["legacy", "pkg/generated/", "*_skip.py"]\n',
        ".gitignore": "/build_out/\n*.tmp\nignored_*.py\n!ignored_but_kept.py\n",
        "tests/test_a.py": "",
        "tests/test_b_skip.py": "",
        "tests/ignored_one.py": "",
        "tests/ignored_but_kept.py": "",
        "tests/conftest.py": "",
        "tests/sub/.gitignore": "test_local_*.py\n!test_local_keep.py\ndeep/\n",
        "tests/sub/test_local_x.py": "",
        "tests/sub/test_local_keep.py": "",
        "tests/sub/test_c.py": "",
        "tests/sub/deep/test_d.py": "",
        "tests/sub/legacy/test_e.py": "",
        "tests/build/test_f.py": "",
        "build_out/test_g.py": "",
        "pkg/generated/test_h.py": "",
        "pkg/test_i.py": "",
        "pkg/node_modules/test_j.py": "",
        "pkg/x.egg-info/test_k.py": "",
        "outside/test_out.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "tests" / "test_link.py").symlink_to(root / "tests" / "test_a.py")
    (root / "tests" / "test_outside_link.py").symlink_to(root / "outside" / "test_out.py")
    (root / "tests" / "linked_folder").symlink_to(root / "pkg", target_is_directory=True)


def _excluded_by_paths(excluder: discovery.Excluder, path: Path, is_dir: bool) -> bool:
    """The decision as it was made with ``Path`` arithmetic (``os.path.relpath`` and
    ``Path.parents``) before it was made on path text."""
    suffix = "/" if is_dir else ""
    relative = os.path.relpath(path, excluder.base) if excluder.base in path.parents else path.name
    if excluder.excludes.match_file(relative + suffix) or excluder.excludes.match_file(path.name + suffix):
        return True
    folders = [Path(prefix) for prefix, _ in excluder.ignores]
    return any(
        spec.match_file(os.path.relpath(path, folder) + suffix)
        for folder, (_, spec) in zip(folders, excluder.ignores)
        if folder in path.parents
    )


@pytest.mark.parametrize("start", [".", "tests", "tests/sub"])
def test_exclusion_on_path_text_matches_path_arithmetic(tmp_path: Path, start: str) -> None:
    root = tmp_path.resolve() / "project"
    root.mkdir()
    (root / ".git").mkdir()
    _tree(root)
    folder = root / start
    excluder = discovery.Excluder(folder, settings_for(folder))
    for directory, dirnames, filenames in os.walk(folder):
        excluder.add_gitignore(Path(directory))
        for name, is_dir in [*((d, True) for d in dirnames), *((f, False) for f in filenames)]:
            path = Path(directory) / name
            assert excluder.excluded(str(path), name, is_dir) == _excluded_by_paths(excluder, path, is_dir), path
            relative = os.path.relpath(path, excluder.base) if excluder.base in path.parents else path.name
            assert excluder.relative(str(path), name) == relative


# What ``walk`` found with ``Path`` arithmetic (memsafe-fix at dd5c847) on the same trees.
FOUND_BEFORE = {
    ".": [
        "outside/test_out.py",
        "pkg/test_i.py",
        "tests/conftest.py",
        "tests/test_a.py",
        "tests/test_link.py",
        "tests/test_outside_link.py",
        "tests/sub/test_c.py",
        "tests/sub/test_local_keep.py",
    ],
    # Below ``tests``, the link to a file outside it is not followed.
    "tests": [
        "tests/conftest.py",
        "tests/test_a.py",
        "tests/test_link.py",
        "tests/sub/test_c.py",
        "tests/sub/test_local_keep.py",
    ],
    "tests/sub": ["tests/sub/test_c.py", "tests/sub/test_local_keep.py"],
}


@pytest.mark.parametrize("start", FOUND_BEFORE)
def test_walk_finds_what_it_found_before(tmp_path: Path, start: str) -> None:
    root = tmp_path.resolve() / "project"
    root.mkdir()
    (root / ".git").mkdir()
    _tree(root)
    found = [path.relative_to(root).as_posix() for path in discovery.walk(root / start, settings_for(root / start))]
    assert found == FOUND_BEFORE[start]


def test_resolving_each_folder_once_gives_what_resolve_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path.resolve() / "project"
    root.mkdir()
    _tree(root)
    (tmp_path / "elsewhere").symlink_to(root / "tests", target_is_directory=True)
    (root / "tests" / "dangling.py").symlink_to(root / "missing.py")
    monkeypatch.chdir(root / "tests")
    real_folders: dict[Path, str] = {}
    for path in [
        Path("test_a.py"),
        Path("test_link.py"),
        Path("test_outside_link.py"),
        Path("dangling.py"),
        Path("linked_folder/test_i.py"),
        Path("sub/../sub/test_c.py"),
        tmp_path / "elsewhere" / "test_a.py",
        tmp_path / "elsewhere" / "linked_folder" / "test_i.py",
        root / "tests" / "sub" / "test_c.py",
    ]:
        assert discovery._resolved(path, real_folders) == path.resolve(), path


def test_discover_keeps_each_real_file_once(tmp_path: Path) -> None:
    root = tmp_path.resolve() / "project"
    root.mkdir()
    _tree(root)
    (tmp_path / "elsewhere").symlink_to(root / "tests", target_is_directory=True)
    paths = [root / "tests", tmp_path / "elsewhere" / "test_a.py", root / "tests" / "sub" / "test_c.py"]
    found = [path for path in discovery.discover(paths) if isinstance(path, Path)]
    assert len(found) == len({path.resolve() for path in found})
    assert tmp_path / "elsewhere" / "test_a.py" not in found  # the same file as tests/test_a.py


def _settings_by_walking_up(directory: Path) -> tuple[Path | None, Settings]:
    """The nearest ``[tool.memsafe-fix]`` found by reading every ``pyproject.toml`` above."""
    for folder in (directory, *directory.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.memsafe-fix]" in pyproject.read_text():
            return folder, settings_for(folder)
    return None, Settings()


def test_nearest_configuration_from_the_parent_folder(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    files = {
        "a/pyproject.toml": '[tool.memsafe-fix]\nscope = "all"\n',
        "a/b/pyproject.toml": '[project]\nname = "b"\n',  # no table: the one above applies
        "a/b/c/d/pyproject.toml": '[tool.memsafe-fix]\nselect = ["MSF001"]\n',
        "a/b/c/d/e/test_x.py": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for folder in ("a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"):
        directory = root / folder
        expected_root, _ = _settings_by_walking_up(directory)
        settings = settings_for(directory)
        assert settings.root == expected_root, folder
        assert settings.scope == ("mock-using" if expected_root == root / "a/b/c/d" else "all")
        assert settings.select == (("MSF001",) if expected_root == root / "a/b/c/d" else None)
    (root / "a/b/pyproject.toml").write_text("[tool\n")  # broken, and nearer than a/
    settings_for.cache_clear()
    nearest_configuration.cache_clear()
    with pytest.raises(ConfigError, match="cannot read configuration"):
        settings_for(root / "a/b/c")
    assert settings_for(root / "a/b/c/d/e").root == root / "a/b/c/d"  # found before the broken one
    assert settings_for(root / "a", ConfigSource(isolated=True)).root is None


def test_project_root_from_the_parent_folder(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    for name, text in {
        "repo/.git/HEAD": "",
        "repo/src/pkg/tests/x.py": "",
        "repo/tools/pyproject.toml": "[tool.ruff]\nline-length = 100\n",  # tool settings only
        "repo/tools/lib/setup.cfg": "",
        "repo/tools/lib/sub/x.py": "",
        "bare/pyproject.toml": "[tool.ruff]\n",
        "bare/inner/x.py": "",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    project.clear_caches()
    expected = {
        "repo/src/pkg/tests": "repo",
        "repo/tools": "repo",
        "repo/tools/lib/sub": "repo/tools/lib",
        "repo": "repo",
    }
    for folder, answer in expected.items():
        assert project.project_root(root / folder) == root / answer, folder
    # Nothing marks a project above ``bare`` (unless the machine's folders above the test's do).
    if project._marked_project(root) is None:
        assert project.project_root(root / "bare" / "inner") == root / "bare"


def test_a_run_leaves_the_collector_as_it_found_it(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("from unittest.mock import MagicMock\n\n\ndef test_x():\n    MagicMock()\n")
    settings = settings_for(tmp_path)
    jobs = [Job(tmp_path / "test_x.py", "test_x.py", settings, Mode.CHECK)]
    for _ in range(2):  # cold, then warm
        results = run(jobs, 1, Cache(tmp_path / "cache"))
        next(results)
        assert gc.isenabled()
        results.close()  # stopped early, as an interrupt does
        assert gc.isenabled() and gc.get_freeze_count() == 0
    assert [r.findings for r in run(jobs, 1, Cache(tmp_path / "cache"))] != [[]]
    assert gc.get_freeze_count() == 0
