"""The five NAS-Bench-201 edge operations, as torch modules.

Each operation maps a ``(N, C, H, W)`` tensor to a tensor of the same shape (stride 1
inside a cell), exactly as in the NAS-Bench-201 reference implementation:
``nor_conv_kxk`` is ReLU -> Conv(k x k, no bias) -> BatchNorm, ``avg_pool_3x3`` is a 3x3
average pool with padding 1 that does not count the padding, ``skip_connect`` is the
identity and ``none`` outputs zeros.

Every operation class carries its canonical name in ``op_name``; the cell mapping
(:mod:`llmatic.nb201.mapping`) reads that attribute from the instantiated module, so
the name a cell is mapped to never depends on how its source code is spelled.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

OP_NAMES: tuple[str, ...] = (
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)


class Zero(nn.Module):
    """``none``: the edge is absent; outputs zeros of the input's shape."""

    op_name = "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Identity(nn.Module):
    """``skip_connect``: passes the input through."""

    op_name = "skip_connect"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ReLUConvBN(nn.Module):
    """``nor_conv_1x1`` / ``nor_conv_3x3``: ReLU, k x k convolution (C -> C), BatchNorm."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.op_name = f"nor_conv_{kernel_size}x{kernel_size}"
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class AvgPool(nn.Module):
    """``avg_pool_3x3``: 3x3 average pooling, stride 1, padding not counted."""

    op_name = "avg_pool_3x3"

    def __init__(self) -> None:
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


#: Operation name -> constructor taking the channel count ``C``.
OPS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda C: Zero(),
    "skip_connect": lambda C: Identity(),
    "nor_conv_1x1": lambda C: ReLUConvBN(C, 1),
    "nor_conv_3x3": lambda C: ReLUConvBN(C, 3),
    "avg_pool_3x3": lambda C: AvgPool(),
}
