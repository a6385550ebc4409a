"""Find the files to process: pytest test files and ``conftest.py`` under the given directories,
minus ``.gitignore``d paths and the usual virtualenv/build folders. Files named explicitly are
always processed."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pathspec

from memsafe_fix.config import Settings, settings_for

DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", "build", "dist", "node_modules", "site-packages", ".eggs",
    "*.egg-info", "_build", "buck-out", "__pypackages__", ".direnv",
)  # fmt: skip


@dataclass(frozen=True)
class MissingPath:
    path: Path


def is_test_file(name: str, settings: Settings) -> bool:
    return name == "conftest.py" or any(fnmatch.fnmatch(name, pattern) for pattern in settings.python_files)


def _gitignore(directory: Path) -> pathspec.PathSpec | None:
    try:
        lines = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _git_root(directory: Path) -> Path | None:
    for folder in (directory, *directory.parents):
        if (folder / ".git").exists():
            return folder
    return None


def walk(root: Path, settings: Settings) -> Iterator[Path]:
    """Test files below ``root`` in a stable (sorted) order."""
    root = root.resolve()
    base = settings.root or root
    excludes = pathspec.GitIgnoreSpec.from_lines([*(settings.exclude or DEFAULT_EXCLUDE), *settings.extend_exclude])
    # .gitignore files from the repository root (else the walk's root) down to ``root`` apply too.
    top = _git_root(root) or root
    ignores: list[tuple[Path, pathspec.PathSpec]] = []
    for folder in reversed([root, *root.parents]):
        if folder != root and (folder == top or top in folder.parents):
            spec = _gitignore(folder)
            if spec is not None:
                ignores.append((folder, spec))

    def ignored(path: Path, is_dir: bool) -> bool:
        suffix = "/" if is_dir else ""
        relative = os.path.relpath(path, base) if base in path.parents else path.name
        if excludes.match_file(relative + suffix) or excludes.match_file(path.name + suffix):
            return True
        return any(
            spec.match_file(os.path.relpath(path, folder) + suffix)
            for folder, spec in ignores
            if folder in path.parents
        )

    for directory, dirnames, filenames in os.walk(root):
        current = Path(directory)
        spec = _gitignore(current)
        if spec is not None:
            ignores.append((current, spec))
        dirnames[:] = sorted(d for d in dirnames if not ignored(current / d, True))
        for name in sorted(filenames):
            if name.endswith(".py") and is_test_file(name, settings) and not ignored(current / name, False):
                yield current / name


def discover(paths: list[Path], config_file: Path | None = None) -> Iterator[Path | MissingPath]:
    seen: set[Path] = set()
    for path in paths:
        if path.is_file():
            found: Iterator[Path] = iter([path])
        elif path.is_dir():
            found = walk(path, settings_for(path, config_file))
        else:
            yield MissingPath(path)
            continue
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file
