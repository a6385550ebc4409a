"""Everything memsafe-fix prints: findings, diffs, summaries."""

from __future__ import annotations

import difflib

from memsafe_fix.edits import Finding

NO_NEWLINE = "\\ No newline at end of file\n"


def format_finding(display: str, finding: Finding) -> str:
    marker = "[*] " if finding.fixable else ""
    return f"{display}:{finding.line}:{finding.col}: {finding.code} {marker}{finding.message}"


def unified_diff(old: str, new: str, display: str) -> str:
    """A ``git apply``-able diff with ``a/``/``b/`` headers; line endings are kept as they are."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{display}", f"b/{display}"
    )
    return "".join(line if line.endswith("\n") else f"{line}\n{NO_NEWLINE}" for line in lines)


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
