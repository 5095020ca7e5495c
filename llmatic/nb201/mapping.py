"""Maps an instantiated cell module to its canonical NAS-Bench-201 arch string.

The mapping reads what the module *computes*, never how its source is spelled: it traces
``forward`` with ``torch.fx`` (NB201 operations are leaves) and follows the data flow.

Rules (each violation is a ``CandidateError("out_of_space", reason)``):

- the only calls allowed in ``forward`` are the NB201 operation modules and additions;
- an operation must be an attribute named ``edge_i_j`` (``0 <= i < j <= 3``) holding one of
  the five NB201 operations; its input must be node ``i`` and its output may only be
  summed into node ``j``;
- node 0 is the input; node ``j`` is the sum of the edges into ``j``; every use of node
  ``j`` must see the same sum; the output must be node 3.

An edge that is missing, not called, or whose result never reaches its node is ``none``;
unused extra modules are ignored; the order of lines does not matter.
"""

from __future__ import annotations

import operator
import re

import torch
from torch import fx, nn

from llmatic.errors import CandidateError
from llmatic.nb201.cell import format_arch
from llmatic.nb201.ops import OP_NAMES

_EDGE_NAME = re.compile(r"edge_([0-3])_([0-3])")
_ADD_TARGETS = {operator.add, operator.iadd, torch.add, torch.Tensor.add}

# A traced value is either the cell input or a sum of edge outputs: a frozenset of edges.
_INPUT = "input"


class _OpLeafTracer(fx.Tracer):
    """Traces through everything except the NB201 operations (modules with ``op_name``)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        name = getattr(module, "op_name", None)
        if type(name) is str and name in OP_NAMES:  # exact str: no __eq__ of the candidate's
            return True
        return super().is_leaf_module(module, qualified_name)


def _out_of_space(reason: str) -> CandidateError:
    return CandidateError("out_of_space", reason)


def cell_to_arch(cell: nn.Module) -> str:
    """Returns the arch string of ``cell`` (an instantiated cell module).

    Raises:
        CandidateError: ``out_of_space`` with the reason, when ``cell`` is not an NB201 cell.
    """
    try:
        graph = _OpLeafTracer().trace(cell)
    except Exception as err:  # control flow on tensors, unsupported calls, ...
        raise _out_of_space(f"forward cannot be traced ({type(err).__name__}: {err})") from None

    values: dict[fx.Node, object] = {}
    edge_input: dict[tuple[int, int], object] = {}  # what each called edge was applied to
    node_uses: dict[int, set[frozenset]] = {}  # every value used as node j
    output = None
    placeholders = 0
    for node in graph.nodes:
        if node.op == "placeholder":
            placeholders += 1
            if placeholders > 1:
                raise _out_of_space("forward must take exactly one input")
            values[node] = _INPUT
        elif node.op == "call_module":
            values[node] = _call_edge(cell, node, values, edge_input)
        elif (
            node.op == "call_function"
            and node.target in _ADD_TARGETS
            or (node.op == "call_method" and node.target in ("add", "add_", "__add__"))
        ):
            values[node] = _add(node, values)
        elif node.op == "output":
            output = values.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
        else:
            raise _out_of_space(
                f"forward calls {node.target!r}; only edge operations and '+' are allowed"
            )

    # Which value each node takes: the input for node 0, the sum a consumer saw otherwise.
    for (source, _), used in edge_input.items():
        if source > 0:
            if not isinstance(used, frozenset):
                raise _out_of_space(f"an edge out of node {source} is applied to the cell input")
            node_uses.setdefault(source, set()).add(used)
        elif used != _INPUT:
            raise _out_of_space("an edge out of node 0 is not applied to the cell input")
    if not isinstance(output, frozenset):
        raise _out_of_space("the cell must return a sum of edge outputs (node 3)")
    node_uses.setdefault(3, set()).add(output)

    live: dict[tuple[int, int], bool] = {}
    for target, uses in node_uses.items():
        if len(uses) > 1:
            raise _out_of_space(f"node {target} is used with different inputs")
        (terms,) = uses
        for source, edge_target in terms:
            if edge_target != target:
                raise _out_of_space(f"edge {source}->{edge_target} is summed into node {target}")
            live[(source, edge_target)] = True
    ops = {}
    for source, target in live:
        want = _INPUT if source == 0 else next(iter(node_uses.get(source, {None})))
        if edge_input[(source, target)] != want:
            raise _out_of_space(f"edge {source}->{target} is not applied to node {source}")
        ops[(source, target)] = _op_name(getattr(cell, f"edge_{source}_{target}"))
    return format_arch(ops)


def _op_name(edge: nn.Module) -> str:
    """The edge's operation as the space's own string (never the candidate's object)."""
    name = getattr(edge, "op_name", None)
    if type(name) is not str or name not in OP_NAMES:
        raise _out_of_space(f"an edge's operation is not one of {list(OP_NAMES)}")
    return OP_NAMES[OP_NAMES.index(name)]


def _call_edge(
    cell: nn.Module,
    node: fx.Node,
    values: dict[fx.Node, object],
    edge_input: dict[tuple[int, int], object],
) -> frozenset:
    match = _EDGE_NAME.fullmatch(str(node.target))
    if match is None:
        raise _out_of_space(
            f"module {node.target!r} is called; operations must be edge_i_j attributes"
        )
    source, target = int(match[1]), int(match[2])
    if not source < target:
        raise _out_of_space(f"edge_{source}_{target} does not go forward (need i < j)")
    module = cell.get_submodule(str(node.target))
    name = getattr(module, "op_name", None)
    if type(name) is not str or name not in OP_NAMES:
        raise _out_of_space(
            f"edge_{source}_{target} is a {type(module).__name__}, not an NB201 operation"
        )
    if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
        raise _out_of_space(f"edge_{source}_{target} must be called on one tensor")
    if (source, target) in edge_input:
        raise _out_of_space(f"edge_{source}_{target} is called more than once")
    edge_input[(source, target)] = values[node.args[0]]
    if name == "none":
        return frozenset()  # contributes zeros: the sum is as if the edge were absent
    return frozenset({(source, target)})


def _add(node: fx.Node, values: dict[fx.Node, object]) -> frozenset:
    terms: set = set()
    for arg in node.args:
        if isinstance(arg, fx.Node):
            value = values[arg]
            if not isinstance(value, frozenset):
                raise _out_of_space("the cell input is added to a node; use skip_connect")
            if terms & value:
                raise _out_of_space("an edge output is added twice")
            terms |= value
        elif arg != 0:  # sum() starts from the constant 0
            raise _out_of_space(f"a constant {arg!r} is added inside the cell")
    return frozenset(terms)
