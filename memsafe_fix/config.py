"""Settings: ``[tool.memsafe-fix]`` in the nearest ``pyproject.toml`` plus pytest's own
collection options (``python_files``, ``python_classes``, ``python_functions``) from the nearest
pytest configuration file."""

from __future__ import annotations

import configparser
import shlex
import sys
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import pathspec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

SCOPES = ("mock-using", "all")
GROUP_NAMES = ("class", "module", "module-class")
FUNCTION_GC = ("inline", "fixture", "off")
DEFAULT_SKIP_REASON = "timing is unreliable on pytest-xdist workers; run without -n"


class ConfigError(Exception):
    """A configuration file or value that memsafe-fix cannot use."""


@dataclass(frozen=True)
class Settings:
    scope: str = "mock-using"
    group_name: str = "class"
    performance_markers: tuple[str, ...] = ("performance",)
    skip_reason: str = DEFAULT_SKIP_REASON
    function_gc: str = "inline"
    select: Optional[tuple[str, ...]] = None
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    extend_exclude: tuple[str, ...] = ()
    # Gitignore-style patterns of the files to walk (empty: pytest's test files and conftest.py).
    include: tuple[str, ...] = ()
    respect_gitignore: bool = True
    # Apply the excludes to files named on the command line too (for pre-commit).
    force_exclude: bool = False
    # ((gitignore-style pattern, (codes...)), ...): rules ignored for matching files.
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Folders (relative to the configuration's folder) to find project modules in.
    source_roots: tuple[str, ...] = ()
    # Dotted names of extra callables that create mocks (``tests.factories.make_client``).
    mock_factories: tuple[str, ...] = ()
    # Dotted names of decorators that keep an ``async def`` a coroutine function (MSF004).
    async_decorators: tuple[str, ...] = ()
    # Also apply fixes that can change what a test does (MSF004's ``new=AsyncMock(...)``).
    unsafe_fixes: bool = False
    # pytest's collection options, read from the project's pytest configuration.
    python_files: tuple[str, ...] = ("test_*.py", "*_test.py")
    python_classes: tuple[str, ...] = ("Test",)
    python_functions: tuple[str, ...] = ("test",)
    # Directory of the pyproject.toml the settings came from (None: defaults only).
    root: Optional[Path] = field(default=None, compare=False)

    def rule_enabled(self, code: str, path: Optional[Path] = None) -> bool:
        selected = self.select is None or any(code.startswith(s) for s in self.select)
        ignored = [*self.ignore, *(self.ignored_for(path) if path is not None else ())]
        return selected and not any(code.startswith(i) for i in ignored)

    def ignored_for(self, path: Path) -> tuple[str, ...]:
        """Codes that ``per-file-ignores`` turns off for ``path``."""
        if not self.per_file_ignores:
            return ()
        base = self.root or Path.cwd()
        try:
            relative = path.absolute().relative_to(base.absolute()).as_posix()
        except ValueError:
            relative = path.name
        return tuple(
            code
            for pattern, codes in self.per_file_ignores
            if pathspec.GitIgnoreSpec.from_lines([pattern]).match_file(relative)
            for code in codes
        )


PYTEST_COLLECTION_OPTIONS = ("python_files", "python_classes", "python_functions")
_CHOICES = {"scope": SCOPES, "group-name": GROUP_NAMES, "function-gc": FUNCTION_GC}
_LIST_KEYS = (
    "performance-markers", "select", "ignore", "exclude", "extend-exclude", "include", "source-roots",
    "mock-factories", "async-decorators",
)  # fmt: skip
_BOOL_KEYS = ("respect-gitignore", "force-exclude", "unsafe-fixes")
KNOWN_KEYS = tuple(
    sorted(
        f.name.replace("_", "-")
        for f in fields(Settings)
        if f.name != "root" and f.name not in PYTEST_COLLECTION_OPTIONS
    )
)


def _memsafe_values(table: dict[str, Any], source: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{source}: unknown key `{key}` in [tool.memsafe-fix] (known: {', '.join(KNOWN_KEYS)})")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{source}: `{key}` must be one of {', '.join(map(repr, _CHOICES[key]))}, not {value!r}")
        if key in _LIST_KEYS:
            value = _strings(value, key, source)
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: `{key}` must be true or false")
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: `{key}` must be a table of pattern = [codes]")
            value = tuple((pattern, _strings(codes, f"{key}.{pattern}", source)) for pattern, codes in value.items())
        elif not isinstance(value, str):
            raise ConfigError(f"{source}: `{key}` must be a string")
        values[key.replace("-", "_")] = value
    return values


def _strings(value: Any, key: str, source: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: `{key}` must be a list of strings")
    return tuple(value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc


def _ini_list(value: Any) -> tuple[str, ...]:
    """pytest ``args``-type ini values: whitespace-separated in ini files, a list in TOML."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(shlex.split(str(value)))


def _pytest_options(directory: Path) -> dict[str, tuple[str, ...]]:
    """Collection options from the first pytest config file found walking up, as pytest does."""
    for folder in (directory, *directory.parents):
        for name in ("pytest.ini", ".pytest.ini"):
            if (folder / name).is_file():
                return _ini_section(folder / name, "pytest")
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            tool = _read_toml(pyproject).get("tool", {}).get("pytest")
            if isinstance(tool, dict):
                section = tool.get("ini_options", tool)
                return _collection_options(section)
        if (folder / "tox.ini").is_file():
            found = _ini_section(folder / "tox.ini", "pytest", required=True)
            if found is not None:
                return found
        if (folder / "setup.cfg").is_file():
            found = _ini_section(folder / "setup.cfg", "tool:pytest", required=True)
            if found is not None:
                return found
    return {}


def _ini_section(path: Path, section: str, required: bool = False) -> Any:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
    if not parser.has_section(section):
        return None if required else {}
    return _collection_options(dict(parser.items(section)))


def _collection_options(section: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    return {k: _ini_list(v) for k, v in section.items() if k in PYTEST_COLLECTION_OPTIONS}


@lru_cache(maxsize=None)
def settings_for(directory: Path, config_file: Optional[Path] = None) -> Settings:
    """Settings for files in ``directory``: the nearest ``[tool.memsafe-fix]`` wins."""
    directory = directory.resolve()
    values: dict[str, Any] = {}
    root: Optional[Path] = None
    candidates = [config_file] if config_file else [d / "pyproject.toml" for d in (directory, *directory.parents)]
    for pyproject in candidates:
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("memsafe-fix")
            if table is not None or config_file:
                values = _memsafe_values(table or {}, pyproject)
                root = pyproject.parent
                break
    values.update(_pytest_options(directory))
    return replace(Settings(), root=root, **values)
