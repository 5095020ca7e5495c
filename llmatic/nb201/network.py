"""The NAS-Bench-201 macro skeleton around a cell.

stem (3x3 conv + BN) -> N cells (C channels) -> residual reduction (C -> 2C, stride 2)
-> N cells -> reduction (2C -> 4C) -> N cells -> BN, ReLU, global average pool -> linear.
NAS-Bench-201 itself uses C=16, N=5; the quickstart uses a much smaller one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from llmatic.nb201.cell import EDGES, parse_arch
from llmatic.nb201.ops import OPS


class ResidualReduction(nn.Module):
    """NB201's reduction block: a ResNet basic block with stride 2 (C_in -> C_out)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.conv_b = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class PoolReduction(nn.Module):
    """A light reduction: 2x2 average pool, then a linear 1x1 convolution (C_in -> C_out).

    It has no non-linearity of its own, so a network built with it owes its depth to its
    cells: the quickstart uses it to make the cell, not the skeleton, decide the score.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.op = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


REDUCTIONS = {"residual": ResidualReduction, "pool": PoolReduction}


class CellNetwork(nn.Module):
    """Macro network of ``3 * cells_per_stage`` cells built by ``make_cell(channels)``.

    Args:
        make_cell: Builds one cell mapping ``(N, C, H, W)`` to the same shape.
        channels: ``C``, channels of the first stage (then 2C, 4C).
        cells_per_stage: ``N``.
        in_channels: Image channels (3 for CIFAR, 1 for digits).
        num_classes: Output logits.
        reduction: ``residual`` (NB201's) or ``pool`` (see :class:`PoolReduction`).
    """

    def __init__(
        self,
        make_cell: Callable[[int], nn.Module],
        *,
        channels: int,
        cells_per_stage: int,
        in_channels: int,
        num_classes: int,
        reduction: str = "residual",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        ]
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(REDUCTIONS[reduction](c, 2 * c))
                c *= 2
            layers.extend(make_cell(c) for _ in range(cells_per_stage))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


class ArchCell(nn.Module):
    """A trusted cell built straight from an arch string (no generated code involved)."""

    def __init__(self, arch: str, channels: int) -> None:
        super().__init__()
        ops = parse_arch(arch)
        for i, j in EDGES:
            setattr(self, f"edge_{i}_{j}", OPS[ops[(i, j)]](channels))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x1 = self.edge_0_1(x0)
        x2 = self.edge_0_2(x0) + self.edge_1_2(x1)
        return self.edge_0_3(x0) + self.edge_1_3(x1) + self.edge_2_3(x2)
