"""MSF010 dist-loadgroup.

## What it does
A project-level check of the pytest configuration (`pyproject.toml`, `pytest.toml`,
`pytest.ini`, `tox.ini` or `setup.cfg`, found as pytest finds it) of the tests memsafe-fix
processed. When those tests use `xdist_group` markers, or MSF001 adds them, and `addopts` does
not run pytest-xdist with `--dist loadgroup`, it reports once, at the configuration file (the
`addopts` line, else the section header, else line 1):

- no `--dist` at all: fixable in a `pyproject.toml` (or `pytest.toml`) when pytest-xdist is a
  declared dependency of the project; the fix appends `--dist loadgroup` to `addopts` (a string
  or a list, as written) or adds `addopts`, keeping every other byte of the file. With no pytest
  configuration at all, the fix adds a `[tool.pytest.ini_options]` table to the end of the
  nearest `pyproject.toml`.
- `--dist load`, `loadscope`, `loadfile`, `worksteal`, `each`, `no`, `--dist=...` or `-d`:
  reported without a fix.
- `--dist loadgroup` with pinned versions that ignore groups (pytest 9.2 with pytest-xdist
  3.8.0 or older, exact `==` pins or a lock file): reported without a fix.

Turn it off with `ignore` or `per-file-ignores` (`"pyproject.toml" = ["MSF010"]`);
`# memsafe: ignore` comments do not apply to configuration files.

## Why
pytest-xdist honours `xdist_group` only with `--dist loadgroup`; `load`, `loadscope` and
`loadfile` ignore the marker, so the groups MSF001 adds would do nothing (the often-repeated
advice to use `--dist loadscope` is wrong for groups). The command line still wins (`pytest -n 4
--dist load` overrides `addopts`). A run without `-n` starts no workers, but `--dist` is still
set: pytest-benchmark turns itself off whenever `--dist` is set, so `pytest --benchmark-only`
then fails ("Can't have both --benchmark-only and --benchmark-disable").

## Example
```toml
[tool.pytest.ini_options]
addopts = "-ra"
```
becomes
```toml
[tool.pytest.ini_options]
addopts = "-ra --dist loadgroup"
```
and `addopts = ["-ra"]` becomes `addopts = ["-ra", "--dist", "loadgroup"]`.

## Fix safety
`--dist` is an option of pytest-xdist: where pytest-xdist is not installed, or `addopts` holds
`-p no:xdist`, every pytest run stops with "unrecognized arguments: --dist". So the fix is
offered only when pytest-xdist is a declared dependency (`[project]` dependencies and extras,
`[dependency-groups]`, Poetry/PDM/uv/Hatch tables, `setup.cfg`, `tox.ini` `deps`,
`requirements*.txt`, `Pipfile`, lock files); otherwise the message says to add it first. Where
pytest-benchmark is declared or installed for the project (see MSF012 for which environment),
`addopts` is left alone: the message gives the ways that keep benchmarks running, `pytest -n N
--dist loadgroup` or the pytest-memsafe plugin, which picks `--dist loadgroup` itself when `-n`
is given without `--dist`.
Switching from another `--dist` mode changes which tests share a worker and in what order, which
can change outcomes, so that is left to you. `pytest.ini`, `tox.ini` and `setup.cfg` are
reported, never edited: their dialects (pytest's iniconfig, configparser, tox's substitutions
and factors) do not agree on every edit. The edited `pyproject.toml` is re-read and checked:
`addopts` must read as before plus `--dist loadgroup`, and every other value as before.
"""

from __future__ import annotations

from typing import Iterator

from memsafe_fix.analysis.pytest_config import Project, dist_option, xdist_disabled
from memsafe_fix.edits import AppendToPytestOption, Finding, Fix
from memsafe_fix.rules.base import ProjectRule

LOADGROUP = ("--dist", "loadgroup")
BENCHMARK = "pytest-benchmark"
ISSUE = "pytest-xdist issue #1386"


class DistLoadgroup(ProjectRule):
    code = "MSF010"
    name = "dist-loadgroup"

    def check(self, project: Project) -> Iterator[Finding]:
        if not project.uses_xdist_group:
            return
        position = project.position("addopts")
        broken = project.dependencies.grouping_broken()
        versions = (
            f"the pinned {broken} ignore `xdist_group` ({ISSUE}): install pytest-memsafe in the test "
            "environment, which restores the groups, or pin `pytest<9.2` until a fixed pytest-xdist is out"
            if broken
            else ""
        )
        dist = dist_option(project.tokens)
        if dist == "--dist loadgroup":
            if versions:
                yield self.finding(project, position, f"`--dist loadgroup` is set, but {versions}", None)
            return
        if dist is not None:
            message = (
                f"`{dist}` in `addopts` ignores `xdist_group` markers: use `--dist loadgroup` "
                "(not fixed automatically: it changes which tests share a worker)"
            )
            yield self.finding(project, position, message + (f"; also, {versions}" if versions else ""), None)
            return
        where = "no pytest configuration sets" if project.config is None else "`addopts` does not set"
        used = (
            "tests use `xdist_group` markers"
            if "xdist_group" in project.existing_markers
            else "MSF001 adds `xdist_group` markers to the tests"
        )
        message = f"{used}, but {where} `--dist loadgroup`, so pytest-xdist ignores them"
        fix = None
        if xdist_disabled(project.tokens):
            message += " (and `-p no:xdist` in `addopts` turns pytest-xdist off)"
        elif not project.xdist_declared:
            message += (
                "; pytest-xdist is not a declared dependency and `--dist` makes pytest fail where it is not "
                "installed: add pytest-xdist to the test dependencies, then `--dist loadgroup` to `addopts`"
            )
        elif BENCHMARK in project.dependencies or project.environment.version(BENCHMARK) is not None:
            message += (
                f"; not added to `addopts`: {BENCHMARK} is {'declared' if BENCHMARK in project.dependencies else 'installed'} "
                "and `--dist` in `addopts` turns it off in every run, even without `-n` (`--benchmark-only` then "
                "fails): run `pytest -n N --dist loadgroup`, or install pytest-memsafe, which uses `--dist loadgroup` "
                "when `-n` is given without `--dist`"
            )
        elif project.editable and (project.config is None or project.config.is_toml):
            fix = Fix((AppendToPytestOption("addopts", LOADGROUP),))
        else:
            message += f": add `--dist loadgroup` to `addopts` in [{project.config.section}]"  # type: ignore[union-attr]
        if versions:
            message += f"; also, {versions}"
        yield self.finding(project, position, message, fix)
