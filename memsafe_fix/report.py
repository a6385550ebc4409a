"""Everything memsafe-fix prints: findings, diffs, summaries."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import tomlkit

from memsafe_fix.edits import Finding

Located = tuple[str, Finding]  # (display path, finding)

NO_NEWLINE = "\\ No newline at end of file\n"


@dataclass(frozen=True)
class Problem:
    """Something that could not be checked: an unparsable or unreadable file, an unreadable
    folder, a missing path, a bad configuration. ``kind``: ``syntax-error``, ``internal-error``
    (a bug in memsafe-fix) or ``error``; ``path`` is None when no file is to blame."""

    path: Optional[str]
    line: int
    col: int
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}: " if self.path is not None else ""
        return f"{where}{self.kind.replace('-', ' ')}: {self.message}"


_LOCATION = re.compile(r":(\d+):(\d+): (syntax error|internal error|error): ")


def parse_problem(text: str, path: Optional[str]) -> Problem:
    """A one-line error (``path:line:col: kind: message``, as the engine and the configuration
    report them) as a ``Problem``; ``path``: the file the line is about."""
    if path is not None and text.startswith(path):
        found = _LOCATION.match(text, len(path))
        if found:
            return Problem(path, int(found[1]), int(found[2]), found[3].replace(" ", "-"), text[found.end() :])
    return Problem(path, 1, 1, "error", text.removeprefix("error: "))


def format_finding(display: str, finding: Finding) -> str:
    marker = "[*] " if finding.fixable else ""
    return f"{display}:{finding.line}:{finding.col}: {finding.code} {marker}{finding.message}"


def json_report(findings: Sequence[Located], problems: Sequence[Problem] = ()) -> str:
    """A JSON list, one object per finding and per problem; the fields are documented in the
    README and stable. The text of ``json.dumps(records, indent=2)``, written record by record:
    with ``indent`` it encodes in pure Python (0.8 s for a 10 MB file's 100,000 findings)."""
    records = [_json_record("finding", path, f.line, f.col, f.code, f.message, f.fixable) for path, f in findings]
    records += [_json_record(p.kind, p.path, p.line, p.col, None, p.message, False) for p in problems]
    return "[\n" + ",\n".join(records) + "\n]" if records else "[]"


def _json_record(
    kind: str, path: Optional[str], line: int, column: int, code: Optional[str], message: str, fixable: bool
) -> str:
    string = json.encoder.encode_basestring_ascii  # what ``json.dumps`` escapes strings with
    return (
        f'  {{\n    "kind": {string(kind)},\n    "path": {"null" if path is None else string(path)},\n'
        f'    "line": {int.__repr__(line)},\n    "column": {int.__repr__(column)},\n'
        f'    "code": {"null" if code is None else string(code)},\n    "message": {string(message)},\n'
        f'    "fixable": {"true" if fixable else "false"}\n  }}'
    )


def _escape(text: str, in_property: bool = False) -> str:
    """GitHub workflow-command escaping (properties also escape ``:`` and ``,``)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def github_annotation(path: str, finding: Finding) -> str:
    """A GitHub Actions annotation, shown on the pull request's diff."""
    properties = f"title={_escape(f'memsafe-fix ({finding.code})', True)},file={_escape(path, True)},line={finding.line},col={finding.col}"
    return f"::error {properties}::{_escape(format_finding(path, finding))}"


def github_problem(problem: Problem) -> str:
    title = _escape(f"memsafe-fix ({problem.kind.replace('-', ' ')})", True)
    if problem.path is None:
        return f"::error title={title}::{_escape(str(problem))}"
    location = f"file={_escape(problem.path, True)},line={problem.line},col={problem.col}"
    return f"::error title={title},{location}::{_escape(str(problem))}"


def statistics(findings: Sequence[Located], names: dict[str, str]) -> str:
    """Findings per rule, most frequent first, ruff-style: ``count  code  [*] name``."""
    counts = Counter(f.code for _, f in findings)
    fixable = {f.code for _, f in findings if f.fixable}
    return "\n".join(
        f"{count:5}\t{code}\t{'[*] ' if code in fixable else '    '}{names.get(code, '')}"
        for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )


def fixes_by_file(fixed: Sequence[Located], names: dict[str, str]) -> str:
    """Which file changed by which rule, ruff's ``--show-fixes`` layout."""
    per_file: dict[str, Counter[str]] = {}
    for path, finding in fixed:
        per_file.setdefault(path, Counter())[finding.code] += 1
    lines = [f"Fixed {plural(len(fixed), 'finding')}:"]
    for path, counts in per_file.items():
        lines.append(f"- {path}:")
        lines += [f"    {count} × {code} ({names.get(code, '')})" for code, count in sorted(counts.items())]
    return "\n".join(lines)


def unified_diff(old: str, new: str, display: str) -> str:
    """A ``git apply``-able diff with ``a/``/``b/`` headers; line endings are kept as they are."""
    lines = difflib.unified_diff(_lines(old), _lines(new), f"a/{display}", f"b/{display}")
    return "".join(line if line.endswith("\n") else f"{line}\n{NO_NEWLINE}" for line in lines)


def _lines(text: str) -> list[str]:
    """Lines as git sees them: ended by ``\n`` only (``str.splitlines`` also splits at ``\f``,
    ``\v``, ``\x1c``-``\x1e``, ``\x85`` and U+2028/9, which would make a patch git rejects)."""
    lines = text.split("\n")
    return [f"{line}\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


_DIFF_COLORS = (("+++", "\033[1m"), ("---", "\033[1m"), ("@@", "\033[36m"), ("+", "\033[32m"), ("-", "\033[31m"))


def colorize_diff(diff: str) -> str:
    """Red removals, green additions, bold file headers, cyan hunk headers (like ruff)."""
    lines = []
    for line in _lines(diff):
        color = next((code for prefix, code in _DIFF_COLORS if line.startswith(prefix)), None)
        if color is None:
            lines.append(line)
        else:
            body = line.rstrip("\r\n")
            lines.append(f"{color}{body}\033[0m{line[len(body) :]}")
    return "".join(lines)


def settings_toml(
    settings: Any,
    target: str,
    config_file: Optional[Path],
    pytest_config: Optional[Path],
    defaults: dict[str, list[str]],
) -> str:
    """The settings used for ``target`` as TOML that reads back: where they came from, then
    ``[tool.memsafe-fix]`` in configuration spelling (``defaults``: what an unset list means,
    such as the default excludes), then the pytest collection options in ``[pytest]``."""
    document = tomlkit.document()
    document.add(tomlkit.comment(f"memsafe-fix settings for {target}"))
    if config_file is None:
        document.add(tomlkit.comment("no [tool.memsafe-fix] configuration read: defaults"))
    else:
        document.add("config-file", config_file.as_posix())
    if pytest_config is not None:
        document.add("pytest-config-file", pytest_config.as_posix())
    memsafe = tomlkit.table()
    pytest_options = tomlkit.table()
    for field in fields(settings):
        value = getattr(settings, field.name)
        key = field.name.replace("_", "-")
        if field.name == "root":
            continue
        if field.name.startswith("python_"):
            pytest_options.add(field.name, list(value))
        elif field.name == "per_file_ignores":
            memsafe.add(key, {pattern: list(codes) for pattern, codes in value})
        elif value is None and key not in defaults:
            memsafe.add(tomlkit.comment(f"{key}: not set"))  # TOML has no null
        else:
            memsafe.add(key, list(value) if isinstance(value, tuple) and value else defaults.get(key, value))
    document.add(tomlkit.nl())
    document.add("tool", tomlkit.table(is_super_table=True))
    document["tool"].add("memsafe-fix", memsafe)  # type: ignore[union-attr]
    document.add(tomlkit.nl())
    document.add("pytest", pytest_options)
    return tomlkit.dumps(document).rstrip("\n")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _problems_note(failed_files: int, other_errors: int) -> str:
    """What could not be checked, for the end of a summary ("" when everything was)."""
    notes = []
    if failed_files:
        notes.append(f"{plural(failed_files, 'file')} could not be checked")
    if other_errors:
        notes.append(plural(other_errors, "error"))
    return "".join(f"; {note}" for note in notes)


def check_summary(findings: int, fixable: int, checked: int, failed_files: int = 0, other_errors: int = 0) -> str:
    note = _problems_note(failed_files, other_errors)
    if findings:
        return f"Found {plural(findings, 'finding')} ({fixable} fixable with `--write`){note}."
    if not checked:
        return f"No file checked{note}."
    if note:
        return f"No findings in {plural(checked, 'file')}{note}."
    return f"All checked: no findings in {plural(checked, 'file')}."


def write_summary(fixed: int, changed_files: int, remaining: int, failed_files: int = 0, other_errors: int = 0) -> str:
    note = _problems_note(failed_files, other_errors)
    return (
        f"Fixed {plural(fixed, 'finding')} in {plural(changed_files, 'file')}; "
        f"{remaining} remaining without a safe fix{note}."
    )


def diff_summary(fixable: int, changed_files: int, remaining: int, failed_files: int = 0, other_errors: int = 0) -> str:
    text = f"Would fix {plural(fixable, 'finding')} in {plural(changed_files, 'file')}"
    return (
        text
        + (f"; {remaining} without a safe fix" if remaining else "")
        + _problems_note(failed_files, other_errors)
        + "."
    )


def unresolved_note(display: str, line: int, col: int, target: str, reason: str) -> str:
    return f"{display}:{line}:{col}: note: MSF004 cannot tell whether patch target `{target}` is async: {reason}"


def patch_target_summary(resolved: int, proven_async: int, unresolved: int) -> str:
    return f"patch targets: {resolved} resolved ({proven_async} async), {unresolved} unresolved"
