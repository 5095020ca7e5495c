"""A stand-in for an LLM, for tests and benchmarks only (``llm=scripted``): no model at all.

Each ``generate`` call draws its completions from a NumPy generator seeded with
``(seed, call number)``, so a run is deterministic, and a resumed run continues exactly
when the call number (``_calls``, as in ``TransformersLLM``) is restored. A request with a
constraint (the edge-lines grammar) is answered by a random walk through the grammar: one
uniformly chosen continuation after the other, which honours the trust region and the
steering away from evaluated architectures like constrained decoding does. Without a
constraint it writes a uniformly random cell. A share ``broken`` of the samples is
broken code, so that failures go through the loop too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from llmatic.llm.base import CounterState, Generation, GenerationRequest, cut_at_stop
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch
from llmatic.nb201.ops import OP_NAMES

#: What a broken sample says: an operation that does not exist.
BROKEN = 'conv_9x9"](C)\n'


class ScriptedDebugLLM(CounterState):
    """A deterministic fake LLM. Not a model: for tests, benchmarks and debugging the loop.

    Args:
        seed: Seed of the completions.
        broken: Share of samples that are broken code, in [0, 1].
        delay_s: Seconds each ``generate`` call sleeps (tests use it to kill a run mid-way).
        stop: Stop sequences, cut like a real backend cuts them.
    """

    #: Counters saved by :meth:`state_dict` (the first seeds the sampling).
    _STATE_FIELDS = ("_calls", "total_tokens", "total_seconds", "total_prompt_tokens")

    def __init__(
        self,
        *,
        seed: int = 0,
        broken: float = 0.0,
        delay_s: float = 0.0,
        stop: Sequence[str] = (),
    ) -> None:
        if not 0.0 <= broken <= 1.0:
            raise ValueError(f"broken must be in [0, 1], got {broken}")
        self.seed = seed
        self.broken = broken
        self.delay_s = delay_s
        self.stop = tuple(stop)
        self.total_tokens = 0
        self.total_prompt_tokens = 0
        self.total_seconds = 0.0
        self._calls = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        start = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        rng = np.random.default_rng([self.seed, self._calls])
        self._calls += 1
        out = []
        for request in requests:
            if rng.random() < self.broken:
                text = BROKEN
            elif request.constraint is not None:
                text = _walk(request.constraint, rng)
            else:
                arch = format_arch({e: OP_NAMES[rng.integers(len(OP_NAMES))] for e in EDGES})
                code = arch_to_code(arch)
                text = code.removeprefix(request.prefill)
            text = cut_at_stop(text, self.stop)
            # "Tokens" are words here, of the prompt as a model would see it (with prefill).
            prompt_tokens = len((request.prompt + request.prefill).split())
            out.append(
                Generation(text=text, num_tokens=len(text.split()), prompt_tokens=prompt_tokens)
            )
        self.total_tokens += sum(g.num_tokens for g in out)
        self.total_prompt_tokens += sum(g.prompt_tokens for g in out)
        self.total_seconds += time.perf_counter() - start
        return out


def _walk(constraint, rng: np.random.Generator) -> str:
    """A uniformly random path through ``constraint`` (a ``TextConstraint``)."""
    text = ""
    while options := constraint.continuations(text):
        text += options[rng.integers(len(options))]
    return text
