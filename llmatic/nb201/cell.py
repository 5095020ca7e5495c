"""NAS-Bench-201 cells written as Python source code.

A NAS-Bench-201 cell has 4 nodes; node ``j`` is the sum of ``op_ij(node i)`` over the
edges ``i -> j`` (``0 <= i < j <= 3``), node 0 is the cell input and node 3 its output.
An architecture is written as an *arch string*, e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``:
three groups (nodes 1, 2, 3), each listing ``op~source`` for its incoming edges.

The LLM sees and edits the cell as a ``torch.nn.Module`` whose six edges are attributes
``self.edge_i_j = OPS["<op>"](C)`` and whose ``forward`` sums them. :func:`arch_to_code`
renders that source; :mod:`llmatic.nb201.mapping` maps (possibly edited) source back to an
arch string by instantiating and tracing it, in the sandbox.
"""

from __future__ import annotations

from llmatic.nb201.ops import OP_NAMES

#: The six edges ``(source, target)`` in arch-string order.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

CELL_CLASS_NAME = "Cell"

#: The header every cell prompt starts with: what ``OPS`` is and which names it takes.
CELL_PREAMBLE = """import torch
from torch import nn

# OPS[name](C) builds one NAS-Bench-201 operation on C channels. The names are:
# "none" (no edge), "skip_connect" (identity), "nor_conv_1x1" (1x1 convolution),
# "nor_conv_3x3" (3x3 convolution), "avg_pool_3x3" (3x3 average pooling).
"""


def parse_arch(arch: str) -> dict[tuple[int, int], str]:
    """Parses an arch string into ``{(source, target): op_name}`` for all six edges.

    Raises:
        ValueError: The string is not a NAS-Bench-201 arch string.
    """
    groups = arch.strip().split("+")
    if len(groups) != 3:
        raise ValueError(f"arch string must have 3 node groups separated by '+': {arch!r}")
    ops: dict[tuple[int, int], str] = {}
    for target, group in enumerate(groups, start=1):
        parts = [p for p in group.split("|") if p]
        if len(parts) != target:
            raise ValueError(f"node {target} must have {target} inputs in {arch!r}")
        for part in parts:
            name, _, source = part.partition("~")
            if name not in OP_NAMES or not source.isdigit() or int(source) >= target:
                raise ValueError(f"bad edge {part!r} in arch string {arch!r}")
            ops[(int(source), target)] = name
    if len(ops) != len(EDGES):
        raise ValueError(f"arch string repeats an edge: {arch!r}")
    return ops


def format_arch(ops: dict[tuple[int, int], str]) -> str:
    """Inverse of :func:`parse_arch`; missing edges are ``none``."""
    groups = []
    for target in (1, 2, 3):
        items = [f"{ops.get((source, target), 'none')}~{source}" for source in range(target)]
        groups.append("|" + "|".join(items) + "|")
    return "+".join(groups)


#: The class line and constructor head of a cell, up to its first edge line.
CELL_HEADER = f"""class {CELL_CLASS_NAME}(nn.Module):
    def __init__(self, C):
        super().__init__()
"""

#: The forward pass of a cell: node j sums the edges into j.
CELL_FORWARD = """
    def forward(self, x0):
        x1 = self.edge_0_1(x0)
        x2 = self.edge_0_2(x0) + self.edge_1_2(x1)
        x3 = self.edge_0_3(x0) + self.edge_1_3(x1) + self.edge_2_3(x2)
        return x3
"""


def arch_to_code(arch: str) -> str:
    """Renders the cell of an arch string as the source code the LLM edits.

    The source defines ``class Cell(nn.Module)`` with a ``C`` (channels) constructor
    argument; ``OPS``, ``nn`` and ``torch`` are provided by the namespace it runs in.
    """
    ops = parse_arch(arch)
    edges = "".join(f'        self.edge_{i}_{j} = OPS["{ops[(i, j)]}"](C)\n' for i, j in EDGES)
    return CELL_HEADER + edges + CELL_FORWARD
