"""MSF011 strict-markers.

## What it does
A project-level check of the pytest configuration of the tests memsafe-fix processed. When
unregistered markers are errors there (`--strict-markers` or `--strict` in `addopts`,
`strict_markers = true`, or pytest 9's `strict = true`) and a marker the memory-safety pattern
relies on is not registered, it reports once, at the configuration file (the `markers` line,
else the section header, else line 1). The markers it checks:

- each of the `performance-markers` (default `performance`) that the tests use;
- `xdist_group`, when the tests use it (or MSF001 adds it) and pytest-xdist, which registers
  it, is not a declared dependency of the project (or `addopts` holds `-p no:xdist`).

A marker counts as registered when it is in `markers` or a processed or applicable
`conftest.py` registers it with `config.addinivalue_line("markers", "NAME: ...")`.

Turn it off with `ignore` or `per-file-ignores` (`"pyproject.toml" = ["MSF011"]`);
`# memsafe: ignore` comments do not apply to configuration files.

## Why
With strict markers, pytest stops collecting a module that uses an unregistered marker
("'performance' not found in `markers` configuration option"), so none of its tests run.
pytest-xdist registers `xdist_group` only where it is installed: a plain `pytest` run without
it fails on every grouped class once MSF001 has added the markers.

## Example
```toml
[tool.pytest.ini_options]
addopts = "--strict-markers"
markers = ["slow: slow tests"]
```
becomes
```toml
[tool.pytest.ini_options]
addopts = "--strict-markers"
markers = ["slow: slow tests", "performance: timing-sensitive tests"]
```

## Fix safety
Registering a marker never changes which tests run or how; registering `xdist_group` where
pytest-xdist also registers it is harmless. The fix edits `pyproject.toml` (or `pytest.toml`)
only: it appends to a `markers` list, adds lines to a multi-line `markers` string, or adds
`markers`, keeping every other byte, and re-reads the file to check that only the new markers
were added. `pytest.ini`, `tox.ini` and `setup.cfg` are reported without a fix, with the lines to
add. A marker registered by a plugin or by a conftest.py outside the tests memsafe-fix saw is
not seen: silence the finding with `ignore = ["MSF011"]` then.
"""

from __future__ import annotations

from typing import Iterator

from memsafe_fix.analysis.pytest_config import Project, registered_in_config, strict_markers, xdist_disabled
from memsafe_fix.edits import AppendToPytestOption, Finding, Fix
from memsafe_fix.rules.base import ProjectRule

DESCRIPTIONS = {
    "xdist_group": "xdist_group(name): run the tests of one group on one pytest-xdist worker (--dist loadgroup)",
}


def marker_line(marker: str) -> str:
    return DESCRIPTIONS.get(marker, f"{marker}: timing-sensitive tests")


class StrictMarkers(ProjectRule):
    code = "MSF011"
    name = "strict-markers"

    def check(self, project: Project) -> Iterator[Finding]:
        strict = strict_markers(project.config)
        if strict is None or project.config is None:
            return
        needed = sorted(m for m in project.markers if m in project.settings.performance_markers)
        if project.uses_xdist_group and (not project.xdist_declared or xdist_disabled(project.tokens)):
            needed.append("xdist_group")
        registered = registered_in_config(project.config) | project.registered
        missing = [m for m in needed if m not in registered]
        if not missing:
            return
        names = ", ".join(f"`{m}`" for m in missing)
        message = (
            f"{strict} makes unregistered markers errors, and {names} "
            f"{'is' if len(missing) == 1 else 'are'} not registered in `markers`: "
            "collecting the tests that use "
            f"{'it' if len(missing) == 1 else 'them'} fails"
        )
        lines = tuple(marker_line(m) for m in missing)
        fix = None
        value = project.config.values.get("markers")
        # A one-line string cannot take another line; [tool.pytest] and pytest.toml need a list.
        appendable = value is None or isinstance(value, list) or (project.config.mode == "ini" and "\n" in value)
        if project.editable and project.config.is_toml and appendable:
            fix = Fix((AppendToPytestOption("markers", lines),))
        else:
            message += "; register " + ", ".join(f'"{line}"' for line in lines)
        yield self.finding(project, project.position("markers", "strict_markers", "strict", "addopts"), message, fix)
