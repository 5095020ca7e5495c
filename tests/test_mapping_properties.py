"""Property-based: random and malformed completions through the real path never raise.

Completions are built from a valid one by random edits (deleting, duplicating and
inserting fragments of code, renaming operations). Each goes where a search sends it:
the prompter turns it into cell code, the evaluator's static check and the sandboxed
NB201 mapping turn that into an arch string or a classified failure. Nothing may raise
anything else, and every failure must carry a known kind.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.errors import FAILURE_KINDS, CandidateError
from llmatic.evaluation import Evaluator
from llmatic.llm.base import Generation
from llmatic.nb201.cell import arch_to_code, parse_arch
from llmatic.nb201.prompts import CellPrompter
from llmatic.sandbox import Sandbox, SandboxLimits
from llmatic.spaces import Nb201Space

PARENT = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
FRAGMENTS = [
    'OPS["nor_conv_3x3"](C)',
    'OPS["conv_9x9"](C)',
    "nn.Conv2d(C, C, 3)",
    "self.edge_0_1",
    "self.edge_3_3 = ",
    "(C)",
    "\n",
    "        ",
    '"]',
    "def forward(self, x):\n        return x\n",
    "import torch\n",
    "import os\n",
    "while True: pass\n",
    "x" * 50,
    "\x00",
    "é",
    '"""',
    "class Cell(nn.Module):\n",
]


class _NoBenchmark:
    def evaluate(self, arch: str) -> ArchEvaluation:  # pragma: no cover - never charged here
        raise AssertionError("the mapping test charges nothing")


@pytest.fixture(scope="module")
def evaluator():
    with Sandbox(limits=SandboxLimits(wall_time_s=5)) as sandbox:
        space = Nb201Space(seed_arch=PARENT)
        yield Evaluator(space=space, sandbox=sandbox, benchmark=_NoBenchmark())


@st.composite
def completions(draw) -> str:
    text = arch_to_code(PARENT).split('OPS["', 1)[1]
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate", "rename"]))
        if action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif action == "insert":
            text = text[:at] + draw(st.sampled_from(FRAGMENTS)) + text[at:]
        elif action == "duplicate":
            text = text[:at] + text[at : at + 60] + text[at:]
        else:
            text = text.replace(
                draw(st.sampled_from(["none", "skip_connect", "avg_pool_3x3"])),
                draw(st.text(max_size=12)),
                1,
            )
    return text


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(completion=completions())
def test_any_completion_maps_to_an_arch_or_a_classified_failure(evaluator, completion):
    prompter = CellPrompter(mutation_prompts=["m"], crossover_prompt="x", constrained=False)
    request = prompter.mutation(arch_to_code(PARENT), "m", 0.7)
    try:
        code = prompter.to_code(request, Generation(text=completion, num_tokens=1))
    except CandidateError as err:
        assert err.kind in FAILURE_KINDS
        return
    result = evaluator.key_of_code(code)
    if isinstance(result, CandidateError):
        assert result.kind in FAILURE_KINDS, result
    else:
        parse_arch(result)  # a real arch string
