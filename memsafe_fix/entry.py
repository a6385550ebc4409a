"""The ``memsafe-fix`` entry point: answers ``--version`` and ``--help`` before anything heavy
is imported.

Importing the command line (typer, LibCST, tomlkit, the rules) takes about half a second; a
version query from pre-commit or a script, or a look at the options, should cost no more than
starting Python. The help is typer's, rendered ahead (``help_text.py``, kept equal by
``tests/test_help.py``).
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from memsafe_fix import __version__

        print(f"memsafe-fix {__version__}")
        return
    if sys.argv[1:] in (["--help"], ["-h"]):
        from memsafe_fix.help_text import HELP

        sys.stdout.write(HELP)
        return
    from memsafe_fix.cli import main as run_cli

    run_cli()
