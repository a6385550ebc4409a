"""The project around a file: its root and the top-level names of its own modules."""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

from memsafe_fix.analysis.index import load_tree
from memsafe_fix.analysis.module import Def, ModuleAnalysis
from memsafe_fix.config import Settings

ROOT_MARKERS = ("setup.py", "setup.cfg", ".git", ".hg")
# The first key of each table header (``[tool.ruff]`` -> ``tool``, ``[[tool.x]]`` too).
_TABLE_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*[\"']?([^\].\s\"']+)", re.MULTILINE)


@lru_cache(maxsize=None)
def project_root(directory: Path) -> Path:
    """The nearest folder that holds the project: a ``pyproject.toml`` with a table besides
    ``[tool.*]`` (``[project]``, ``[build-system]``, ``[dependency-groups]``...),
    ``setup.py``/``setup.cfg``, or a ``.git``/``.hg`` root. A ``pyproject.toml`` with tool
    settings only (a ``tests/pyproject.toml`` holding ``[tool.ruff]``) is not the project; the
    nearest one counts only when nothing else is found."""
    marked = _marked_project(directory)
    if marked is not None:
        return marked
    return next((f for f in (directory, *directory.parents) if (f / "pyproject.toml").is_file()), directory)


@lru_cache(maxsize=None)
def _marked_project(directory: Path) -> Optional[Path]:
    """The nearest folder with a project marker, from the answer for the parent: the folders of
    a suite share their ancestors, each looked at once."""
    if any((directory / marker).exists() for marker in ROOT_MARKERS) or _declares_project(directory / "pyproject.toml"):
        return directory
    return None if directory.parent == directory else _marked_project(directory.parent)


def _declares_project(pyproject: Path) -> bool:
    try:
        return any(table != "tool" for table in _TABLE_HEADER.findall(pyproject.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


@lru_cache(maxsize=None)
def package_base(directory: Path) -> Path:
    """The folder above the top-most package holding ``directory``: what pytest's default
    ``prepend`` import mode puts on ``sys.path`` for a test file there."""
    while (directory / "__init__.py").is_file() and directory.parent != directory:
        directory = directory.parent
    return directory


@lru_cache(maxsize=None)
def _module_names(folder: Path) -> frozenset[str]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return frozenset()
    names = {e.name[:-3] for e in entries if e.name.endswith(".py") and e.is_file()}
    names |= {e.name for e in entries if e.is_dir() and os.path.exists(os.path.join(e.path, "__init__.py"))}
    return frozenset(names)


@lru_cache(maxsize=None)
def first_party_names(directory: Path) -> frozenset[str]:
    """Modules importable from the project root, ``src/``, the test file's own folder, and the
    folder above its top-most package."""
    root = project_root(directory)
    folders = {root, root / "src", directory, package_base(directory)}
    return frozenset().union(*(_module_names(folder) for folder in folders))


def _module_file(dotted: str, folder: Path, roots: tuple[Path, ...]) -> Optional[Path]:
    """The file of module ``dotted`` (``pkg.mod`` or relative ``..mod``) imported from a file in
    ``folder``, looked up in ``roots`` when it is absolute."""
    stripped = dotted.lstrip(".")
    level = len(dotted) - len(stripped)
    parts = stripped.split(".") if stripped else []
    if level:
        base = folder
        for _ in range(level - 1):
            base = base.parent
        roots = (base,)
    for root in roots:
        found = _module_file_in(root, tuple(parts))
        if found is not None:
            return found
    return None


@lru_cache(maxsize=None)
def _module_file_in(root: Path, parts: tuple[str, ...]) -> Optional[Path]:
    """The file of the module at ``parts`` below ``root``. Folders share roots (the project
    root, ``src/``, installed packages), so each is probed once per run."""
    target = root.joinpath(*parts)
    if parts:
        module = target.with_suffix(".py")
        if module.is_file():
            return module
    package = target / "__init__.py"  # only built when needed: most lookups probe many roots
    return package if package.is_file() else None


def _project_roots(folder: Path, settings: Settings) -> tuple[Path, ...]:
    """Where the project's own modules are: ``source-roots``, the project root, ``src/``, the
    importing file's folder and the folder above its top-most package."""
    return _roots_of(folder, settings.root, settings.source_roots)


@lru_cache(maxsize=None)
def _roots_of(folder: Path, settings_root: Optional[Path], source_roots: tuple[str, ...]) -> tuple[Path, ...]:
    """``_project_roots``, once per folder (many modules are looked up from each)."""
    root = project_root(folder)
    base = settings_root or root
    configured = tuple(base / source_root for source_root in source_roots)
    return (*configured, root, root / "src", folder, package_base(folder))


@lru_cache(maxsize=None)
def installed_roots(root: Path, python: Optional[Path] = None) -> tuple[Path, ...]:
    """Where installed packages are, without importing them: the ``python`` setting's
    environment, the project's own virtualenvs (``.venv``, ``venv``, any folder right below the
    root holding a ``pyvenv.cfg``, ``$VIRTUAL_ENV``), then this interpreter's ``sys.path``, which
    includes the standard library."""
    environments = [_environment(python)] if python is not None else []
    environments += [root / ".venv", root / "venv", *sorted(p.parent for p in root.glob("*/pyvenv.cfg"))]
    if os.environ.get("VIRTUAL_ENV"):
        environments.append(Path(os.environ["VIRTUAL_ENV"]))
    site_packages = [
        folder
        for environment in dict.fromkeys(environments)
        for folder in sorted(environment.glob("lib/python3*/site-packages")) + [environment / "Lib" / "site-packages"]
        if folder.is_dir()
    ]
    interpreter = [Path(entry) for entry in sys.path if entry and Path(entry).is_dir()]
    return tuple(dict.fromkeys([*site_packages, *interpreter]))


def _environment(python: Path) -> Path:
    """The environment of an interpreter (``.../venv/bin/python`` -> ``.../venv``), or the
    folder itself when given one."""
    if python.is_dir():
        return python
    return python.parent.parent if python.parent.name in ("bin", "Scripts") else python.parent


@dataclass
class Dependencies:
    """What one file's analysis read besides the file itself (for the result cache,
    ``cache.py``): module lookups (dotted name, importing folder, installed too) and the file
    each found, the files loaded, and the ``conftest.py`` files looked for (found or not)."""

    lookups: dict[tuple[str, str, bool], Optional[str]] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    probes: dict[str, bool] = field(default_factory=dict)


# Set while ``recording`` (the engine, for one file with the cache on).
_recording: Optional[Dependencies] = None


@contextmanager
def recording() -> Iterator[Dependencies]:
    """Collect what the analysis done inside reads from other files."""
    global _recording
    previous, _recording = _recording, Dependencies()
    try:
        yield _recording
    finally:
        _recording = previous


def find_module(dotted: str, folder: Path, settings: Settings, installed: bool = False) -> Optional[Path]:
    found = _find_module(dotted, folder, settings, installed)
    if _recording is not None:
        _recording.lookups[(dotted, str(folder), installed)] = str(found) if found is not None else None
    return found


@lru_cache(maxsize=None)
def _find_module(dotted: str, folder: Path, settings: Settings, installed: bool = False) -> Optional[Path]:
    """The source file of module ``dotted`` as imported from a file in ``folder``: in the
    project, and with ``installed`` also among installed packages and the standard library.
    Keyed by folder, so the files of one folder share the answers."""
    roots = _project_roots(folder, settings)
    if installed:
        python = (settings.root or Path.cwd()) / settings.python if settings.python else None
        roots += installed_roots(project_root(folder), python)
    return _module_file(dotted, folder, roots)


def load_module(path: Path, settings: Settings) -> Optional[ModuleAnalysis]:
    if _recording is not None:
        _recording.files.add(str(path))
    return _load_module(path, settings)


@lru_cache(maxsize=None)
def _load_module(path: Path, settings: Settings) -> Optional[ModuleAnalysis]:
    """An imported module's analysis, from its trimmed tree (see ``index.py``): parsed once per
    run, and kept here for every file this process handles."""
    try:
        tree = load_tree(path)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    return ModuleAnalysis("", settings, path.stem if path.name != "__init__.py" else path.parent.name, path, tree)


def imported_class(module: ModuleAnalysis, qualified: str, _depth: int = 0) -> Optional[Def]:
    """The class a name imported into ``module`` refers to, if it is defined in the project:
    ``pkg.mod.Base`` or ``.mod.Base``, following re-exports (``from .x import Base`` in an
    ``__init__``) a few levels deep. Nothing is imported or executed."""
    if module.path is None or _depth > 4 or "." not in qualified:
        return None
    dotted, name = qualified.rsplit(".", 1)
    if not dotted.strip("."):
        dotted += "" if dotted.endswith(".") else "."
    path = find_module(dotted, module.path.parent, module.settings)
    target = load_module(path, module.settings) if path is not None else None
    if target is None:
        return None
    if name in target.module_classes:
        return target.module_classes[name]
    reexported = target.imports.bound.get(name)
    return imported_class(target, reexported, _depth + 1) if reexported else None


def conftests(module: ModuleAnalysis) -> list[ModuleAnalysis]:
    """The ``conftest.py`` files pytest loads for this file (other than itself), nearest first,
    up to the project root."""
    if module.path is None:
        return []
    path = module.path.absolute()
    root = project_root(path.parent)
    found = []
    for folder in path.parents:
        conftest = folder / "conftest.py"
        exists = conftest != path and conftest.is_file()
        if _recording is not None and conftest != path:
            _recording.probes[str(conftest)] = exists
        if exists:
            loaded = load_module(conftest, module.settings)
            if loaded is not None:
                found.append(loaded)
        if folder == root:
            break
    return found


def clear_caches() -> None:
    """Forget what earlier runs in this process learnt about the file system."""
    for cached in (
        project_root,
        _marked_project,
        package_base,
        _module_names,
        first_party_names,
        installed_roots,
        _find_module,
        _roots_of,
        _module_file_in,
        _load_module,
    ):
        cached.cache_clear()
