"""LLMInitialEmitter: LLMatic's initial phase, before mutation and crossover take over."""

from __future__ import annotations

import numpy as np

from llmatic.emitters._llm_emitter import LLMEmitterBase
from llmatic.spaces import SearchSpace


class LLMInitialEmitter(LLMEmitterBase):
    """The seed network, then ``batch_size`` LLM children of it.

    First ``ask``: the seed network (no LLM), and ``random_seeds`` uniformly random
    networks of ``space`` beside it (several starting points; LLMatic starts from one).
    Second ``ask``: children of the seed, each with a uniformly random mutation prompt at
    the initial temperature (0.6 in LLMatic). After that :attr:`done` is True and ``ask``
    returns nothing.

    Args:
        seed_code: Source code of the seed network.
        space: Samples the random seeds (needed when ``random_seeds`` > 0).
        random_seeds: Random networks evaluated with the seed.
        **kwargs: See :class:`~llmatic.emitters.LLMEmitterBase`.
    """

    operator = "init"
    # The space and the count come from the config, which a resumed run rebuilds.
    attached = (*LLMEmitterBase.attached, "space", "random_seeds")

    def __init__(
        self,
        archive,
        *,
        seed_code: str,
        space: SearchSpace | None = None,
        random_seeds: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(archive, **kwargs)
        if random_seeds < 0 or (random_seeds and space is None):
            raise ValueError(f"random_seeds must be >= 0 and needs a space, got {random_seeds}")
        self.seed_code = seed_code
        self.space = space
        self.random_seeds = random_seeds
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
            ids = [seed.id]
            for _ in range(self.random_seeds):
                network = self.space.random_network(rng=self.rng)
                ids.append(self.store.new("seed", code=network.code, arch=network.key).id)
            return np.array(ids, dtype=object)
        if self._asks > 2 or self.batch_size == 0:
            return np.empty(0, dtype=object)
        seed = self.store[self._seed_id]
        prompts = self.prompter.mutation_prompts
        evaluations = self.store.evaluations  # what an annealed temperature cools with
        requests, meta = [], []
        for _ in range(self.batch_size):
            prompt_id = int(self.rng.integers(len(prompts)))
            temperature = self.temperature.fresh(evaluations, self.rng)
            requests.append(self.prompter.mutation(seed.code, prompts[prompt_id], temperature))
            meta.append(
                {"parent_ids": (seed.id,), "prompt_id": prompt_id, "prompt": prompts[prompt_id]}
            )
        return self._generate(requests, meta)
