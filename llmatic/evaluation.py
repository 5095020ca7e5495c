"""Candidate code -> key (in the sandbox) -> benchmark score, counted honestly.

The search space (:class:`llmatic.spaces.SearchSpace`) says what runs in the sandbox to
check and identify a candidate, which key makes two candidates the same network, and what
the benchmark evaluates for a key; this module does the rest, for any space:

- Generated code only ever runs in the sandbox (the space's :meth:`identify_call
  <llmatic.spaces.SearchSpace.identify_call>`), and only once it passes the static check
  (:mod:`llmatic.sandbox.static_check`), which runs here first so that forbidden code costs
  no sandbox call; candidates that come with their key (the baselines render code from a
  key with our own code) skip that step.
- The same code (after normalisation) is identified once; the same key is evaluated once:
  a repeat is recorded as a ``duplicate`` of the first and costs no budget.
- Every benchmark call counts as one evaluation, whether it succeeds or not; once the
  budget is spent the remaining candidates are ``skipped``.

A batch is done in three steps: the new codes are identified (by the workers, several at
once), the keys are charged or marked as duplicates in the batch's order (here, one
thread), and the charged networks are scored (by the workers, several at once). Only the
first and last steps run in parallel, and both give their results in input order, so the
archives a seed gives are the same with 1 worker or 8 (:mod:`llmatic.workers`).
"""

from __future__ import annotations

import time
from collections.abc import Container, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from llmatic.benchmarks.base import Benchmark, Lineage
from llmatic.candidate import Candidate, CandidateStore
from llmatic.errors import CandidateError
from llmatic.network_code import normalize_code
from llmatic.sandbox import Sandbox, check_code
from llmatic.spaces import SearchSpace
from llmatic.workers import LocalWorkers, Workers


@dataclass
class PendingBatch:
    """A batch :meth:`Evaluator.submit` charged, whose scores :meth:`Evaluator.collect` fills.

    Attributes:
        charged: ``(candidate, key)`` pairs to score, in the batch's order.
        duplicates: ``(candidate, first)``: repeats of an evaluated (or charged) network.
        jobs: What the workers score, one per charged pair.
        future: The workers' results, when scoring runs in the background.
        start: When scoring started (``time.perf_counter``).
    """

    charged: list[tuple[Candidate, str]] = field(default_factory=list)
    duplicates: list[tuple[Candidate, Candidate]] = field(default_factory=list)
    jobs: list = field(default_factory=list)
    future: Future | None = None
    start: float = 0.0


class Evaluator:
    """Evaluates candidates of one search space on a benchmark.

    Args:
        space: Identifies code (in the sandbox) and says what the benchmark evaluates.
        sandbox: Runs the untrusted code (with ``benchmark``: one local worker).
        benchmark: Scores networks.
        workers: Runs the calls instead (several at once); then leave out ``sandbox`` and
            ``benchmark``.
        inherit_weights: Tell the benchmark each charged candidate's lineage (its id and
            its first parent's), so that it can keep trained weights and warm-start
            children from them (``benchmark.inherit_weights``).
    """

    def __init__(
        self,
        *,
        space: SearchSpace,
        sandbox: Sandbox | None = None,
        benchmark: Benchmark | None = None,
        workers: Workers | None = None,
        inherit_weights: bool = False,
    ) -> None:
        self.space = space
        self.inherit_weights = inherit_weights
        self.workers = workers or LocalWorkers(space=space, sandbox=sandbox, benchmarks=[benchmark])
        self.evaluations = 0
        self._key_of_code: dict[str, str | CandidateError] = {}
        self._first_with_key: dict[str, Candidate] = {}
        # Wall time of the identification and scoring steps (calls overlap with workers).
        self.inspect_seconds = 0.0
        self.benchmark_seconds = 0.0
        self._background: ThreadPoolExecutor | None = None

    @property
    def evaluated_keys(self) -> Container[str]:
        """Keys charged so far (a live view)."""
        return self._first_with_key.keys()

    def state_dict(self) -> dict:
        """Evaluation count, de-duplication tables and timings (for a checkpoint).

        Candidates are referred to by id and errors as ``(kind, message)``: both pickle
        without the store and without ``CandidateError``'s constructor.
        """
        return {
            "evaluations": self.evaluations,
            "key_of_code": {
                key: (value.kind, value.message) if isinstance(value, CandidateError) else value
                for key, value in self._key_of_code.items()
            },
            "first_with_key": {key: c.id for key, c in self._first_with_key.items()},
            "inspect_seconds": self.inspect_seconds,
            "benchmark_seconds": self.benchmark_seconds,
        }

    def load_state_dict(self, state: dict, store: CandidateStore) -> None:
        """Restores :meth:`state_dict`; ``store`` holds the candidates it refers to.

        The tables are refilled in place: :attr:`evaluated_keys` views stay live.
        """
        self.evaluations = int(state["evaluations"])
        self._key_of_code.clear()
        for key, value in state["key_of_code"].items():
            self._key_of_code[key] = value if isinstance(value, str) else CandidateError(*value)
        self._first_with_key.clear()
        for key, candidate_id in state["first_with_key"].items():
            self._first_with_key[key] = store[candidate_id]
        self.inspect_seconds = float(state["inspect_seconds"])
        self.benchmark_seconds = float(state["benchmark_seconds"])

    def evaluate(self, candidates: Sequence[Candidate], *, budget: int) -> None:
        """Completes each pending candidate in place; stops charging at ``budget``."""
        self.collect(self.submit(candidates, budget=budget))

    def submit(
        self, candidates: Sequence[Candidate], *, budget: int, background: bool = False
    ) -> PendingBatch:
        """Identifies and charges the batch now; scores it in :meth:`collect`.

        Args:
            candidates: The batch; candidates not ``pending`` (failed earlier) are left.
            budget: Charged evaluations at most.
            background: Start scoring now, in a thread of its own, so that the caller can
                do other work (the LLM writing the next batch: ``search.overlap``) until
                :meth:`collect`. Everything this object counts or de-duplicates is settled
                before this returns: only the scores arrive later.
        """
        pending = [c for c in candidates if c.status == "pending"]  # others failed earlier
        # A baseline's code is rendered from its key by our own code: nothing to identify.
        self.identify([c.code for c in pending if c.arch is None])
        batch = PendingBatch()
        for candidate in pending:
            key = candidate.arch if candidate.arch is not None else self.key_of_code(candidate.code)
            if isinstance(key, CandidateError):
                candidate.fail(key.kind, key.message)
                continue
            candidate.arch = key
            first = self._first_with_key.get(key)
            if first is not None:
                batch.duplicates.append((candidate, first))
                continue
            if self.evaluations >= budget:
                candidate.status = "skipped"
                continue
            self.evaluations += 1
            self._first_with_key[key] = candidate
            candidate.charged = True
            batch.charged.append((candidate, key))
        batch.jobs = [(key, c.code, self._lineage(c)) for c, key in batch.charged]
        batch.start = time.perf_counter()
        if background and batch.jobs:
            if self._background is None:
                self._background = ThreadPoolExecutor(1, thread_name_prefix="llmatic-scoring")
            batch.future = self._background.submit(self.workers.evaluate, batch.jobs)
        return batch

    def collect(self, batch: PendingBatch) -> None:
        """Waits for :meth:`submit`'s scores (or computes them now) and completes the batch."""
        if batch.future is not None:
            results = batch.future.result()
        else:
            results = self.workers.evaluate(batch.jobs) if batch.jobs else []
        if batch.jobs:
            self.benchmark_seconds += time.perf_counter() - batch.start
        for (candidate, _), result in zip(batch.charged, results, strict=True):
            if isinstance(result, CandidateError):
                candidate.fail(result.kind, result.message)
                continue
            candidate.eval_seconds += result.seconds
            candidate.status = "evaluated"
            candidate.objective, candidate.test_objective = result.objective, result.test_objective
            candidate.measures = dict(result.measures)
        for candidate, first in batch.duplicates:  # after scoring: ``first`` may be in it
            candidate.status, candidate.duplicate_of = "duplicate", first.id
            candidate.objective, candidate.test_objective = first.objective, first.test_objective
            candidate.measures = dict(first.measures)

    def close(self, *, wait: bool = True) -> None:
        """Stops the scoring thread (if :meth:`submit` started one).

        ``wait=False`` (a run stopped by an error or Ctrl-C) leaves a batch in flight to
        end when the workers are closed: its scores are not wanted any more.
        """
        if self._background is not None:
            self._background.shutdown(wait=wait, cancel_futures=True)
            self._background = None

    def _lineage(self, candidate: Candidate) -> Lineage | None:
        if not self.inherit_weights:
            return None
        parent = candidate.parent_ids[0] if candidate.parent_ids else None
        return Lineage(candidate_id=candidate.id, parent_id=parent)

    def identify(self, codes: Sequence[str]) -> None:
        """Identifies the codes not seen yet (several at once); :meth:`key_of_code` reads them."""
        new: dict[str, str] = {}  # normalised -> code, first of each in order
        for code in codes:
            normalized = normalize_code(code)
            if normalized in self._key_of_code or normalized in new:
                continue
            reason = check_code(code)  # forbidden code costs no sandbox call
            if reason is not None:
                self._key_of_code[normalized] = CandidateError("forbidden_code", reason)
                continue
            new[normalized] = code
        if not new:
            return
        start = time.perf_counter()
        outcomes = self.workers.identify(list(new.values()))
        self.inspect_seconds += time.perf_counter() - start
        for normalized, outcome in zip(new, outcomes, strict=True):
            self._key_of_code[normalized] = (
                self.space.key_of(outcome.identity)
                if outcome.error is None
                else CandidateError(*outcome.error)
            )

    def key_of_code(self, code: str) -> str | CandidateError:
        """The key of ``code`` (cached by normalised code), or why there is none."""
        normalized = normalize_code(code)
        if normalized not in self._key_of_code:
            self.identify([code])
        return self._key_of_code[normalized]
