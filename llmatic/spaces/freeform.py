"""The free-form space behind the seam (:mod:`llmatic.spaces.base`): whole networks as code.

The LLM rewrites a whole ``nn.Module`` class (LLMatic's open-ended setting); the sandbox
builds it, checks its output shape on the benchmark's input and keys it by its traced
graph (:mod:`llmatic.spaces.freeform_inspect`); the benchmark trains the candidate's own
code in the sandbox (:meth:`llmatic.benchmarks.digits.DigitsBenchmark.evaluate_code`).
The baselines move in the grammar's language (:mod:`llmatic.spaces.freeform_grammar`):
random search takes every decision of the grammar uniformly at random, REA's mutation is
the classic one-edit mutation, and their code is identified in the sandbox like the LLM's,
so that one network has one key whoever wrote it.
"""

from __future__ import annotations

import functools
from collections.abc import Container, Sequence

import numpy as np

from llmatic.benchmarks.base import ArchEvaluation, Benchmark, Lineage
from llmatic.errors import CandidateError
from llmatic.llm.grammar import write
from llmatic.prompting import PromptSettings
from llmatic.spaces.base import Proposal, SandboxCall, SearchSpace
from llmatic.spaces.freeform_grammar import (
    NetworkGrammar,
    NetworkSpec,
    mutate_spec,
    parse_spec,
    write_spec,
)
from llmatic.spaces.freeform_inspect import CLASS_NAME, check_identify_result
from llmatic.spaces.freeform_prompts import STOP, FreeformPrompter

#: The head of every network's code: the class the prompts name (LLMatic's ``Net``).
PREFILL = f"class {CLASS_NAME}(nn.Module):\n"


def seed_code(*, input_shape: Sequence[int], num_classes: int) -> str:
    """LLMatic's seed network, sized for one input of ``input_shape`` ``(C, H, W)``.

    Conv2d(C, 1, 1) -> ReLU -> flatten -> Linear(H * W, num_classes): for CIFAR-10
    (3x32x32, 10 classes) it is the paper's Conv2d(3, 1, 1) ... Linear(1024, 10).
    """
    channels, height, width = input_shape
    return (
        f"{PREFILL}"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        self.conv1 = nn.Conv2d({channels}, 1, 1)\n"
        f"        self.fc1 = nn.Linear({height * width}, {num_classes})\n"
        "\n"
        "    def forward(self, x):\n"
        "        x = F.relu(self.conv1(x))\n"
        "        x = torch.flatten(x, 1)\n"
        "        x = self.fc1(x)\n"
        "        return x\n"
    )


class FreeformSpace(SearchSpace):
    """Whole networks written by the LLM; key = a hash of the traced graph.

    Args:
        input_shape: One input of the benchmark, ``(C, H, W)``; the seed is sized for it
            and the sandbox probes candidates with a batch of two.
        num_classes: Logits the network returns per input.
        max_changes: Trust region of a constrained LLM mutation: the most changes from
            its parent (:class:`~llmatic.spaces.freeform_grammar.TrustRegion`); None for
            none.

    Raises:
        ValueError: ``input_shape`` is not three positive sizes (e.g. the benchmark has
            none: it does not train code), ``num_classes`` < 2, or ``max_changes`` < 1.
    """

    name = "freeform"
    sandbox_preload = ("llmatic.spaces.freeform_inspect",)
    evaluates_code = True

    def __init__(
        self,
        *,
        input_shape: Sequence[int] | None,
        num_classes: int | None,
        max_changes: int | None = 2,
    ) -> None:
        if input_shape is None or len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(
                f"input_shape must be (C, H, W), got {input_shape} (the freeform space needs "
                "a benchmark that trains code and declares its input_shape: benchmark=digits)"
            )
        if num_classes is None or num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.input_shape = tuple(int(n) for n in input_shape)
        self.num_classes = int(num_classes)
        self.grammar = NetworkGrammar(input_shape=self.input_shape, num_classes=self.num_classes)
        if max_changes is not None and max_changes < 1:
            raise ValueError(f"max_changes must be >= 1 or None, got {max_changes}")
        self.max_changes = max_changes

    def seed_code(self) -> str:
        return seed_code(input_shape=self.input_shape, num_classes=self.num_classes)

    def stop(self, *, scope: str) -> tuple[str, ...]:
        if scope != "class":
            raise ValueError(
                f"the freeform space has the LLM write whole classes: set llm.scope=class "
                f"(got {scope!r})"
            )
        return STOP

    def prompter(self, settings: PromptSettings, *, avoid: Container[str]) -> FreeformPrompter:
        self.stop(scope=settings.scope)  # checks the scope
        # ``avoid`` holds graph keys, which a grammar over text cannot see; the grammar
        # steers away from the texts sampled before instead (the prompter's ``proposed``).
        return FreeformPrompter(
            mutation_prompts=settings.mutation_prompts,
            crossover_prompt=settings.crossover_prompt,
            class_name=CLASS_NAME,
            prompt_format=settings.prompt_format,
            chat_template=settings.chat_template,
            grammar=self.grammar if settings.constrained else None,
            max_changes=self.max_changes,
        )

    def identify_call(self, *, code: str) -> SandboxCall:
        return SandboxCall(
            target="llmatic.spaces.freeform_inspect:identify_network",
            payload={
                "code": code,
                "input_shape": list(self.input_shape),
                "num_classes": self.num_classes,
            },
            check=check_identify_result,
        )

    def key_of(self, identity: dict) -> str:
        return identity["key"]

    def random_network(self, *, rng: np.random.Generator) -> Proposal:
        # A parent of nothing: every decision uniform, narrow widths not chosen anew.
        program = functools.partial(self.grammar.program, reference=NetworkSpec())
        body, _ = write(program, lambda c: int(rng.integers(len(c.options))))
        return Proposal(code=PREFILL + body, key=None)

    def mutate_network(self, *, code: str, key: str, rng: np.random.Generator) -> Proposal:
        """One classic edit (:func:`~llmatic.spaces.freeform_grammar.mutate_spec`).

        Raises:
            ValueError: ``code`` is not in the grammar's language (REA mutates only what
                the baselines proposed, and the seed, which are).
        """
        if not code.startswith(PREFILL):
            raise ValueError("the code is not a class the grammar wrote")
        spec = parse_spec(self.grammar, code[len(PREFILL) :])
        return Proposal(
            code=PREFILL + write_spec(self.grammar, mutate_spec(self.grammar, spec, rng=rng)),
            key=None,
        )

    def evaluate(
        self, *, benchmark: Benchmark, key: str, code: str, lineage: Lineage | None = None
    ) -> ArchEvaluation:
        """Trains the candidate's own ``code`` (the key only names it); with ``lineage``,
        warm-started from its parent's trained weights where the benchmark keeps them.

        Raises:
            CandidateError: The network fails to build, run or train; ``exception`` if the
                benchmark cannot train code (the config check refuses that earlier).
        """
        train = getattr(benchmark, "evaluate_code", None)
        if train is None:
            raise CandidateError("exception", f"benchmark {benchmark.name} cannot train code")
        return train(code) if lineage is None else train(code, lineage=lineage)
