"""What is installed in a project's environment, read from ``*.dist-info/METADATA`` files: never
imported or run, since that environment may be another Python's."""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

from memsafe_fix.analysis.project import installed_roots

# The distributions the project-level rules ask about.
WATCHED = ("pytest", "pytest-xdist", "pytest-memsafe", "pytest-benchmark")
_VERSION = re.compile(r"^Version:\s*(\S+)\s*$", re.MULTILINE)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Environment:
    """Where the packages were looked up (a site-packages folder, or this interpreter's path)
    and the versions of the ``WATCHED`` distributions found there."""

    where: str
    versions: dict[str, str] = field(default_factory=dict)
    # The environment's Python ("3.11.7") and implementation ("cpython"), from its ``pyvenv.cfg``
    # or, for this interpreter's own path, from this interpreter; None where neither says.
    python: Optional[str] = None
    implementation: Optional[str] = None

    def version(self, name: str) -> Optional[str]:
        return self.versions.get(normalize(name))


@lru_cache(maxsize=None)
def project_environment(root: Path) -> Environment:
    """The environment MSF004 reads installed modules from: the project's own virtualenv
    (``installed_roots``), else this interpreter's ``sys.path``."""
    on_path = {str(entry) for entry in sys.path}
    folders = [folder for folder in installed_roots(root) if str(folder) not in on_path]
    where = f"`{_shown(folders[0], root)}`" if folders else f"the environment of {sys.executable}"
    if folders:
        python, implementation = _venv_python(folders[0])
    else:
        python, implementation = platform.python_version(), sys.implementation.name
        folders = [Path(entry) for entry in sys.path if entry and Path(entry).is_dir()]
    versions: dict[str, str] = {}
    for folder in folders:
        for info in folder.glob("*.dist-info"):
            name = normalize(info.name[: -len(".dist-info")].rsplit("-", 1)[0])
            if name in WATCHED and name not in versions:  # the first on the path wins, as on import
                try:
                    found = _VERSION.search((info / "METADATA").read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    continue
                if found:
                    versions[name] = found[1]
    return Environment(where, versions, python, implementation)


def _shown(folder: Path, root: Path) -> str:
    try:
        return str(folder.relative_to(root))
    except ValueError:
        return str(folder)


_VENV_VERSION = re.compile(r"^\s*(version|version_info)\s*=\s*(\d+\.\d+\.\d+)", re.MULTILINE)
_VENV_IMPLEMENTATION = re.compile(r"^\s*implementation\s*=\s*(\S+)", re.MULTILINE)


def _venv_python(site_packages: Path) -> tuple[Optional[str], Optional[str]]:
    """The Python version and implementation a virtualenv's ``pyvenv.cfg`` names (``venv``
    writes ``version = 3.11.7``, virtualenv ``version_info = 3.11.7.final.0`` and
    ``implementation = CPython``), for its ``lib/python3.X/site-packages`` (or
    ``Lib/site-packages``) folder. Environments found there are CPython's (PyPy's folder is
    ``lib/pypy3.X``) unless the file says otherwise."""
    environment = site_packages.parent.parent if site_packages.parent.name == "Lib" else site_packages.parents[2]
    try:
        text = (environment / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None
    version, implementation = _VENV_VERSION.search(text), _VENV_IMPLEMENTATION.search(text)
    return (version[2] if version else None), (implementation[1].lower() if implementation else "cpython")
