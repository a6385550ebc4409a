"""What the teardown rules (MSF002 gc-teardown, MSF006 release-state) share: writing a
teardown method into a test class."""

from __future__ import annotations

import ast
from typing import Optional

from memsafe_fix.analysis.module import Def
from memsafe_fix.edits import InsertMethod

TEARDOWN = "teardown_method"


def takes_method(func: Def) -> bool:
    """Whether pytest passes ``method`` to this teardown: it counts positional parameters
    beyond ``self`` (a staticmethod has no ``self``)."""
    args = func.node.args
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.node.decorator_list)
    return len(args.posonlyargs) + len(args.args) + static >= 2


def new_teardown(cls: Def, inherited: Optional[Def], statements: list[str], unittest: bool = False) -> InsertMethod:
    """A teardown for ``cls`` (``tearDown`` for a ``unittest.TestCase``) that runs the one it
    inherits first, with that one's signature, then ``statements``; placed after the class's
    ``setup_method``/``setUp``, else after its docstring and attributes."""
    if unittest:
        name, signature, first = "tearDown", "self", ["super().tearDown()"]
    elif inherited is not None:
        passes_method = takes_method(inherited)
        name, signature = TEARDOWN, "self, method" if passes_method else "self"
        first = [f"super().teardown_method({'method' if passes_method else ''})"]
    else:
        name, signature, first = TEARDOWN, "self", []
    anchor = cls.methods().get("setUp" if unittest else "setup_method")
    anchor = anchor if anchor is not None and anchor.direct else None
    body = "".join(f"    {line}\n" for line in [*first, *statements])
    return InsertMethod(cls.index, anchor.index if anchor else None, f"def {name}({signature}):\n{body}")
