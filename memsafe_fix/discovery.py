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

from memsafe_fix.config import ConfigError, Settings, settings_for

DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", "build", "dist", "node_modules", "site-packages", ".eggs",
    "*.egg-info", "_build", "buck-out", "__pypackages__", ".direnv",
)  # fmt: skip


@dataclass(frozen=True)
class MissingPath:
    path: Path


@dataclass(frozen=True)
class BadConfig:
    """A path whose settings cannot be read: it is skipped, the other paths are not."""

    error: ConfigError


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


class Excluder:
    """Decides which paths ``exclude``/``extend-exclude`` and ``.gitignore`` files rule out."""

    def __init__(self, start: Path, settings: Settings) -> None:
        self.base = settings.root or start
        patterns = [*(settings.exclude or DEFAULT_EXCLUDE), *settings.extend_exclude]
        self.excludes = pathspec.GitIgnoreSpec.from_lines(patterns)
        self.respect_gitignore = settings.respect_gitignore
        self.ignores: list[tuple[Path, pathspec.PathSpec]] = []
        # .gitignore files from the repository root (else ``start``) down to ``start`` apply too.
        top = _git_root(start) or start
        for folder in reversed([start, *start.parents]):
            if folder != start and (folder == top or top in folder.parents):
                self.add_gitignore(folder)

    def add_gitignore(self, folder: Path) -> None:
        spec = _gitignore(folder) if self.respect_gitignore else None
        if spec is not None:
            self.ignores.append((folder, spec))

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.base) if self.base in path.parents else path.name

    def excluded(self, path: Path, is_dir: bool) -> bool:
        suffix = "/" if is_dir else ""
        if self.excludes.match_file(self.relative(path) + suffix) or self.excludes.match_file(path.name + suffix):
            return True
        return any(
            spec.match_file(os.path.relpath(path, folder) + suffix)
            for folder, spec in self.ignores
            if folder in path.parents
        )


def walk(root: Path, settings: Settings) -> Iterator[Path]:
    """Test files below ``root`` (or files matching ``include``) in a stable, sorted order."""
    root = root.resolve()
    paths = Excluder(root, settings)
    include = pathspec.GitIgnoreSpec.from_lines(settings.include) if settings.include else None
    for directory, dirnames, filenames in os.walk(root):
        current = Path(directory)
        paths.add_gitignore(current)
        dirnames[:] = sorted(d for d in dirnames if not paths.excluded(current / d, True))
        for name in sorted(filenames):
            file = current / name
            wanted = (
                include.match_file(paths.relative(file))
                if include
                else name.endswith(".py") and is_test_file(name, settings)
            )
            # A symlink to a file outside ``root`` is not followed, as in ruff and black.
            outside = file.is_symlink() and root not in file.resolve().parents
            if wanted and not outside and not paths.excluded(file, False):
                yield file


def force_excluded(path: Path, settings: Settings) -> bool:
    """With ``force-exclude``: whether a file named explicitly, or a folder above it inside the
    project, is excluded (pre-commit passes files one by one)."""
    path = path.resolve()
    top = settings.root or Path.cwd().resolve()
    paths = Excluder(path.parent, settings)
    folders = [folder for folder in path.parents if top in folder.parents]
    return paths.excluded(path, False) or any(paths.excluded(folder, True) for folder in folders)


def discover(
    paths: list[Path], config_file: Path | None = None, force_exclude: bool = False
) -> Iterator[Path | MissingPath | BadConfig]:
    seen: set[Path] = set()
    for path in paths:
        try:
            if path.is_file():
                settings = settings_for(path.parent, config_file)
                if (force_exclude or settings.force_exclude) and force_excluded(path, settings):
                    continue
                found: Iterator[Path] = iter([path])
            elif path.is_dir():
                found = walk(path, settings_for(path, config_file))
            else:
                yield MissingPath(path)
                continue
        except ConfigError as exc:
            yield BadConfig(exc)
            continue
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file
