"""Find the files to process: pytest test files and ``conftest.py`` under the given directories,
minus ``.gitignore``d (and ``.git/info/exclude``d) paths and the usual virtualenv/build folders.
Files named explicitly are always processed. Only regular files are read: what cannot be read
(a folder that may not be listed or searched, a symlink loop, a dangling link) is reported as
``Unreadable``; a FIFO or device is skipped, or reported when named explicitly."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pathspec

from memsafe_fix.config import ConfigError, ConfigSource, Settings, settings_for

DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", ".mypy_cache",
    ".pytest_cache", ".ruff_cache", "build", "dist", "node_modules", "site-packages", ".eggs",
    "*.egg-info", "_build", "buck-out", "__pypackages__", ".direnv",
)  # fmt: skip


@dataclass(frozen=True)
class MissingPath:
    path: Path


@dataclass(frozen=True)
class Unreadable:
    """A file or folder that cannot be read, and why (``cannot read folder: Permission denied``)."""

    path: Path
    reason: str
    folder: bool = False


@dataclass(frozen=True)
class BadConfig:
    """A path whose settings cannot be read: it is skipped, the other paths are not."""

    error: ConfigError


def is_test_file(name: str, settings: Settings) -> bool:
    return name == "conftest.py" or any(fnmatch.fnmatch(name, pattern) for pattern in settings.python_files)


def _ignore_file(path: Path) -> pathspec.PathSpec | None:
    """A ``.gitignore``-format file's patterns; lines git would not accept are left out, as
    git leaves them out."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except ValueError:
        return pathspec.GitIgnoreSpec.from_lines([line for line in lines if _valid_pattern(line)])


def _valid_pattern(line: str) -> bool:
    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except ValueError:
        return False
    return True


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder on the way that may not be searched
        return False


def _git_root(directory: Path) -> Path | None:
    for folder in (directory, *directory.parents):
        if _exists(folder / ".git"):
            return folder
    return None


def _info_exclude(git_root: Path) -> Path:
    """The repository's ``info/exclude``; a worktree's ``.git`` file points to its git folder,
    whose ``commondir`` holds it."""
    dot_git = git_root / ".git"
    if dot_git.is_dir():
        return dot_git / "info" / "exclude"
    try:
        git_dir = Path(dot_git.read_text(encoding="utf-8").partition("gitdir:")[2].strip())
        git_dir = git_root / git_dir if not git_dir.is_absolute() else git_dir
        common = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return dot_git / "info" / "exclude"  # does not exist: nothing excluded
    return git_dir / common / "info" / "exclude"


def _below(folder: Path) -> str:
    """The prefix of the paths below ``folder`` (``/a/b/`` for ``/a/b``, ``/`` for ``/``)."""
    text = str(folder)
    return text if text.endswith(os.sep) else text + os.sep


class Excluder:
    """Decides which paths ``exclude``/``extend-exclude`` and ``.gitignore`` files rule out.

    Paths are absolute and normalized (resolved, or found below a resolved folder), so a path
    below a folder is the folder's text and a separator, then its relative path: matched as
    text, which costs a fraction of ``Path`` arithmetic for every file and folder of a suite."""

    def __init__(self, start: Path, settings: Settings) -> None:
        self.base = settings.root or start
        self._base_prefix = _below(self.base)
        patterns = [*(settings.exclude or DEFAULT_EXCLUDE), *settings.extend_exclude]
        self.excludes = pathspec.GitIgnoreSpec.from_lines(patterns)
        self.respect_gitignore = settings.respect_gitignore
        # The folder of each ignore file (as the prefix of the paths below it), and its patterns.
        self.ignores: list[tuple[str, pathspec.PathSpec]] = []
        # .gitignore files from the repository root (else ``start``) down to ``start`` apply too,
        # and the repository's own .git/info/exclude.
        git_root = _git_root(start)
        if git_root is not None and self.respect_gitignore:
            spec = _ignore_file(_info_exclude(git_root))
            if spec is not None:
                self.ignores.append((_below(git_root), spec))
        top = git_root or start
        for folder in reversed([start, *start.parents]):
            if folder != start and (folder == top or top in folder.parents):
                self.add_gitignore(folder)

    def add_gitignore(self, folder: Path) -> None:
        spec = _ignore_file(folder / ".gitignore") if self.respect_gitignore else None
        if spec is not None:
            self.ignores.append((_below(folder), spec))

    def relative(self, path: str, name: str) -> str:
        """``path`` (named ``name``) relative to the configuration's folder, or its name when
        it is not below it."""
        return path[len(self._base_prefix) :] if _strictly_below(path, self._base_prefix) else name

    def excluded(self, path: str, name: str, is_dir: bool) -> bool:
        suffix = "/" if is_dir else ""
        if self.excludes.match_file(self.relative(path, name) + suffix) or self.excludes.match_file(name + suffix):
            return True
        return any(
            spec.match_file(path[len(prefix) :] + suffix)
            for prefix, spec in self.ignores
            if _strictly_below(path, prefix)
        )


def _strictly_below(path: str, prefix: str) -> bool:
    return len(path) > len(prefix) and path.startswith(prefix)


def walk(root: Path, settings: Settings) -> Iterator[Path | Unreadable]:
    """Test files below ``root`` (or files matching ``include``) in a stable, sorted order,
    and the folders and files below it that cannot be read."""
    root = root.resolve()
    paths = Excluder(root, settings)
    include = pathspec.GitIgnoreSpec.from_lines(settings.include) if settings.include else None
    unlistable: list[OSError] = []
    # ``os.walk`` does not follow links to folders: every folder it yields is below the
    # resolved ``root`` with no link on the way, so its text is its real path.
    for directory, dirnames, filenames in os.walk(root, onerror=unlistable.append):
        yield from _unreadable_folders(unlistable)
        current = Path(directory)
        if not os.access(directory, os.R_OK | os.X_OK):  # listed, but its files cannot be opened
            dirnames[:] = []
            yield Unreadable(current, "cannot read folder: Permission denied", folder=True)
            continue
        paths.add_gitignore(current)
        below = _below(current)
        dirnames[:] = sorted(d for d in dirnames if not paths.excluded(below + d, d, True))
        for name in sorted(filenames):
            file = below + name
            wanted = (
                include.match_file(paths.relative(file, name))
                if include
                else name.endswith(".py") and is_test_file(name, settings)
            )
            if wanted and not paths.excluded(file, name, False):
                try:
                    status = os.lstat(file)
                    link = stat.S_ISLNK(status.st_mode)
                    if link:
                        status = os.stat(file)
                except OSError as exc:  # a dangling link, a symlink loop
                    yield Unreadable(current / name, f"cannot read file: {exc.strerror or exc}")
                    continue
                # A symlink to a file outside ``root`` is not followed, as in ruff and black.
                outside = link and root not in Path(file).resolve().parents
                if stat.S_ISREG(status.st_mode) and not outside:
                    # a FIFO would block the run; devices and sockets are no test files
                    yield current / name
    yield from _unreadable_folders(unlistable)


def _resolved(file: Path, real_folders: dict[Path, str]) -> Path:
    """``file.resolve()``, resolving each folder once: a file that is no link is its real
    folder's entry (``os.path.realpath`` reads every folder above each file again)."""
    if os.path.islink(file):
        return file.resolve()
    folder = file.parent
    if folder not in real_folders:
        real_folders[folder] = os.path.realpath(folder)
    return Path(real_folders[folder], file.name)


def _unreadable_folders(errors: list[OSError]) -> Iterator[Unreadable]:
    while errors:
        error = errors.pop(0)
        yield Unreadable(Path(error.filename), f"cannot read folder: {error.strerror or error}", folder=True)


def force_excluded(path: Path, settings: Settings) -> bool:
    """With ``force-exclude``: whether a file named explicitly, or a folder above it inside the
    project, is excluded (pre-commit passes files one by one)."""
    path = path.resolve()
    top = settings.root or Path.cwd().resolve()
    paths = Excluder(path.parent, settings)
    folders = [folder for folder in path.parents if top in folder.parents]
    return paths.excluded(str(path), path.name, False) or any(
        paths.excluded(str(folder), folder.name, True) for folder in folders
    )


def discover(
    paths: list[Path], source: ConfigSource = ConfigSource(), force_exclude: bool = False
) -> Iterator[Path | MissingPath | Unreadable | BadConfig]:
    seen: set[Path] = set()
    real_folders: dict[Path, str] = {}
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            missing = exc.errno in (errno.ENOENT, errno.ENOTDIR)
            yield MissingPath(path) if missing else Unreadable(path, f"cannot read: {exc.strerror or exc}")
            continue
        try:
            if stat.S_ISREG(mode):
                settings = settings_for(path.parent, source)
                if (force_exclude or settings.force_exclude) and force_excluded(path, settings):
                    continue
                found: Iterator[Path | Unreadable] = iter([path])
            elif not stat.S_ISDIR(mode):
                yield Unreadable(path, "not a regular file")
                continue
            elif not os.access(path, os.R_OK | os.X_OK):
                yield Unreadable(path, "cannot read folder: Permission denied", folder=True)
                continue
            else:
                found = walk(path, settings_for(path, source))
            for file in found:
                if isinstance(file, Unreadable):
                    yield file
                    continue
                key = _resolved(file, real_folders)
                if key not in seen:
                    seen.add(key)
                    yield file
        except ConfigError as exc:
            yield BadConfig(exc)
