"""Settings: ``[tool.memsafe-fix]`` in the nearest ``pyproject.toml`` plus pytest's own
collection options (``python_files``, ``python_classes``, ``python_functions``) from the nearest
pytest configuration file, which ``find_pytest_config`` finds as pytest does."""

from __future__ import annotations

import configparser
import re
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
# The collection the teardowns call: "young" collects generations 0 and 1 (`gc.collect(1)`),
# "full" every generation (`gc.collect()`, the seed pattern's literal call). See MSF002's docs.
TEARDOWN_GC = ("young", "full")
DEFAULT_SKIP_REASON = "timing is unreliable on pytest-xdist workers; run without -n"


class ConfigError(Exception):
    """A configuration file or value that memsafe-fix cannot use; ``path``, ``line`` and
    ``col`` say where, when known."""

    def __init__(self, message: str, path: Optional[Path] = None, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.path, self.line, self.col = path, line, col

    def located(self, display: str) -> str:
        """The one-line error for ``display`` (the file's path as shown)."""
        message = str(self)
        prefix = f"{self.path}: "
        if self.path is not None and message.startswith(prefix):
            message = message[len(prefix) :]
        return f"{display}:{self.line}:{self.col}: error: {message}"


@dataclass(frozen=True)
class Settings:
    scope: str = "mock-using"
    # None: class names, qualified with the module where classes in different files share one.
    group_name: Optional[str] = None
    performance_markers: tuple[str, ...] = ("performance",)
    skip_reason: str = DEFAULT_SKIP_REASON
    function_gc: str = "inline"
    teardown_gc: str = "young"
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
    # The project's Python (its interpreter or environment folder, relative to the configuration's
    # folder), whose installed packages MSF004 reads.
    python: Optional[str] = None
    # Also apply fixes that can change what a test does (MSF004's ``new=AsyncMock(...)``).
    unsafe_fixes: bool = False
    # The result cache's folder (relative to the configuration's folder; default
    # ``.memsafe_fix_cache`` there). ``--cache-dir`` and ``MEMSAFE_FIX_CACHE_DIR`` take precedence.
    cache_dir: Optional[str] = None
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


@dataclass(frozen=True)
class ConfigSource:
    """Where settings come from besides the nearest ``pyproject.toml``: ``--config`` names the
    file, ``--isolated`` reads none, and the command line's rule selection overrides the file's
    (``select`` replaces it; ``extend_select`` and ``ignore`` add to it), as in ruff."""

    file: Optional[Path] = None
    isolated: bool = False
    select: Optional[tuple[str, ...]] = None
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def apply(self, settings: Settings) -> Settings:
        select = self.select if self.select is not None else settings.select
        if select is not None and self.extend_select:
            select = (*select, *self.extend_select)
        return replace(settings, select=select, ignore=(*settings.ignore, *self.ignore))


def unknown_codes(selectors: tuple[str, ...]) -> list[str]:
    """The selectors (``MSF001``, or a prefix such as ``MSF00``) that name no rule."""
    from memsafe_fix.rules import RULE_NAMES  # the rules import this module

    return [s for s in selectors if not s or not any(code.startswith(s) for code in RULE_NAMES)]


def valid_codes() -> str:
    from memsafe_fix.rules import RULE_NAMES

    return ", ".join(RULE_NAMES)


PYTEST_COLLECTION_OPTIONS = ("python_files", "python_classes", "python_functions")
_CHOICES = {"scope": SCOPES, "group-name": GROUP_NAMES, "function-gc": FUNCTION_GC, "teardown-gc": TEARDOWN_GC}
_LIST_KEYS = (
    "performance-markers", "select", "ignore", "exclude", "extend-exclude", "include", "source-roots",
    "mock-factories", "async-decorators",
)  # fmt: skip
_BOOL_KEYS = ("respect-gitignore", "force-exclude", "unsafe-fixes")
_CODE_KEYS = ("select", "ignore")
_PATTERN_KEYS = ("exclude", "extend-exclude", "include")
KNOWN_KEYS = tuple(
    sorted(
        f.name.replace("_", "-")
        for f in fields(Settings)
        if f.name != "root" and f.name not in PYTEST_COLLECTION_OPTIONS
    )
)


def _memsafe_values(table: Any, source: Path) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: `tool.memsafe-fix` must be a table", source)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KNOWN_KEYS:
            raise ConfigError(
                f"{source}: unknown key `{key}` in [tool.memsafe-fix] (known: {', '.join(KNOWN_KEYS)})", source
            )
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(
                f"{source}: `{key}` must be one of {', '.join(map(repr, _CHOICES[key]))}, not {value!r}", source
            )
        if key in _LIST_KEYS:
            value = _strings(value, key, source)
            if key in _CODE_KEYS:
                _check_codes(value, key, source)
            if key in _PATTERN_KEYS:
                _check_patterns(value, key, source)
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: `{key}` must be true or false", source)
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: `{key}` must be a table of pattern = [codes]", source)
            value = tuple((pattern, _strings(codes, f"{key}.{pattern}", source)) for pattern, codes in value.items())
            for pattern, codes in value:
                _check_patterns((pattern,), key, source)
                _check_codes(codes, f"{key}.{pattern}", source)
        elif not isinstance(value, str):
            raise ConfigError(f"{source}: `{key}` must be a string", source)
        values[key.replace("-", "_")] = value
    return values


def _strings(value: Any, key: str, source: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: `{key}` must be a list of strings", source)
    return tuple(value)


def _check_codes(codes: tuple[str, ...], key: str, source: Path) -> None:
    unknown = unknown_codes(codes)
    if unknown:
        raise ConfigError(
            f"{source}: unknown rule code {', '.join(map(repr, unknown))} in `{key}` (valid: {valid_codes()}, or a prefix)",
            source,
        )


def _check_patterns(patterns: tuple[str, ...], key: str, source: Path) -> None:
    for pattern in patterns:
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except ValueError as exc:
            raise ConfigError(f"{source}: invalid pattern {pattern!r} in `{key}` ({exc})", source) from exc


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def read_toml(path: Path, text: Optional[str] = None) -> dict[str, Any]:
    """A TOML file's data (``text``: its contents, when already read); a ``ConfigError`` with
    the line and column of a syntax error."""
    try:
        return _parsed_toml(path.read_text(encoding="utf-8") if text is None else text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}", path) from exc
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        line, col = (int(position[1]), int(position[2])) if position else (1, 1)
        detail = message[: position.start()] if position else message
        raise ConfigError(f"{path}: cannot read configuration: {detail}", path, line, col) from exc


@lru_cache(maxsize=64)
def _parsed_toml(text: str) -> dict[str, Any]:
    """TOML text's data, parsed once (the settings of every folder below a ``pyproject.toml``
    read it). Callers do not change it."""
    return tomllib.loads(text)


def _ini_list(value: Any) -> tuple[str, ...]:
    """pytest ``args``-type ini values: whitespace-separated in ini files, a list in TOML."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(shlex.split(str(value)))


# pytest's own order (``_pytest.config.findpaths.locate_config``): in each folder walking up,
# the first of these files that holds pytest configuration is the one pytest uses.
PYTEST_CONFIG_NAMES = (
    "pytest.toml",
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
)


@dataclass(frozen=True)
class PytestConfig:
    """The pytest configuration file pytest would use, and its values."""

    path: Path
    # The table or section holding the values: ``pytest`` (pytest.toml, pytest.ini, tox.ini),
    # ``tool.pytest.ini_options`` or ``tool.pytest`` (pyproject.toml), ``tool:pytest`` (setup.cfg).
    section: str
    # "ini": strings and lists of strings, as pytest reads INI files and
    # ``[tool.pytest.ini_options]``; "toml": native TOML types (``[tool.pytest]``, pytest.toml).
    mode: str
    values: dict[str, Any] = field(compare=False, hash=False)
    # Whether the file holds the section at all (pytest.ini and pytest.toml count without one).
    has_section: bool = True
    # The keys of a ``[tool.pytest]`` table left aside for ``[tool.pytest.ini_options]``: pytest 8
    # reads only the latter (``[tool.pytest.benchmark]`` is pytest-benchmark's), pytest 9
    # refuses the file (the doctor says so when pytest 9 is installed).
    set_aside: tuple[str, ...] = ()

    @property
    def is_toml(self) -> bool:
        return self.path.suffix == ".toml"


def load_pytest_config(path: Path, text: Optional[str] = None) -> Optional[PytestConfig]:
    """``path``'s pytest configuration, or None when pytest would not use the file (a
    ``pyproject.toml`` without a pytest table, a ``tox.ini`` without ``[pytest]``...)."""
    name = path.name
    if name.endswith(".toml"):
        data = read_toml(path, text)
        if name in ("pytest.toml", ".pytest.toml"):
            table = data.get("pytest")
            if table is not None and not isinstance(table, dict):
                raise ConfigError(f"{path}: `pytest` must be a table", path)
            return PytestConfig(path, "pytest", "toml", dict(table or {}), isinstance(table, dict))
        tool = data.get("tool", {})
        tool = tool.get("pytest") if isinstance(tool, dict) else None
        if not isinstance(tool, dict):
            return None
        native = {k: v for k, v in tool.items() if k != "ini_options"}
        ini = tool.get("ini_options")
        if isinstance(ini, dict):
            values = {k: v if isinstance(v, list) else str(v) for k, v in ini.items()}
            return PytestConfig(path, "tool.pytest.ini_options", "ini", values, set_aside=tuple(native))
        if native:
            return PytestConfig(path, "tool.pytest", "toml", native)
        return None
    section = "tool:pytest" if name == "setup.cfg" else "pytest"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if text is None:
            parser.read(path, encoding="utf-8")
        else:
            parser.read_string(text, str(path))
    except (configparser.Error, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", 1) or 1
        raise ConfigError(f"{path}: cannot read configuration: {exc}", path, line) from exc
    if parser.has_section(section):
        return PytestConfig(path, section, "ini", dict(parser.items(section)))
    if name in ("pytest.ini", ".pytest.ini"):
        return PytestConfig(path, section, "ini", {}, has_section=False)
    return None


@lru_cache(maxsize=None)
def find_pytest_config(directory: Path) -> Optional[PytestConfig]:
    """The pytest configuration for tests in ``directory``: the first file that holds one,
    walking up, as pytest finds it when run on that folder."""
    for name in PYTEST_CONFIG_NAMES:
        if is_file(directory / name):
            found = load_pytest_config(directory / name)
            if found is not None:
                return found
    # Asked for every folder of a suite: the folders above are looked at once.
    return None if directory.parent == directory else find_pytest_config(directory.parent)


def is_file(path: Path) -> bool:
    """``path.is_file()``, with a ``ConfigError`` where the answer cannot be known (a folder
    that may not be searched), instead of an ``OSError`` from deep inside a run."""
    try:
        return path.is_file()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}", path) from exc


def _pytest_options(directory: Path) -> dict[str, tuple[str, ...]]:
    """Collection options from the first pytest config file found walking up, as pytest does."""
    found = find_pytest_config(directory)
    if found is None:
        return {}
    options = {}
    for key, value in found.values.items():
        if key in PYTEST_COLLECTION_OPTIONS:
            try:
                options[key] = _ini_list(value)
            except ValueError as exc:  # shlex: an unclosed quote
                raise ConfigError(
                    f"{found.path}: cannot read `{key}`: {exc}", found.path, _line_of(found.path, key)
                ) from exc
    return options


def _line_of(path: Path, key: str) -> int:
    """The line where an ini-style ``key`` is set (1 when it cannot be found)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    setting = re.compile(rf"\s*{re.escape(key)}\s*[=:]")
    return next((number for number, line in enumerate(lines, 1) if setting.match(line)), 1)


@lru_cache(maxsize=None)
def settings_for(directory: Path, source: ConfigSource = ConfigSource()) -> Settings:
    """Settings for files in ``directory``: the nearest ``[tool.memsafe-fix]`` wins (or
    ``source.file``; none with ``source.isolated``), then the command line's overrides."""
    directory = directory.resolve()
    values: dict[str, Any] = {}
    root: Optional[Path] = None
    if source.file and not source.isolated:
        if is_file(source.file):
            table = _memsafe_table(source.file)
            values = _memsafe_values({} if table is None else table, source.file)
            root = source.file.parent
    elif not source.isolated:
        nearest = nearest_configuration(directory)
        if nearest is not None:
            root, configured = nearest
            values = dict(configured)
    values.update(_pytest_options(directory))
    return source.apply(replace(Settings(), root=root, **values))


@lru_cache(maxsize=None)
def nearest_configuration(directory: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The folder of the nearest ``pyproject.toml`` with a ``[tool.memsafe-fix]`` table at or
    above the resolved ``directory``, and the table's values. From the parent's answer: the
    folders of a suite share their ancestors, each looked at once. Callers do not change it."""
    pyproject = directory / "pyproject.toml"
    table = _memsafe_table(pyproject) if is_file(pyproject) else None
    if table is not None:
        return directory, _memsafe_values(table, pyproject)
    return None if directory.parent == directory else nearest_configuration(directory.parent)


def _memsafe_table(pyproject: Path) -> Any:
    """The ``[tool.memsafe-fix]`` table of a ``pyproject.toml`` (None without one)."""
    tool = read_toml(pyproject).get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{pyproject}: `tool` must be a table", pyproject)
    return tool.get("memsafe-fix")
