"""LLMInitialEmitter: LLMatic's initial phase, before mutation and crossover take over."""

from __future__ import annotations

import numpy as np

from llmatic.emitters._llm_emitter import LLMEmitterBase


class LLMInitialEmitter(LLMEmitterBase):
    """The seed network, then ``batch_size`` LLM children of it.

    First ``ask``: the seed network (no LLM). Second ``ask``: children of the seed, each
    with a uniformly random mutation prompt at the initial temperature (0.6 in LLMatic).
    After that :attr:`done` is True and ``ask`` returns nothing.

    Args:
        seed_code: Source code of the seed network.
        **kwargs: See :class:`~llmatic.emitters.LLMEmitterBase`.
    """

    operator = "init"

    def __init__(self, archive, *, seed_code: str, **kwargs) -> None:
        super().__init__(archive, **kwargs)
        self.seed_code = seed_code
        self._asks = 0
        self._seed_id: int | None = None

    @property
    def done(self) -> bool:
        # Without children (``batch_size`` 0) the phase is the seed alone.
        return self._asks >= (2 if self.batch_size else 1)

    def ask(self) -> np.ndarray:
        self._asks += 1
        if self._asks == 1:
            seed = self.store.new("seed", code=self.seed_code)
            self._seed_id = seed.id
            return np.array([seed.id], dtype=object)
        if self._asks > 2 or self.batch_size == 0:
            return np.empty(0, dtype=object)
        seed = self.store[self._seed_id]
        prompts = self.prompter.mutation_prompts
        requests, meta = [], []
        for _ in range(self.batch_size):
            prompt_id = int(self.rng.integers(len(prompts)))
            temperature = self.temperature.initial
            requests.append(self.prompter.mutation(seed.code, prompts[prompt_id], temperature))
            meta.append(
                {"parent_ids": (seed.id,), "prompt_id": prompt_id, "prompt": prompts[prompt_id]}
            )
        return self._generate(requests, meta)
