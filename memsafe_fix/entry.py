"""The ``memsafe-fix`` entry point: answers ``--version`` before anything heavy is imported.

Importing the command line (typer, LibCST, tomlkit, the rules) takes about half a second; a
version query from pre-commit or a script should cost no more than starting Python.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from memsafe_fix import __version__

        print(f"memsafe-fix {__version__}")
        return
    from memsafe_fix.cli import main as run_cli

    run_cli()
