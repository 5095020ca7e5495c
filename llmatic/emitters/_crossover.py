"""LLMCrossoverEmitter: two elites + the crossover prompt -> the LLM combines them."""

from __future__ import annotations

import numpy as np

from llmatic.emitters._llm_emitter import LLMEmitterBase


class LLMCrossoverEmitter(LLMEmitterBase):
    """Crossover by LLM, as in LLMatic.

    Each child: two distinct parents drawn uniformly from the network archive's elites
    and the crossover instruction. The crossover prompt has its own row in the prompt
    archive (the last prompt id), so its temperature follows the same curiosity and
    temperature rules as the mutation prompts. All children of one ``ask`` are sampled in
    one LLM call; nothing is asked while the archive holds fewer than two elites, or once
    every pair's crossover (under a grammar) could only repeat a known network.

    Args:
        **kwargs: See :class:`~llmatic.emitters.LLMEmitterBase`.
    """

    operator = "crossover"

    def ask(self) -> np.ndarray:
        """Returns ``(n,)`` candidate ids, ``n`` is ``batch_size`` or 0."""
        elites = self._elite_ids()
        if len(elites) < 2 or self.batch_size == 0:
            return np.empty(0, dtype=object)
        prompt_id = len(self.prompter.mutation_prompts)
        cells = self.prompt_archive.most_curious(1, prompt_ids=[prompt_id])
        evaluations = self.store.evaluations  # what an annealed temperature cools with
        requests, meta = [], []
        for _ in range(self.batch_size):
            pair = self._pair(elites)
            if pair is None:  # every crossover of the elites is evaluated or proposed
                break
            a, b = pair
            if cells:
                _, cell_temperature, last_improved = cells[0]
                temperature = self.temperature.next(
                    cell_temperature, last_improved, self.rng, evaluations
                )
            else:
                temperature = self.temperature.fresh(evaluations, self.rng)
            instruction = self.prompter.crossover_prompt
            requests.append(self.prompter.crossover(a.code, b.code, instruction, temperature))
            meta.append({"parent_ids": (a.id, b.id), "prompt_id": prompt_id, "prompt": instruction})
        if not requests:
            return np.empty(0, dtype=object)
        return self._generate(requests, meta)

    def _pair(self, elites: list[int], tries: int = 8):
        """Two distinct elites whose crossover can still be new: ``tries`` random draws,
        then every pair in random order; None when no pair can (the LLM would only write
        networks that were evaluated or proposed already, at its full cost)."""
        for _ in range(tries):
            first, second = self.rng.choice(len(elites), size=2, replace=False)
            a, b = self.store[elites[first]], self.store[elites[second]]
            if self.prompter.can_vary(a.code, b.code):
                return a, b
        pairs = [(i, j) for i in range(len(elites)) for j in range(i + 1, len(elites))]
        for k in self.rng.permutation(len(pairs)):
            a, b = (self.store[elites[i]] for i in pairs[k])
            if self.prompter.can_vary(a.code, b.code):
                return a, b
        return None
