"""Turning untrusted network source code into an ``nn.Module`` instance.

Only the sandboxed child process calls :func:`instantiate`: it executes the code, after
the static check of :mod:`llmatic.sandbox.static_check`. The search process only ever
*parses* code (:mod:`llmatic.llm.extraction`), and runs the same check before it asks the
sandbox, so forbidden code costs no sandbox call.
"""

from __future__ import annotations

import ast
from typing import Any

from torch import nn

from llmatic.errors import CandidateError
from llmatic.sandbox.static_check import ensure_allowed


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


def instantiate(
    code: str,
    class_name: str,
    namespace: dict[str, Any],
    *args: Any,
    static_check: bool = True,
) -> nn.Module:
    """Executes ``code`` and constructs its network class with ``args``.

    The network class is the one named ``class_name``; if there is none, the last
    ``nn.Module`` subclass the code defines (an LLM writes its new class last, and
    helper modules before it).

    Args:
        code: The untrusted source.
        class_name: The class wanted.
        namespace: Globals the code runs with (besides the builtins).
        *args: Arguments of the class's constructor.
        static_check: Whether to run :func:`llmatic.sandbox.static_check.check_code`
            first. Only the tests turn it off, to prove the sandbox's walls behind it.

    Raises:
        CandidateError: ``forbidden_code``, ``syntax_error``, ``no_module``,
            ``build_error`` or ``out_of_memory``.
    """
    if static_check:
        ensure_allowed(code)
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
        raise candidate_failure("build_error", err) from None
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
        raise candidate_failure("build_error", err) from None


def candidate_failure(kind: str, err: Exception) -> CandidateError:
    """``CandidateError(kind)`` for what the code raised; ``out_of_memory`` if it ran out.

    Memory runs out as a ``MemoryError`` or as torch's allocator ``RuntimeError`` when
    the sandbox's address-space cap is hit: that is a limit, not a bug of the network.
    """
    message = f"{type(err).__name__}: {err}"
    if isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and "DefaultCPUAllocator: can't allocate" in str(err)
    ):
        return CandidateError("out_of_memory", message)
    return CandidateError(kind, message)
