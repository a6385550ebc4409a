"""Everything memsafe-fix prints: findings, diffs, summaries."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import fields
from typing import Sequence

from memsafe_fix.edits import Finding

Located = tuple[str, Finding]  # (display path, finding)

NO_NEWLINE = "\\ No newline at end of file\n"


def format_finding(display: str, finding: Finding) -> str:
    marker = "[*] " if finding.fixable else ""
    return f"{display}:{finding.line}:{finding.col}: {finding.code} {marker}{finding.message}"


def json_report(findings: Sequence[Located]) -> str:
    return json.dumps(
        [
            {"path": path, "line": f.line, "column": f.col, "code": f.code, "message": f.message, "fixable": f.fixable}
            for path, f in findings
        ],
        indent=2,
    )


def _escape(text: str, in_property: bool = False) -> str:
    """GitHub workflow-command escaping (properties also escape ``:`` and ``,``)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def github_annotation(path: str, finding: Finding) -> str:
    """A GitHub Actions annotation, shown on the pull request's diff."""
    properties = f"title={_escape(f'memsafe-fix ({finding.code})', True)},file={_escape(path, True)},line={finding.line},col={finding.col}"
    return f"::error {properties}::{_escape(format_finding(path, finding))}"


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


def settings_table(settings: object) -> str:
    """Resolved settings as ``key = value`` lines, in configuration spelling."""
    rows = []
    for field in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        if isinstance(value, tuple):
            value = list(value)
        rows.append(f"{field.name.replace('_', '-')} = {value!r}")
    return "\n".join(rows)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def check_summary(findings: int, fixable: int, files: int) -> str:
    if not findings:
        return f"All checked: no findings in {plural(files, 'file')}."
    return f"Found {plural(findings, 'finding')} ({fixable} fixable with `--write`)."


def write_summary(fixed: int, changed_files: int, remaining: int) -> str:
    return f"Fixed {plural(fixed, 'finding')} in {plural(changed_files, 'file')}; {remaining} remaining without a safe fix."


def diff_summary(fixable: int, changed_files: int, remaining: int) -> str:
    text = f"Would fix {plural(fixable, 'finding')} in {plural(changed_files, 'file')}"
    return text + (f"; {remaining} without a safe fix." if remaining else ".")


def unresolved_note(display: str, line: int, col: int, target: str, reason: str) -> str:
    return f"{display}:{line}:{col}: note: MSF004 cannot tell whether patch target `{target}` is async: {reason}"


def patch_target_summary(resolved: int, proven_async: int, unresolved: int) -> str:
    return f"patch targets: {resolved} resolved ({proven_async} async), {unresolved} unresolved"
