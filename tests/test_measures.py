"""Network measures: exact values on networks small enough to count by hand."""

from __future__ import annotations

import math

import torch
from torch import nn

from llmatic.measures import count_flops, max_width, measure_network, weight_layer_depth
from llmatic.nb201.network import ArchCell, CellNetwork


def test_flops_of_one_convolution_are_two_per_multiply_accumulate():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 output channels x 32 x 32 positions x (3 x 3 x 3) MACs x 2
    assert count_flops(conv, torch.zeros(1, 3, 32, 32)) == 2 * 8 * 32 * 32 * 27


def test_flops_of_a_linear_layer():
    assert count_flops(nn.Linear(1024, 10), torch.zeros(1, 1024)) == 2 * 1024 * 10


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


def test_depth_counts_weight_layers_on_the_longest_path():
    chain = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(5)], nn.ReLU())
    assert weight_layer_depth(chain(torch.zeros(1, 4, 6, 6))) == 5
    # The skip path is shorter; the residual branch has two convolutions.
    net = nn.Sequential(Residual(), Residual())
    assert weight_layer_depth(net(torch.zeros(1, 4, 6, 6))) == 4


def test_depth_of_a_parameter_free_network_is_zero():
    assert weight_layer_depth(nn.AvgPool2d(2)(torch.zeros(1, 1, 4, 4, requires_grad=True))) == 0


def test_width_and_measure_network():
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.Flatten(), nn.LazyLinear(10)
    )
    net(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
    assert max_width(net) == 32
    m = measure_network(net, (3, 8, 8))
    assert (m.depth, m.width) == (3, 32)
    assert math.isclose(m.width_to_depth, 32 / 3)
    assert m.params == sum(p.numel() for p in net.parameters())
    assert math.isclose(m.log10_flops, math.log10(m.flops))
    assert net.training, "measure_network must restore training mode"


def test_nb201_cells_move_both_measures():
    def network(arch: str) -> CellNetwork:
        return CellNetwork(
            lambda c: ArchCell(arch, c),
            channels=4,
            cells_per_stage=1,
            in_channels=1,
            num_classes=10,
        )

    empty = measure_network(
        network("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"), (1, 8, 8)
    )
    chain = measure_network(
        network("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|"),
        (1, 8, 8),
    )
    # Three convolutions in series per cell, three cells: 9 more layers of depth.
    assert chain.depth == empty.depth + 9
    assert chain.flops > empty.flops
    assert chain.width_to_depth < empty.width_to_depth
