"""What a project's pytest configuration and declared dependencies say, for the project-level
rules (MSF010, MSF011): how ``addopts`` distributes tests, whether unregistered markers are
errors, which markers are registered, whether pytest-xdist is a dependency, and where in the
configuration file each of these is written."""

from __future__ import annotations

import configparser
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from memsafe_fix.analysis.environment import Environment, normalize, project_environment
from memsafe_fix.analysis.markers import marker_line_name
from memsafe_fix.analysis.project import project_root
from memsafe_fix.config import PytestConfig, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

XDIST = "pytest-xdist"


def addopts_tokens(config: Optional[PytestConfig]) -> list[str]:
    """``addopts`` as pytest passes it to its argument parser: a string is split like a shell
    command line, a list is used as it is."""
    value = config.values.get("addopts") if config else None
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return shlex.split(str(value))
    except ValueError:  # unbalanced quotes: pytest fails on them too
        return str(value).split()


def _option_values(tokens: list[str], long: str, short: Optional[str] = None) -> Iterator[str]:
    """The values given to an option, in order: ``--long V``, ``--long=V``, ``-s V``, ``-sV``."""
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token == long or (short and token == short):
            if following is not None:
                yield following
        elif token.startswith(long + "="):
            yield token[len(long) + 1 :]
        elif short and token.startswith(short) and len(token) > len(short):
            yield token[len(short) :].removeprefix("=")


def dist_option(tokens: list[str]) -> Optional[str]:
    """How ``addopts`` sets pytest-xdist's distribution: the spelling that wins (``--dist
    loadscope``, ``-d``), or None when it does not set one. pytest-xdist applies ``-d`` (a
    shortcut for ``--dist load``) after ``--dist``, wherever it is."""
    if "-d" in tokens:
        return "-d"
    values = list(_option_values(tokens, "--dist"))
    return f"--dist {values[-1]}" if values else None


def xdist_disabled(tokens: list[str]) -> bool:
    """``-p no:xdist``: the plugin is not loaded, so ``--dist`` is an unknown option."""
    return any(v.strip() in ("no:xdist", "no:xdist.plugin") for v in _option_values(tokens, "--plugin", "-p"))


def _truth(value: Any) -> bool:
    """pytest's reading of a ``bool`` ini value (``_strtobool``; a native TOML bool as it is)."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("y", "yes", "t", "true", "on", "1")


def strict_markers(config: Optional[PytestConfig]) -> Optional[str]:
    """What makes unregistered markers collection errors (``--strict-markers`` in ``addopts``,
    ``strict_markers = true``, pytest 9's ``strict = true``), or None when they are not."""
    if config is None:
        return None
    tokens = addopts_tokens(config)
    overrides: dict[str, tuple[str, str]] = {}
    for token in tokens:
        if token == "--strict-markers":
            overrides["strict_markers"] = ("true", "`--strict-markers` in `addopts`")
        elif token == "--strict":
            overrides["strict"] = ("true", "`--strict` in `addopts`")
    for value in (*_option_values(tokens, "--override-ini", "-o"),):
        key, _, setting = value.partition("=")
        if key.strip() in ("strict_markers", "strict"):
            overrides[key.strip()] = (setting, f"`-o {value}` in `addopts`")

    def ini(name: str) -> Optional[tuple[Any, str]]:
        if name in overrides:
            return overrides[name]
        if name in config.values:
            return config.values[name], f"`{name} = {_spell(config.values[name])}`"
        return None

    chosen = ini("strict_markers") or ini("strict")
    return chosen[1] if chosen and _truth(chosen[0]) else None


def _spell(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def marker_lines(config: Optional[PytestConfig]) -> list[str]:
    """The ``markers`` ini option's lines (a list, or one string with a line per marker)."""
    value = config.values.get("markers") if config else None
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [line.strip() for line in str(value).split("\n") if line.strip()]


def registered_in_config(config: Optional[PytestConfig]) -> frozenset[str]:
    return frozenset(marker_line_name(line) for line in marker_lines(config))


# --- where things are written ---------------------------------------------------------------


def _header_pattern(config: PytestConfig) -> re.Pattern[str]:
    """``[tool.pytest.ini_options]`` (TOML allows spaces around the dots), ``[tool:pytest]``..."""
    parts = config.section.split(".") if config.is_toml else [config.section]
    body = r"\s*\.\s*".join(re.escape(p) for p in parts)
    return re.compile(rf"^\s*\[\s*{body}\s*\]")


def locate(config: PytestConfig, text: str, keys: Iterable[str]) -> tuple[int, int]:
    """Line and column of the first of ``keys`` in the config's section, else of the section
    header, else line 1."""
    lines = text.splitlines()
    header = _header_pattern(config)
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return 1, 1
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*\[", lines[i])), len(lines))
    for key in keys:
        key_pattern = re.compile(rf"^(\s*){re.escape(key)}\s*[=:]")
        for i in range(start + 1, end):
            found = key_pattern.match(lines[i])
            if found:
                return i + 1, len(found[1]) + 1
    return start + 1, len(lines[start]) - len(lines[start].lstrip()) + 1


# --- declared dependencies ------------------------------------------------------------------

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_EXACT_PIN = re.compile(r"^===?\s*([0-9][0-9A-Za-z.!+_-]*)\s*(;.*)?$")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def drops_groups(pytest_version: str, xdist_version: str) -> bool:
    """Whether this pair ignores ``xdist_group``: pytest 9.2 or newer with pytest-xdist 3.8.0 or
    older (xdist sets ``item._nodeid``, which pytest 9.2 no longer reads; pytest-xdist issue
    #1386)."""
    return version_tuple(pytest_version)[:2] >= (9, 2) and version_tuple(xdist_version) <= (3, 8, 0)


@dataclass
class Dependencies:
    """The packages a project declares (any requirements source), and the exact versions it
    pins (``==`` requirements, lock files)."""

    names: set[str] = field(default_factory=set)
    pins: dict[str, str] = field(default_factory=dict)

    def add(self, requirement: str) -> None:
        requirement = requirement.split("#", 1)[0].strip()
        if not requirement or requirement.startswith("-"):
            return
        match = _REQUIREMENT.match(requirement)
        if not match:
            return
        name = normalize(match[1])
        self.names.add(name)
        pin = _EXACT_PIN.match(match[3].strip())
        if pin:
            self.pins[name] = pin[1]

    def pin(self, name: str, version: str) -> None:
        self.names.add(normalize(name))
        self.pins[normalize(name)] = version

    def __contains__(self, name: str) -> bool:
        return normalize(name) in self.names

    def grouping_broken(self) -> Optional[str]:
        """The pinned versions, when they are a pair that ignores ``xdist_group``."""
        pytest_pin, xdist_pin = self.pins.get("pytest"), self.pins.get(XDIST)
        if pytest_pin is None or xdist_pin is None or not drops_groups(pytest_pin, xdist_pin):
            return None
        return f"pytest {pytest_pin} with pytest-xdist {xdist_pin}"


def _lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _from_pyproject(data: dict[str, Any], found: Dependencies) -> None:
    project = data.get("project", {})
    for requirement in _lines(project.get("dependencies")):
        found.add(requirement)
    for extra in (project.get("optional-dependencies") or {}).values():
        for requirement in _lines(extra):
            found.add(requirement)
    for group in (data.get("dependency-groups") or {}).values():
        for requirement in _lines(group):
            found.add(requirement)
    tool = data.get("tool", {})
    poetry = tool.get("poetry", {})
    tables = [poetry.get("dependencies"), poetry.get("dev-dependencies")]
    tables += [group.get("dependencies") for group in (poetry.get("group") or {}).values() if isinstance(group, dict)]
    for table in tables:
        for name, spec in (table or {}).items():
            version = spec if isinstance(spec, str) else spec.get("version", "") if isinstance(spec, dict) else ""
            found.add(f"{name}{version}" if version.startswith(("=", "<", ">", "!", "~")) else name)
    for group in (tool.get("pdm", {}).get("dev-dependencies") or {}).values():
        for requirement in _lines(group):
            found.add(requirement)
    for requirement in _lines(tool.get("uv", {}).get("dev-dependencies")):
        found.add(requirement)
    for env in (tool.get("hatch", {}).get("envs") or {}).values():
        if isinstance(env, dict):
            for key in ("dependencies", "extra-dependencies"):
                for requirement in _lines(env.get(key)):
                    found.add(requirement)


def _from_ini(path: Path, found: Dependencies) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return
    for section in parser.sections():
        keys: tuple[str, ...] = ()
        if section == "options":
            keys = ("install_requires", "tests_require")
        elif section == "options.extras_require":
            keys = tuple(parser.options(section))
        elif section.startswith("testenv"):
            keys = ("deps",)
        for key in keys:
            for line in parser.get(section, key, fallback="").splitlines():
                # tox factor conditions: ``py311: pytest-xdist``
                found.add(line.split(":", 1)[1] if re.match(r"^\s*[\w,!-]+:\s", line) else line)


def _from_lock(path: Path, found: Dependencies) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    for package in data.get("package", []):
        if (
            isinstance(package, dict)
            and isinstance(package.get("name"), str)
            and isinstance(package.get("version"), str)
        ):
            found.pin(package["name"], package["version"])


_QUOTED_XDIST = re.compile(r"""["'](pytest[-_.]xdist)\s*(===?\s*[0-9][^"';,\s]*)?[^"']*["']""", re.IGNORECASE)


def find_dependencies(folder: Path) -> Dependencies:
    """What the project in ``folder`` declares: ``pyproject.toml`` (PEP 621, PEP 735 groups,
    Poetry, PDM, uv, Hatch), ``setup.cfg``, ``tox.ini``, ``requirements*.txt``/``.in`` (also in
    a ``requirements/`` folder), ``Pipfile``, lock files (uv, Poetry, PDM), and a quoted
    ``pytest-xdist`` in ``setup.py`` or ``noxfile.py``. Looks in ``folder`` and the folders
    above it up to the repository root (only ``folder`` outside a git repository)."""
    found = Dependencies()
    for base in _project_folders(folder):
        pyproject = base / "pyproject.toml"
        if pyproject.is_file():
            try:
                _from_pyproject(tomllib.loads(pyproject.read_text(encoding="utf-8")), found)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                pass
        for name in ("setup.cfg", "tox.ini"):
            if (base / name).is_file():
                _from_ini(base / name, found)
        requirement_files = [
            *base.glob("*requirements*.txt"),
            *base.glob("*requirements*.in"),
            *base.glob("requirements*/*.txt"),
            *base.glob("requirements*/*.in"),
        ]
        for requirements in sorted(requirement_files):
            try:
                for line in requirements.read_text(encoding="utf-8", errors="replace").splitlines():
                    found.add(line)
            except OSError:
                pass
        pipfile = base / "Pipfile"
        if pipfile.is_file():
            try:
                data = tomllib.loads(pipfile.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                data = {}
            for table in ("packages", "dev-packages"):
                for name, spec in (data.get(table) or {}).items():
                    found.add(name + (spec if isinstance(spec, str) and spec.startswith("=") else ""))
        for lock in ("uv.lock", "poetry.lock", "pdm.lock"):
            if (base / lock).is_file():
                _from_lock(base / lock, found)
        for script in ("setup.py", "noxfile.py"):
            try:
                text = (base / script).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for match in _QUOTED_XDIST.finditer(text):
                found.add(match[1] + (match[2] or ""))
    return found


def _project_folders(folder: Path) -> list[Path]:
    for top in (folder, *folder.parents):
        if (top / ".git").exists():
            return [f for f in (folder, *folder.parents) if f == top or top in f.parents]
    return [folder]


# --- the project as the rules see it --------------------------------------------------------


@dataclass
class Project:
    """One pytest configuration and the test files that use it, as one run found them."""

    # The pytest configuration (None: no file configures pytest for these tests).
    config: Optional[PytestConfig]
    # The file findings are reported at and fixes edit: the configuration file, else the
    # nearest ``pyproject.toml``.
    location: Path
    text: str
    settings: Settings
    # Markers the test files use once this run's fixes are applied, and those conftests register.
    markers: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)
    # The markers the test files used before this run's fixes.
    existing_markers: set[str] = field(default_factory=set)
    # Whether this run's fixes add (or, with --check, would add) garbage collections to the
    # test files (MSF002, MSF005).
    adds_collections: bool = False

    @cached_property
    def tokens(self) -> list[str]:
        return addopts_tokens(self.config)

    @cached_property
    def dependencies(self) -> Dependencies:
        return find_dependencies(self.location.parent)

    @property
    def environment(self) -> Environment:
        """What is installed where the project's tests run."""
        return project_environment(project_root(self.location.parent.resolve()))

    @property
    def uses_xdist_group(self) -> bool:
        return "xdist_group" in self.markers

    @property
    def xdist_declared(self) -> bool:
        return XDIST in self.dependencies

    @property
    def editable(self) -> bool:
        """Whether fixes can edit the file: a ``pyproject.toml``, or ``pytest.toml``."""
        return self.location.suffix == ".toml"

    def position(self, *keys: str) -> tuple[int, int]:
        if self.config is None or not self.config.has_section:
            return 1, 1
        return locate(self.config, self.text, keys)
