"""Sandbox target: untrusted cell code -> canonical arch string.

Runs only inside the sandbox's child process (it executes the code).
"""

from __future__ import annotations

import torch
from torch import nn

from llmatic.errors import CandidateError
from llmatic.nb201.cell import CELL_CLASS_NAME, format_arch, parse_arch
from llmatic.nb201.mapping import cell_to_arch
from llmatic.nb201.ops import OPS
from llmatic.network_code import candidate_failure, instantiate
from llmatic.sandbox import results

#: Longest arch string of the space ("nor_conv_3x3~0" six times with separators: 89).
MAX_ARCH_CHARS = 128

#: What cell code may use without importing it.
CELL_NAMESPACE = {"torch": torch, "nn": nn, "OPS": OPS}


def inspect_cell(payload: dict, *, static_check: bool = True) -> dict:
    """Payload ``{"code": str, "channels": int, "size": int}`` -> ``{"arch": str}``.

    Builds the cell on ``channels`` channels, checks that a ``(2, channels, size, size)``
    input comes out with the same shape, and maps the module to its arch string.
    ``static_check=False`` (never from a payload: only the tests' own target sets it)
    skips the static check of the code.

    Raises:
        CandidateError: ``forbidden_code``, ``syntax_error``, ``no_module``,
            ``build_error``, ``forward_error``, ``out_of_memory``, ``wrong_output_shape`` or
            ``out_of_space``.
    """
    channels, size = int(payload.get("channels", 4)), int(payload.get("size", 8))
    cell = instantiate(
        payload["code"], CELL_CLASS_NAME, CELL_NAMESPACE, channels, static_check=static_check
    )
    x = torch.randn(2, channels, size, size)
    try:
        with torch.no_grad():
            y = cell(x)
    except Exception as err:
        raise candidate_failure("forward_error", err) from None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise CandidateError("wrong_output_shape", f"cell maps {tuple(x.shape)} to {shape}")
    return {"arch": cell_to_arch(cell)}


def check_inspect_result(value: dict) -> dict:
    """The parent's check of what :func:`inspect_cell` sent back (see ``Sandbox.run``).

    Returns ``{"arch": ...}`` rebuilt from the parsed edges, so that the string the search
    keeps is one this process wrote.

    Raises:
        ValueError: The value is not ``{"arch": <an arch string of the space>}``.
    """
    value = results.exact_keys(value, ["arch"])
    arch = results.text(value["arch"], max_chars=MAX_ARCH_CHARS)
    return {"arch": format_arch(parse_arch(arch))}
