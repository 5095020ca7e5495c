"""What the LLM mutation and crossover emitters share: one batched LLM call per ``ask``,
candidates recorded in the store, and curiosity credited to the prompt archive in ``tell``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ribs.archives import GridArchive
from ribs.emitters import EmitterBase

from llmatic.archives import PromptArchive
from llmatic.candidate import CandidateStore
from llmatic.emitters._baselines import elite_ids
from llmatic.emitters._state import CheckpointableEmitter
from llmatic.errors import CandidateError
from llmatic.llm.base import GenerationRequest, LLMBackend
from llmatic.prompting import Prompter


@dataclass(frozen=True)
class CuriosityRule:
    """Curiosity change of a prompt cell per child (LLMatic's defaults)."""

    improved: float = 1.0  # the child entered or improved the network archive
    not_improved: float = -0.5  # valid (or a duplicate), but no better than what is there
    invalid: float = -1.0  # the code failed: no code, syntax error, out of space, ...


#: How the LLM's sampling temperature is chosen (``TemperatureRule(schedule=...)``).
TEMPERATURE_SCHEDULES = ("adaptive", "constant", "anneal")


@dataclass(frozen=True)
class TemperatureRule:
    """The sampling temperature of a child, by one of three schedules.

    - ``adaptive`` (LLMatic's rule): a prompt cell's temperature moves by
      ``t' = clip(t +/- step + N(0, jitter), low, high)``, ``+step`` when the cell's last
      child improved the network archive, ``-step`` otherwise; a prompt with no cell yet
      starts at ``initial``.
    - ``constant``: always ``initial`` (the ablation of the temperature axis).
    - ``anneal``: ``high`` at the first evaluation down to ``low`` at ``horizon``
      evaluations, linearly (wide samples early, near the parent late), plus
      ``N(0, jitter)``, clipped to ``[low, high]``; the cell's own history is ignored.

    Args:
        horizon: Charged evaluations over which ``anneal`` cools (the search's budget).
    """

    step: float = 0.05
    jitter: float = 0.05
    low: float = 0.1
    high: float = 1.0
    initial: float = 0.6
    schedule: str = "adaptive"
    horizon: int | None = None

    def __post_init__(self) -> None:
        if self.schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(
                f"schedule must be one of {TEMPERATURE_SCHEDULES}, got {self.schedule!r}"
            )
        if self.schedule == "anneal" and (self.horizon is None or self.horizon < 1):
            raise ValueError(f"schedule='anneal' needs a horizon >= 1, got {self.horizon}")

    def fresh(self, evaluations: int, rng: np.random.Generator) -> float:
        """The temperature of a prompt taken without a cell (random, or none yet)."""
        if self.schedule != "anneal":
            return self.initial
        return self._annealed(evaluations, rng)

    def next(
        self,
        temperature: float,
        last_improved: bool,
        rng: np.random.Generator,
        evaluations: int = 0,
    ) -> float:
        """The temperature of a child of a prompt cell at ``temperature``, after
        ``evaluations`` charged evaluations of the search."""
        if self.schedule == "constant":
            return self.initial
        if self.schedule == "anneal":
            return self._annealed(evaluations, rng)
        moved = temperature + (self.step if last_improved else -self.step)
        return float(np.clip(moved + rng.normal(0.0, self.jitter), self.low, self.high))

    def _annealed(self, evaluations: int, rng: np.random.Generator) -> float:
        progress = min(1.0, max(0.0, evaluations / self.horizon))
        centre = self.high + (self.low - self.high) * progress
        return float(np.clip(centre + rng.normal(0.0, self.jitter), self.low, self.high))


class LLMEmitterBase(CheckpointableEmitter, EmitterBase):
    """Base of the LLM emitters; subclasses choose parents, prompts and temperatures.

    Args:
        archive: The network archive (solutions are candidate ids).
        prompt_archive: Curiosity per (prompt, temperature).
        store: Where candidates are created.
        llm: The generation backend; called once per ``ask``.
        prompter: Builds generation requests and turns completions into code.
        batch_size: Candidates per ``ask``.
        curiosity: Curiosity increments.
        temperature: Temperature rule.
        seed: Seed of this emitter's random choices.
    """

    operator = "llm"
    attached = ("_archive", "prompt_archive", "store", "llm", "prompter")

    def __init__(
        self,
        archive: GridArchive,
        *,
        prompt_archive: PromptArchive,
        store: CandidateStore,
        llm: LLMBackend,
        prompter: Prompter,
        batch_size: int,
        curiosity: CuriosityRule = CuriosityRule(),
        temperature: TemperatureRule = TemperatureRule(),
        seed: int | None = None,
    ) -> None:
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}")
        EmitterBase.__init__(
            self, archive, solution_dim=(), bounds=None, lower_bounds=None, upper_bounds=None
        )
        self.prompt_archive = prompt_archive
        self.store = store
        self.llm = llm
        self.prompter = prompter
        self.batch_size = batch_size
        self.curiosity = curiosity
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)

    def _generate(
        self,
        requests: Sequence[GenerationRequest],
        meta: Sequence[dict],
    ) -> np.ndarray:
        """Samples all ``requests`` in one LLM call and records one candidate per request.

        Each candidate gets its generation's token counts and ``llm_seconds``: the wall
        time of the whole batched call split evenly over its requests (a batch is sampled
        together, so no request has a time of its own).

        Returns:
            ``(len(requests),)`` object array of candidate ids.
        """
        start = time.perf_counter()
        generations = self.llm.generate(list(requests)) if requests else []
        seconds = (time.perf_counter() - start) / len(generations) if generations else 0.0
        ids = np.empty(len(generations), dtype=object)
        for k, (request, generation, fields) in enumerate(
            zip(requests, generations, meta, strict=True)
        ):
            candidate = self.store.new(
                self.operator,
                temperature=request.temperature,
                prompt_tokens=generation.prompt_tokens,
                generation_tokens=generation.num_tokens,
                llm_seconds=seconds,
                **fields,
            )
            try:
                candidate.code = self.prompter.to_code(request, generation)
            except CandidateError as err:
                candidate.code = request.prefill + generation.text
                candidate.fail(err.kind, err.message)
            ids[k] = candidate.id
        return ids

    def tell(
        self,
        solution: np.ndarray,
        objective: np.ndarray,
        measures: np.ndarray,
        add_info: dict,
        **fields: np.ndarray,
    ) -> None:
        """Credits each child's prompt cell with the curiosity rule.

        Skipped children (the budget ran out) are not credited; they were never evaluated.
        """
        prompt_ids, temperatures, deltas, improved = [], [], [], []
        for k, candidate_id in enumerate(solution):
            candidate = self.store[candidate_id]
            if candidate.status == "skipped" or candidate.prompt_id is None:
                continue
            entered = bool(add_info["status"][k] > 0)
            if entered:
                delta = self.curiosity.improved
            elif candidate.status == "failed":
                delta = self.curiosity.invalid
            else:
                delta = self.curiosity.not_improved
            prompt_ids.append(candidate.prompt_id)
            temperatures.append(candidate.temperature)
            deltas.append(delta)
            improved.append(entered)
        self.prompt_archive.credit(prompt_ids, temperatures, deltas, improved)

    def _elite_ids(self, k: int | None = None) -> list[int]:
        """Candidate ids of the network archive's elites, best first (top ``k``).

        With ``k``, elites whose every mutation was already evaluated or proposed (their
        neighbourhood is exhausted) are passed over for the next best, so that a search
        whose best networks stay the same does not spend its samples on duplicates.
        """
        return self._open_ids(elite_ids(self.archive), k)

    def _open_ids(self, ranked: list[int], k: int | None) -> list[int]:
        """The first ``k`` ids of ``ranked`` that the prompter can still vary (all of
        ``ranked`` with ``k`` None; its first ``k`` when none can be varied)."""
        if k is None:
            return ranked
        open_ids = []
        for i in ranked:
            if len(open_ids) == k:
                break
            if self.prompter.can_vary(self.store[i].code):
                open_ids.append(i)
        return open_ids or ranked[:k]
