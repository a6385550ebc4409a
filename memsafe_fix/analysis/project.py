"""The project around a file: its root and the top-level names of its own modules."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


@lru_cache(maxsize=None)
def project_root(directory: Path) -> Path:
    """The nearest folder holding a ``pyproject.toml``, ``setup.py``/``setup.cfg`` or ``.git``."""
    for folder in (directory, *directory.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
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
    """Modules importable from the project root, ``src/``, and the test file's own folder."""
    root = project_root(directory)
    return _module_names(root) | _module_names(root / "src") | _module_names(directory)
