"""Cell code -> arch string, by instantiating and tracing the module (run in-process here:
the tests' hand-written cells are trusted)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from llmatic.errors import CandidateError
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch, parse_arch
from llmatic.nb201.inspect import CELL_NAMESPACE, inspect_cell
from llmatic.nb201.mapping import cell_to_arch
from llmatic.nb201.network import ArchCell
from llmatic.nb201.ops import OP_NAMES
from llmatic.network_code import instantiate, normalize_code

ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)


def arch_of(code: str) -> str:
    return inspect_cell({"code": code, "channels": 4, "size": 8})["arch"]


def out_of_space(code: str) -> str:
    with pytest.raises(CandidateError) as info:
        arch_of(code)
    assert info.value.kind == "out_of_space", info.value
    return info.value.message


def test_parse_and_format_round_trip():
    ops = parse_arch(ARCH)
    assert ops[(1, 2)] == "avg_pool_3x3" and ops[(2, 3)] == "nor_conv_1x1"
    assert format_arch(ops) == ARCH


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|nor_conv_3x3~0|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    ],
)
def test_parse_rejects_bad_arch_strings(bad):
    with pytest.raises(ValueError):
        parse_arch(bad)


def test_template_round_trip_for_random_archs():
    rng = random.Random(0)
    for _ in range(25):
        arch = format_arch({edge: rng.choice(OP_NAMES) for edge in EDGES})
        assert arch_of(arch_to_code(arch)) == arch


def test_every_op_on_every_edge_is_recognised():
    for op, edge in itertools.product(OP_NAMES, EDGES):
        ops = {e: "skip_connect" for e in EDGES}
        ops[edge] = op
        arch = format_arch(ops)
        assert arch_of(arch_to_code(arch)) == arch


def test_reordered_lines_and_formatting_do_not_matter():
    code = arch_to_code(ARCH)
    lines = code.splitlines()
    init = lines[3:9]
    reordered = (
        "\n".join(lines[:3] + init[::-1] + lines[9:])
        .replace('OPS["', "OPS['")
        .replace('"](C)', "'](C)")
    )
    assert arch_of(reordered) == ARCH
    summed = code.replace(
        "x3 = self.edge_0_3(x0) + self.edge_1_3(x1) + self.edge_2_3(x2)",
        "x3 = sum([self.edge_2_3(x2), self.edge_0_3(x0), self.edge_1_3(x1)])",
    )
    assert arch_of(summed) == ARCH


def test_missing_edges_are_none():
    code = arch_to_code(ARCH)
    # Drop edge 1->3 from the forward pass: that edge computes nothing.
    code = code.replace(" + self.edge_1_3(x1)", "")
    assert arch_of(code) == ARCH.replace("nor_conv_3x3~1|nor_conv_1x1~2", "none~1|nor_conv_1x1~2")


def test_edges_into_an_unused_node_are_none():
    # Node 2 feeds nothing once edge 2->3 is removed: its incoming edges are dead.
    code = arch_to_code(ARCH).replace(" + self.edge_2_3(x2)", "")
    assert (
        arch_of(code) == "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    )


def test_extra_unused_modules_are_ignored():
    code = arch_to_code(ARCH).replace(
        "super().__init__()", "super().__init__()\n        self.unused = nn.Conv2d(C, C, 5)"
    )
    assert arch_of(code) == ARCH


def test_names_of_ops_come_from_the_module_not_the_text():
    code = arch_to_code(ARCH).replace('OPS["skip_connect"](C)', 'OPS["skip_" + "connect"](C)')
    assert arch_of(code) == ARCH


@pytest.mark.parametrize(
    "old, new",
    [
        (
            "x3 = self.edge_0_3(x0) + self.edge_1_3(x1)",
            "x3 = self.edge_0_3(x0) * self.edge_1_3(x1)",
        ),
        ("x1 = self.edge_0_1(x0)", "x1 = self.edge_0_1(x0).relu()"),
        (
            "x2 = self.edge_0_2(x0) + self.edge_1_2(x1)",
            "x2 = self.edge_0_2(x0) + self.edge_1_2(x0)",
        ),
        ("return x3", "return x3 + x0"),
        ("return x3", "return x2"),
        (
            "x2 = self.edge_0_2(x0) + self.edge_1_2(x1)",
            "x2 = self.edge_0_2(x0) + self.edge_1_2(x1) + self.edge_0_1(x0)",
        ),
        ('self.edge_0_1 = OPS["nor_conv_3x3"](C)', "self.edge_0_1 = nn.Conv2d(C, C, 3, padding=1)"),
    ],
)
def test_cells_outside_the_space_are_rejected_with_a_reason(old, new):
    code = arch_to_code(ARCH)
    assert old in code
    reason = out_of_space(code.replace(old, new))
    assert reason


def test_data_dependent_control_flow_is_out_of_space():
    code = arch_to_code(ARCH).replace(
        "return x3", "if x3.sum() > 0:\n            return x3\n        return x3"
    )
    assert "traced" in out_of_space(code)


def test_node_used_with_two_different_values_is_out_of_space():
    code = arch_to_code(ARCH).replace("self.edge_1_3(x1)", "self.edge_1_3(x2)")
    out_of_space(code)


@pytest.mark.parametrize(
    "code, kind",
    [
        ("class Cell(nn.Module) oops", "syntax_error"),
        ("x = 1", "no_module"),
        (
            "class Cell(nn.Module):\n    def __init__(self, C):\n"
            "        super().__init__()\n        self.e = OPS['nor_conv_5x5'](C)",
            "build_error",
        ),
        (arch_to_code(ARCH).replace("return x3", "return x3[:, :1]"), "wrong_output_shape"),
        (
            arch_to_code(ARCH).replace('OPS["nor_conv_3x3"](C)', 'OPS["nor_conv_3x3"](2 * C)'),
            "forward_error",
        ),
    ],
)
def test_broken_code_is_classified(code, kind):
    with pytest.raises(CandidateError) as info:
        arch_of(code)
    assert info.value.kind == kind


def test_mapped_cell_computes_the_same_as_the_canonical_cell():
    code = arch_to_code(ARCH)
    torch.manual_seed(0)
    generated = instantiate(code, "Cell", CELL_NAMESPACE, 4)
    canonical = ArchCell(ARCH, 4)
    canonical.load_state_dict(generated.state_dict())
    x = torch.randn(2, 4, 8, 8)
    generated.eval(), canonical.eval()
    assert torch.allclose(generated(x), canonical(x))
    assert cell_to_arch(canonical) == ARCH


def test_normalize_code_ignores_comments_and_formatting():
    a = arch_to_code(ARCH)
    b = a.replace("    def forward", "    # the forward pass\n    def forward").replace('"', "'")
    assert normalize_code(a) == normalize_code(b)
    assert normalize_code(a) != normalize_code(a.replace("nor_conv_1x1", "nor_conv_3x3"))
