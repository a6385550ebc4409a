"""Run the ``memsafe-fix`` command in-process, the same way under every Click version."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from memsafe_fix.cli import app


def invoke(*args: str) -> Result:
    try:  # Click < 8.2 mixes stderr into stdout unless told not to; 8.2 always separates them.
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(app, list(args))
    result.everything = result.stdout + result.stderr  # type: ignore[attr-defined]  # .output differs between Click versions
    return result
