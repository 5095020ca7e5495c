"""Turning untrusted network source code into an ``nn.Module`` instance.

Only the sandboxed child process calls :func:`instantiate`: it executes the code. The
search process only ever *parses* code (:mod:`llmatic.llm.extraction`).
"""

from __future__ import annotations

import ast
from typing import Any

from torch import nn

from llmatic.errors import CandidateError


def normalize_code(code: str) -> str:
    """A key under which two spellings of the same program compare equal.

    The AST dump ignores comments, blank lines, quoting and formatting; docstrings are
    dropped too. Code that does not parse is keyed by its stripped text.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code.strip()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def instantiate(code: str, class_name: str, namespace: dict[str, Any], *args: Any) -> nn.Module:
    """Executes ``code`` and constructs its network class with ``args``.

    The network class is the one named ``class_name``; if there is none, the last
    ``nn.Module`` subclass the code defines (an LLM writes its new class last, and
    helper modules before it).

    Raises:
        CandidateError: ``syntax_error``, ``no_module`` or ``build_error``.
    """
    try:
        compiled = compile(code, "<candidate>", "exec")
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        raise CandidateError("syntax_error", f"line {line}: {err}") from None
    scope = dict(namespace)
    scope["__name__"] = "llmatic_candidate"
    try:
        exec(compiled, scope)  # noqa: S102 - we are inside the sandbox here
    except Exception as err:  # the code's own fault, whatever it raised
        raise CandidateError("build_error", f"{type(err).__name__}: {err}") from None
    classes = [
        value
        for value in scope.values()
        if isinstance(value, type)
        and issubclass(value, nn.Module)
        and value.__module__ == "llmatic_candidate"
    ]
    cls = scope.get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        if not classes:
            raise CandidateError(
                "no_module", f"no nn.Module subclass (expected class {class_name})"
            )
        cls = classes[-1]
    try:
        return cls(*args)
    except Exception as err:
        raise CandidateError("build_error", f"{type(err).__name__}: {err}") from None
