"""Sandbox target: untrusted free-form network code -> key and measures.

Runs only inside the sandbox's child process (it executes the code), except
:func:`check_identify_result`, the parent's check of what the child sent back.

The key makes two candidates that differ only in formatting, comments or names one
network: it hashes the ``torch.fx`` graph of the instantiated module (the sequence of
operations in execution order, each layer by its type, constructor settings and weight
shapes, each function by its qualified name, and which earlier node feeds which), never the
attribute or variable names. A network ``torch.fx`` cannot trace (data-dependent control
flow) is keyed by its normalised code (:func:`llmatic.network_code.normalize_code`), which
ignores formatting and comments but not names.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import torch
from torch import nn

from llmatic.benchmarks.base import check_measures
from llmatic.errors import CandidateError
from llmatic.network_code import candidate_failure, instantiate, normalize_code
from llmatic.sandbox import results

#: The class the prompts name; an output without it falls back to its last nn.Module.
CLASS_NAME = "Net"
#: What network code may use without importing it.
NAMESPACE = {"torch": torch, "nn": nn, "F": torch.nn.functional}
#: Hex digits of a key (128 bits of SHA-256).
KEY_HEX_DIGITS = 32
_KEY = re.compile(f"[0-9a-f]{{{KEY_HEX_DIGITS}}}")


def build_network(
    code: str, *, input_shape: tuple[int, ...], num_classes: int, static_check: bool = True
) -> nn.Module:
    """Instantiates ``code``'s network (no constructor arguments) and checks its output.

    Args:
        code: The untrusted source, defining :data:`CLASS_NAME` (or else a last
            ``nn.Module`` subclass) whose constructor takes no argument.
        input_shape: One input's shape ``(C, H, W)``; the probe is a batch of two.
        num_classes: The logits the network must return per input.
        static_check: Whether the static check runs first (only the tests' own targets
            turn it off, to prove the sandbox's walls behind it).

    Returns:
        The module, in training mode, after one forward pass of a ``(2, *input_shape)``
        probe that returned ``(2, num_classes)`` logits.

    Raises:
        CandidateError: ``forbidden_code``, ``syntax_error``, ``no_module``,
            ``build_error``, ``forward_error``, ``out_of_memory`` or ``wrong_output_shape``.
    """
    network = instantiate(code, CLASS_NAME, NAMESPACE, static_check=static_check)
    x = torch.randn(2, *input_shape)
    try:
        with torch.no_grad():
            y = network(x)
    except Exception as err:  # the code's own fault, whatever it raised
        raise candidate_failure("forward_error", err) from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2, num_classes):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise CandidateError(
            "wrong_output_shape", f"maps {tuple(x.shape)} to {shape}, not (2, {num_classes})"
        )
    return network


def network_key(network: nn.Module, code: str) -> tuple[str, bool]:
    """The key of ``network`` (built from ``code``) and whether its graph was traced."""
    try:
        traced = torch.fx.symbolic_trace(network)
    except Exception:  # data-dependent control flow, or code fx cannot follow
        return _digest(normalize_code(code)), False
    return _digest(json.dumps(_describe(traced), default=_opaque)), True


def _describe(traced: torch.fx.GraphModule) -> list[list[Any]]:
    """The graph as nested lists, with no name of the code's in it."""
    index = {node: i for i, node in enumerate(traced.graph.nodes)}
    described = []
    for node in traced.graph.nodes:
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            what: Any = [
                f"{type(module).__module__}.{type(module).__qualname__}",
                module.extra_repr(),
                [list(p.shape) for p in module.parameters()],
            ]
        elif node.op == "get_attr":
            value = _attribute(traced, node.target)
            what = list(value.shape) if isinstance(value, torch.Tensor) else _opaque(value)
        elif node.op == "call_function":
            what = f"{getattr(node.target, '__module__', '')}.{node.target.__qualname__}"
        elif node.op == "call_method":
            what = node.target
        else:  # placeholder (the input) and output: their names are the code's
            what = None
        args = _wiring(node.args, index)
        kwargs = {k: _wiring(v, index) for k, v in sorted(node.kwargs.items())}
        described.append([node.op, what, args, kwargs])
    return described


def _attribute(traced: torch.fx.GraphModule, target: str) -> Any:
    value: Any = traced
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _wiring(value: Any, index: dict[torch.fx.Node, int]) -> Any:
    """An argument with every node replaced by its position in the graph."""
    if isinstance(value, torch.fx.Node):
        return ["node", index[value]]
    if isinstance(value, list | tuple):
        return [_wiring(v, index) for v in value]
    if isinstance(value, dict):
        return {str(k): _wiring(v, index) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, slice):
        return ["slice", _wiring([value.start, value.stop, value.step], index)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return _opaque(value)


def _opaque(value: Any) -> str:
    """Other constants (dtypes, devices, memory formats) by their text."""
    return f"{type(value).__name__}:{value}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_HEX_DIGITS]


def identify_network(payload: dict) -> dict:
    """Payload ``{"code", "input_shape", "num_classes"}`` -> key and measures.

    Builds the network, checks its output shape on a ``(2, *input_shape)`` probe and
    measures it for one input (:func:`llmatic.measures.measure_network`).

    Returns:
        ``{"key": str, "traced": bool, "measures": {...}}``: the key (see
        :func:`network_key`), whether it comes from the traced graph, and the measures.

    Raises:
        CandidateError: What :func:`build_network` raises; ``forward_error`` when the
            measurement's forward pass fails.
    """
    from llmatic.measures import measure_network

    input_shape = tuple(int(n) for n in payload["input_shape"])
    code = payload["code"]
    network = build_network(code, input_shape=input_shape, num_classes=int(payload["num_classes"]))
    try:
        measures = measure_network(network, input_shape).as_dict()
    except Exception as err:
        raise candidate_failure("forward_error", err) from None
    key, traced = network_key(network, code)
    return {"key": key, "traced": traced, "measures": measures}


def check_identify_result(value: dict) -> dict:
    """The parent's check of what :func:`identify_network` sent back (see ``Sandbox.run``).

    Raises:
        ValueError: Not exactly the keys, a key that is not :data:`KEY_HEX_DIGITS` lowercase
            hex digits, or measures that are not finite.
    """
    value = results.exact_keys(value, ["key", "traced", "measures"])
    key = results.text(value["key"], max_chars=KEY_HEX_DIGITS)
    if not _KEY.fullmatch(key):
        raise ValueError(f"key must be {KEY_HEX_DIGITS} hex digits")
    if not isinstance(value["traced"], bool):
        raise ValueError("traced must be a bool")
    return {"key": key, "traced": value["traced"], "measures": check_measures(value["measures"])}
