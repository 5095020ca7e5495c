"""The free-form space behind the seam (:mod:`llmatic.spaces.base`): whole networks as code.

The LLM rewrites a whole ``nn.Module`` class (LLMatic's open-ended setting); the sandbox
builds it, checks its output shape on the benchmark's input and keys it by its traced
graph (:mod:`llmatic.spaces.freeform_inspect`); the benchmark trains the candidate's own
code in the sandbox (:meth:`llmatic.benchmarks.digits.DigitsBenchmark.evaluate_code`).
There are no baseline moves yet: random search and REA need a way to sample and mutate
whole networks, which this space does not have.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

import numpy as np

from llmatic.benchmarks.base import ArchEvaluation, Benchmark
from llmatic.errors import CandidateError
from llmatic.prompting import PromptSettings
from llmatic.spaces.base import SandboxCall, SearchSpace
from llmatic.spaces.freeform_inspect import CLASS_NAME, check_identify_result
from llmatic.spaces.freeform_prompts import STOP, FreeformPrompter


def seed_code(*, input_shape: Sequence[int], num_classes: int) -> str:
    """LLMatic's seed network, sized for one input of ``input_shape`` ``(C, H, W)``.

    Conv2d(C, 1, 1) -> ReLU -> flatten -> Linear(H * W, num_classes): for CIFAR-10
    (3x32x32, 10 classes) it is the paper's Conv2d(3, 1, 1) ... Linear(1024, 10).
    """
    channels, height, width = input_shape
    return (
        f"class {CLASS_NAME}(nn.Module):\n"
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

    Raises:
        ValueError: ``input_shape`` is not three positive sizes (e.g. the benchmark has
            none: it does not train code), or ``num_classes`` < 2.
    """

    name = "freeform"
    sandbox_preload = ("llmatic.spaces.freeform_inspect",)
    has_baseline_moves = False
    evaluates_code = True

    def __init__(self, *, input_shape: Sequence[int] | None, num_classes: int | None) -> None:
        if input_shape is None or len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(
                f"input_shape must be (C, H, W), got {input_shape} (the freeform space needs "
                "a benchmark that trains code and declares its input_shape: benchmark=digits)"
            )
        if num_classes is None or num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.input_shape = tuple(int(n) for n in input_shape)
        self.num_classes = int(num_classes)

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
        # No grammar yet (constrained decoding of network code is later work): decoding
        # is free whatever ``constrained`` says, and nothing steers away from ``avoid``.
        return FreeformPrompter(
            mutation_prompts=settings.mutation_prompts,
            crossover_prompt=settings.crossover_prompt,
            class_name=CLASS_NAME,
            prompt_format=settings.prompt_format,
            chat_template=settings.chat_template,
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

    def random_key(self, *, rng: np.random.Generator) -> str:
        raise NotImplementedError(f"the {self.name} space has no baseline moves yet")

    def mutate_key(self, key: str, *, rng: np.random.Generator) -> str:
        raise NotImplementedError(f"the {self.name} space has no baseline moves yet")

    def code_of(self, key: str) -> str:
        raise NotImplementedError(f"a {self.name} key is a hash: it cannot be rendered as code")

    def evaluate(self, *, benchmark: Benchmark, key: str, code: str) -> ArchEvaluation:
        """Trains the candidate's own ``code`` (the key only names it).

        Raises:
            CandidateError: The network fails to build, run or train; ``exception`` if the
                benchmark cannot train code (the config check refuses that earlier).
        """
        train = getattr(benchmark, "evaluate_code", None)
        if train is None:
            raise CandidateError("exception", f"benchmark {benchmark.name} cannot train code")
        return train(code)
