"""LLMMutationEmitter: a fit parent + a curious prompt cell -> the LLM rewrites the parent."""

from __future__ import annotations

import numpy as np

from llmatic.emitters._baselines import PARENT_POOLS, evaluated_ids
from llmatic.emitters._llm_emitter import LLMEmitterBase

#: What in-context feedback shows (``LLMMutationEmitter(feedback_from=...)``).
FEEDBACK_SOURCES = ("elites", "children")


class LLMMutationEmitter(LLMEmitterBase):
    """Mutation by LLM, as in LLMatic.

    Each child: a parent drawn uniformly from the ``parents_top_k`` fittest elites of the
    network archive (None: from every elite, the whole archive), or with
    ``parents="evaluated"`` from the fittest evaluated networks (an elitist population:
    a cell's runners-up stay parents), passing over those the prompter cannot vary; a
    prompt cell drawn uniformly from the ``prompts_top_k`` most curious cells of the
    prompt archive (or, with probability ``explore`` and while the archive is empty, a
    uniformly random prompt at the initial temperature, so that prompts the initial phase
    did not try still get a chance); its temperature set by
    :class:`~llmatic.emitters.TemperatureRule` (LLMatic's rule moves the cell's
    temperature). With ``feedback_elites`` = K > 0 the prompt also shows networks with
    their validation accuracy, worst first (in-context feedback): the archive's K fittest
    other elites (``feedback_from="elites"``), or the parent's own history
    (``"children"``): the K best of its evaluated children, then the parent itself with
    its accuracy, so that the model sees which of its edits paid.
    All children of one ``ask`` are sampled in one LLM call.

    Args:
        parents_top_k: How many of the fittest elites may be parents (None: all).
        parents: ``"archive"`` (the fittest elites) or ``"evaluated"`` (the fittest
            evaluated networks).
        prompts_top_k: How many of the most curious prompt cells may be used.
        explore: Probability of a random prompt instead of a curious cell.
        feedback_elites: How many networks the prompt shows with their accuracy.
        feedback_from: ``"elites"`` (other elites) or ``"children"`` (the parent's own
            evaluated children, then the parent).
        seed_only: Every child is a mutation of the seed network, the first candidate
            (the best-of-N ablation: sampling, no search).
        **kwargs: See :class:`~llmatic.emitters.LLMEmitterBase`.
    """

    operator = "mutation"
    # From the config, which a resumed run rebuilds (and checkpoints before it lack).
    attached = (*LLMEmitterBase.attached, "feedback_from", "parents")

    def __init__(
        self,
        archive,
        *,
        parents_top_k: int | None = 3,
        parents: str = "archive",
        prompts_top_k: int = 3,
        explore: float = 0.1,
        feedback_elites: int = 0,
        feedback_from: str = "elites",
        seed_only: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(archive, **kwargs)
        if (parents_top_k is not None and parents_top_k < 1) or prompts_top_k < 1:
            raise ValueError("parents_top_k (or None) and prompts_top_k must be >= 1")
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {explore}")
        if parents not in PARENT_POOLS:
            raise ValueError(f"parents must be one of {PARENT_POOLS}, got {parents!r}")
        self.parents_top_k = parents_top_k
        self.parents = parents
        self.prompts_top_k = prompts_top_k
        self.explore = explore
        if feedback_elites < 0:
            raise ValueError(f"feedback_elites must be >= 0, got {feedback_elites}")
        if feedback_from not in FEEDBACK_SOURCES:
            raise ValueError(
                f"feedback_from must be one of {FEEDBACK_SOURCES}, got {feedback_from!r}"
            )
        self.feedback_elites = feedback_elites
        self.feedback_from = feedback_from
        self.seed_only = seed_only
        self.num_prompts = len(self.prompter.mutation_prompts)

    def ask(self) -> np.ndarray:
        """Returns ``(n,)`` candidate ids, ``n <= batch_size`` (0 while the archive is empty)."""
        if self.parents == "evaluated" and len(self.archive):
            parents = self._open_ids(evaluated_ids(self.store), self.parents_top_k)
        else:
            parents = self._elite_ids(self.parents_top_k)
        if self.seed_only and parents:  # the seed was evaluated: it is the first candidate
            parents = [0]
        if not parents or self.batch_size == 0:
            return np.empty(0, dtype=object)
        cells = self.prompt_archive.most_curious(
            self.prompts_top_k, prompt_ids=range(self.num_prompts)
        )
        evaluations = self.store.evaluations  # what an annealed temperature cools with
        requests, meta = [], []
        for _ in range(self.batch_size):
            parent = self.store[parents[self.rng.integers(len(parents))]]
            if not cells or self.rng.random() < self.explore:
                prompt_id = int(self.rng.integers(self.num_prompts))
                temperature = self.temperature.fresh(evaluations, self.rng)
            else:
                prompt_id, cell_temperature, last_improved = cells[self.rng.integers(len(cells))]
                temperature = self.temperature.next(
                    cell_temperature, last_improved, self.rng, evaluations
                )
            instruction = self.prompter.mutation_prompts[prompt_id]
            examples = self._examples(parent.id)
            requests.append(self.prompter.mutation(parent.code, instruction, temperature, examples))
            meta.append({"parent_ids": (parent.id,), "prompt_id": prompt_id, "prompt": instruction})
        return self._generate(requests, meta)

    def _examples(self, parent_id: int) -> list[tuple[str, float]]:
        """``(code, validation accuracy)`` of what the prompt shows, worst first: the
        fittest elites but the parent, or the parent's best children and then the parent."""
        if not self.feedback_elites:
            return []
        if self.feedback_from == "children":
            children = [
                c for c in self.store
                if c.parent_ids == (parent_id,) and c.status == "evaluated"
            ]  # fmt: skip
            if not children:
                return []
            children.sort(key=lambda c: (-c.objective, c.id))
            parent = self.store[parent_id]
            shown = [(c.code, c.objective) for c in reversed(children[: self.feedback_elites])]
            return [*shown, (parent.code, parent.objective)]
        best = [i for i in self._elite_ids() if i != parent_id][: self.feedback_elites]
        return [(self.store[i].code, self.store[i].objective) for i in reversed(best)]
