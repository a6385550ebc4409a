"""The config doctor: project-level findings (``PROJECT_RULES``: MSF010-MSF013) about the
pytest configuration of the tests a run processed.

The engine analyses each test file once and hands back, with its findings, the markers it uses
and registers (``FileResult.markers``/``registered``). ``Doctor.add`` groups those by pytest
configuration file (``config.find_pytest_config``, the file pytest itself would use);
``Doctor.results`` then checks each configuration once and, for ``--diff``/``--write``, edits
``pyproject.toml`` with tomlkit so every byte it does not change stays as it was. Every edit is
re-read and verified (only the intended values changed, and the rules are satisfied) before it
is shown or written.
"""

from __future__ import annotations

import ast
import copy
import itertools
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import tomlkit
import tomlkit.exceptions
import tomlkit.items

from memsafe_fix.analysis.environment import project_environment
from memsafe_fix.analysis.markers import registered_markers
from memsafe_fix.analysis.project import project_root
from memsafe_fix.analysis.pytest_config import Project, addopts_tokens, marker_lines, version_tuple
from memsafe_fix.config import (
    ConfigError,
    ConfigSource,
    PytestConfig,
    find_pytest_config,
    load_pytest_config,
    settings_for,
)
from memsafe_fix.edits import AppendToPytestOption, Finding, FixError
from memsafe_fix.engine import FileResult, Mode, read_source, write_atomically
from memsafe_fix.report import unified_diff
from memsafe_fix.rules import PROJECT_RULES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib


# The rules whose fixes write garbage collections into test files.
COLLECTING_RULES = ("MSF002", "MSF005")


class Doctor:
    """Collects what the engine found per test file; checks and fixes each pytest configuration
    once. ``display`` turns a path into the way the CLI shows it."""

    def __init__(self, mode: Mode, config_file: ConfigSource, display: Callable[[Path], str]) -> None:
        self.mode = mode
        self.config_file = config_file
        self.display = display
        # Keyed by the resolved location; None: no project rule is enabled there.
        self.projects: dict[Path, Optional[Project]] = {}
        self.folders: dict[Path, set[Path]] = {}
        self.errors: dict[Path, str] = {}
        self.conftests: set[Path] = set()
        self._located: dict[Path, Optional[Path]] = {}
        # Each folder of the files added, resolved once (many files share a folder).
        self._resolved: dict[Path, Path] = {}

    def add(self, path: Path, result: FileResult) -> None:
        """One processed file's contribution (files with errors say nothing)."""
        if result.error:
            return
        folder = self._resolved.get(path.parent)
        if folder is None:
            folder = self._resolved[path.parent] = path.absolute().parent.resolve()
        key = self._project_key(folder)
        project = self.projects.get(key) if key is not None else None
        if project is None or key is None:
            return
        project.markers |= result.markers
        project.existing_markers |= result.markers - result.added_markers
        project.registered |= result.registered
        project.adds_collections |= any(f.code in COLLECTING_RULES for f in (*result.fixed, *result.findings))
        self.folders[key].add(folder)
        if path.name == "conftest.py":
            self.conftests.add(path.resolve())

    def _project_key(self, folder: Path) -> Optional[Path]:
        if folder in self._located:
            return self._located[folder]
        key = None
        try:
            config = find_pytest_config(folder)
            location = config.path if config else _nearest(folder, "pyproject.toml")
            if location is not None:
                key = location.resolve()
                if config is not None and config.set_aside and key not in self.errors:
                    refused = _refused_by_pytest(config)
                    if refused:
                        self.errors[key] = refused.located(self.display(location))
                if key not in self.projects and key not in self.errors:
                    self.projects[key] = self._project(config, location)
                    self.folders[key] = set()
        except ConfigError as exc:
            where = (exc.path or folder).resolve()
            self.errors.setdefault(where, exc.located(self.display(exc.path)) if exc.path else f"error: {exc}")
        self._located[folder] = key
        return key

    def _project(self, config: Optional[PytestConfig], location: Path) -> Optional[Project]:
        settings = settings_for(location.parent.resolve(), self.config_file)
        if not any(settings.rule_enabled(rule.code, location) for rule in PROJECT_RULES):
            return None
        try:
            text = location.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{location}: cannot read configuration: {exc}", location) from exc
        return Project(config, location, text, settings)

    def results(self) -> Iterator[FileResult]:
        """One result per configuration file with findings (or an error), in discovery order."""
        for key, error in self.errors.items():
            yield FileResult(self.display(key), error=error)
        for key, project in self.projects.items():
            if project is not None:
                self._add_conftests(project, self.folders[key])
                result = self._check(project)
                if result.findings or result.fixed or result.error:
                    yield result

    def _add_conftests(self, project: Project, folders: set[Path]) -> None:
        """Markers registered by the conftest.py files pytest loads for these tests (from the
        configuration's folder down to each test folder) that the run did not process."""
        top = project.location.parent.resolve()
        # Test folders share the levels above them: from a level already looked at, the way up
        # is the same, and was looked at too.
        seen: set[Path] = set()
        for folder in folders:
            for level in itertools.chain((folder,), folder.parents):
                if level in seen:
                    break
                seen.add(level)
                conftest = level / "conftest.py"
                if conftest not in self.conftests and conftest.is_file():
                    self.conftests.add(conftest)
                    try:
                        source, _ = read_source(conftest.read_bytes())
                        project.registered |= registered_markers(ast.parse(source))
                    except (OSError, SyntaxError, ValueError, UnicodeDecodeError, LookupError):
                        pass
                if level == top or top not in level.parents:
                    break

    def _check(self, project: Project) -> FileResult:
        result = FileResult(self.display(project.location))
        findings = check_project(project)
        fixable = [f for f in findings if f.fix is not None]
        if not fixable:
            result.findings = findings
            return result
        try:
            if project.config is None and not self._owns(project.location):
                raise FixError("it has no pytest configuration and is outside the current folder")
            new_text, remaining = fix_project(project, fixable)
        except FixError as exc:
            result.findings = [
                replace(f, fix=None, message=f"{f.message} (not fixed: {exc})") if f.fix else f for f in findings
            ]
            return result
        if self.mode is Mode.CHECK:
            result.findings = findings
            return result
        result.fixed, result.findings = fixable, remaining
        if self.mode is Mode.DIFF:
            result.diff = unified_diff(project.text, new_text, result.display)
        else:
            try:
                # Read when the first test file below it was processed: an edit made since then
                # must not be reverted by writing the old text back with ours.
                if project.location.read_bytes() != project.text.encode("utf-8"):
                    result.fixed, result.findings = [], []
                    result.error = (
                        f"{result.display}:1:1: error: changed while memsafe-fix ran; not written (run again)"
                    )
                    return result
                write_atomically(project.location, new_text.encode("utf-8"))
            except OSError as exc:
                result.fixed, result.findings = [], []
                result.error = f"{result.display}:1:1: error: cannot write file: {exc.strerror or exc}"
        return result

    def _owns(self, location: Path) -> bool:
        """Whether a configuration file without a pytest section may be given one: the one
        ``--config`` names, or one in the current folder or below (``cd packages/foo`` in a
        monorepo must not give the repository's ``pyproject.toml`` a pytest section)."""
        if self.config_file.file is not None:
            return location.resolve() == self.config_file.file.resolve()
        here = Path.cwd().resolve()
        folder = location.parent.resolve()
        return folder == here or here in folder.parents


def _refused_by_pytest(config: PytestConfig) -> Optional[ConfigError]:
    """A file with both ``[tool.pytest]`` and ``[tool.pytest.ini_options]``, when the pytest
    installed for the project is 9 or newer, which stops on it (pytest 8 reads ``ini_options``)."""
    environment = project_environment(project_root(config.path.parent.resolve()))
    version = environment.version("pytest")
    if version is None or version_tuple(version) < (9,):
        return None
    aside = ", ".join(f"`{key}`" for key in config.set_aside)
    return ConfigError(
        f"{config.path}: pytest {version} (installed in {environment.where}) stops on a file with both "
        f"[tool.pytest] ({aside}) and [tool.pytest.ini_options]: move one into the other; memsafe-fix read "
        "[tool.pytest.ini_options]",
        config.path,
    )


def _nearest(folder: Path, name: str) -> Optional[Path]:
    return next((f / name for f in (folder, *folder.parents) if (f / name).is_file()), None)


def check_project(project: Project) -> list[Finding]:
    """Every enabled project rule's findings for one configuration."""
    enabled = [rule for rule in PROJECT_RULES if project.settings.rule_enabled(rule.code, project.location)]
    return [finding for rule in enabled for finding in rule.check(project)]


def fix_project(project: Project, fixable: list[Finding]) -> tuple[str, list[Finding]]:
    """(new text, findings remaining). Raises ``FixError`` when the file cannot be edited safely
    or the edit would not read back as intended."""
    edits = [e for f in fixable if f.fix for e in f.fix.edits if isinstance(e, AppendToPytestOption)]
    new_text = apply_edits(project, edits)
    new_config = verify(project, new_text, edits)
    again = replace(project, config=new_config, text=new_text)
    remaining = check_project(again)
    if any(f.fix is not None for f in remaining):
        raise FixError(f"fixing is not stable: {remaining[0].code} still applies")
    return new_text, remaining


# --- editing TOML ---------------------------------------------------------------------------


def _table_path(project: Project) -> tuple[str, ...]:
    if project.location.name in ("pytest.toml", ".pytest.toml"):
        return ("pytest",)
    if project.config is not None and project.config.section == "tool.pytest":
        return ("tool", "pytest")
    return ("tool", "pytest", "ini_options")


def _mode(project: Project) -> str:
    if project.config is not None:
        return project.config.mode
    return "ini"  # a new [tool.pytest.ini_options]: understood by every pytest since 6.0


def _new_value(key: str, values: tuple[str, ...], mode: str) -> Any:
    """A new option's value: ``addopts`` as a string where strings are allowed, else a list."""
    if key == "addopts" and mode == "ini":
        return " ".join(values)
    return list(values)


def apply_edits(project: Project, edits: list[AppendToPytestOption]) -> str:
    text = project.text
    newline = "\r\n" if "\r\n" in text else "\n"
    mode = _mode(project)
    if project.config is None or not project.config.has_section:
        # No table yet: append one at the end, so no existing byte moves.
        lines = [f"[{'.'.join(_table_path(project))}]"]
        lines += [f"{e.key} = {tomlkit.item(_new_value(e.key, e.values, mode)).as_string()}" for e in edits]
        if text and not text.endswith("\n"):
            text += newline
        if text.strip():
            text += newline
        return text + newline.join(lines) + newline
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise FixError(f"tomlkit cannot read the file ({exc})") from exc
    table: Any = document
    for part in _table_path(project):
        table = table[part]
    for edit in edits:
        if edit.key not in table:
            _add_option(table, edit.key, _new_value(edit.key, edit.values, mode))
            continue
        item = table[edit.key]
        if isinstance(item, tomlkit.items.Array):
            for value in edit.values:
                item.append(value)
        elif isinstance(item, tomlkit.items.String):
            table[edit.key] = _extended_string(item, edit, newline)
        else:
            raise FixError(f"`{edit.key}` is neither a string nor a list")
    new_text = tomlkit.dumps(document)
    if newline == "\r\n":  # lines tomlkit added end in "\n"
        new_text = re.sub(r"(?<!\r)\n", "\r\n", new_text)
    return new_text


def _add_option(table: Any, key: str, value: Any) -> None:
    """Add ``key`` after the table's last option: tomlkit would append it after the comments
    and blank lines that end the table, which usually introduce the next one."""
    body = getattr(getattr(table, "value", None), "body", None)
    if isinstance(table, tomlkit.items.Table) and isinstance(body, list) and hasattr(table.value, "_insert_at"):
        options = [i for i, (k, _) in enumerate(body) if k is not None]
        position = options[-1] + 1 if options else 0
        if position < len(body):
            table.value._insert_at(position, key, value)
            return
    table[key] = value


def _extended_string(item: tomlkit.items.String, edit: AppendToPytestOption, newline: str) -> Any:
    """``item`` with ``edit.values`` added before its closing quotes, written as it was
    (quotes, escapes, line breaks): ``addopts`` values on the same line, or on a new line
    indented like the last one in a multi-line string; ``markers`` one per line."""
    raw = item.as_string()
    quote = raw[:3] if raw[:3] in ('"""', "'''") else raw[:1]
    body = raw[len(quote) : len(raw) - len(quote)]
    content = body.rstrip(" \t\r\n")
    tail = body[len(content) :]
    per_line = edit.key == "markers"
    if len(quote) == 3 and "\n" in tail:
        last = content.rsplit("\n", 1)[-1]
        indent = last[: len(last) - len(last.lstrip())]
        lines = edit.values if per_line else (" ".join(edit.values),)
        new_body = content + "".join(f"{newline}{indent}{line}" for line in lines) + tail
    elif per_line:
        raise FixError("`markers` is a one-line string")
    else:
        new_body = (f"{content} " if content else "") + " ".join(edit.values) + tail
    try:
        return tomlkit.parse(f"x = {quote}{new_body}{quote}{newline}")["x"]
    except tomlkit.exceptions.ParseError as exc:
        raise FixError(f"cannot extend `{edit.key}` ({exc})") from exc


def verify(project: Project, new_text: str, edits: list[AppendToPytestOption]) -> Optional[PytestConfig]:
    """The new text's pytest configuration, after checking that it reads as the old one plus the
    edits: the edited options gained exactly the new values, and nothing else changed."""
    try:
        old, new = tomllib.loads(project.text), tomllib.loads(new_text)
        new_config = load_pytest_config(project.location, new_text)
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise FixError(f"the edited file would not be valid ({exc})") from exc
    if new_config is None:
        raise FixError("the edited file would hold no pytest configuration")
    old_config = project.config
    for edit in edits:
        read = addopts_tokens if edit.key == "addopts" else marker_lines
        if read(new_config) != read(old_config) + list(edit.values):
            raise FixError(f"`{edit.key}` would not read back as intended")
    path = _table_path(project)
    if _without(old, path, edits) != _without(new, path, edits):
        raise FixError("the edit would change other values")
    return new_config


def _without(data: dict[str, Any], path: tuple[str, ...], edits: list[AppendToPytestOption]) -> dict[str, Any]:
    """``data`` without the edited options, and without their table if that is left empty."""
    data = copy.deepcopy(data)
    tables = [data]
    for part in path:
        child = tables[-1].get(part) if isinstance(tables[-1], dict) else None
        if not isinstance(child, dict):
            return data
        tables.append(child)
    for edit in edits:
        tables[-1].pop(edit.key, None)
    for parent, part, child in reversed(list(zip(tables, path, tables[1:]))):
        if child == {}:
            del parent[part]
    return data
