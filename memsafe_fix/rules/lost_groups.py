"""MSF012 lost-groups.

## What it does
A project-level check of the environment the tests run in. When the tests use `xdist_group`
markers (or MSF001 adds them) and the pytest and pytest-xdist installed for the project are a
pair that ignores the markers (pytest 9.2 or newer with pytest-xdist 3.8.0 or older) while the
pytest-memsafe plugin is not installed there, it reports once, at the pytest configuration file
(the `addopts` line, else the section header, else line 1), without a fix.

The environment is the one MSF004 reads installed modules from: the project's virtualenv
(`.venv`, `venv`, `$VIRTUAL_ENV`), else the Python memsafe-fix runs on. Versions come from the
`*.dist-info/METADATA` files there; nothing in it is imported or run. What the project pins
(`==` requirements, lock files) is MSF010's business: a lock file that pins another version
than the one installed does not hide this finding.

Turn it off with `ignore` or `per-file-ignores` (`"pyproject.toml" = ["MSF012"]`).

## Why
pytest-xdist groups tests by appending `@<group>` to their node ids (`item._nodeid`), which
pytest 9.2 no longer reads: it builds node ids from a structured id. The groups are then
silently spread over the workers, and classes whose tests need each other fail under `-n`
(pytest-xdist issue #1386, fix proposed in pull request #1388). The ways out: install
pytest-memsafe in the test environment (it restores the ids in each worker), pin `pytest<9.2`,
or upgrade to a pytest-xdist release after 3.8.0 once one fixes it.

## Example
`.venv` holds pytest 9.2.0 and pytest-xdist 3.8.0, the tests use `xdist_group`:
```
pyproject.toml:2:1: MSF012 pytest 9.2.0 with pytest-xdist 3.8.0 (installed in `.venv/...`) ignore `xdist_group`: ...
```

## Fix safety
No fix: which package to install or pin is the project's choice.
"""

from __future__ import annotations

from typing import Iterator

from memsafe_fix.analysis.pytest_config import XDIST, Project, drops_groups
from memsafe_fix.edits import Finding
from memsafe_fix.rules.base import ProjectRule

PLUGIN = "pytest-memsafe"


class LostGroups(ProjectRule):
    code = "MSF012"
    name = "lost-groups"

    def check(self, project: Project) -> Iterator[Finding]:
        if not project.uses_xdist_group:
            return
        environment = project.environment
        pytest_version, xdist_version = environment.version("pytest"), environment.version(XDIST)
        if pytest_version is None or xdist_version is None or environment.version(PLUGIN) is not None:
            return
        if not drops_groups(pytest_version, xdist_version):
            return
        message = (
            f"pytest {pytest_version} with pytest-xdist {xdist_version} (installed in {environment.where}) ignore "
            "`xdist_group`: under `--dist loadgroup` the tests of a group are spread over the workers "
            f"(pytest-xdist issue #1386). Install {PLUGIN} in the test environment (it restores the groups), "
            "pin `pytest<9.2`, or upgrade to a pytest-xdist release after 3.8.0 that fixes it"
        )
        yield self.finding(project, project.position("addopts"), message, None)
