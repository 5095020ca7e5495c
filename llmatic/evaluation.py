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
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from llmatic.benchmarks.base import Benchmark
from llmatic.candidate import Candidate, CandidateStore
from llmatic.errors import CandidateError
from llmatic.network_code import normalize_code
from llmatic.sandbox import Sandbox, check_code
from llmatic.spaces import SearchSpace


class Evaluator:
    """Evaluates candidates of one search space on a benchmark.

    Args:
        space: Identifies code (in the sandbox) and says what the benchmark evaluates.
        sandbox: Runs the untrusted code.
        benchmark: Scores networks.
    """

    def __init__(self, *, space: SearchSpace, sandbox: Sandbox, benchmark: Benchmark) -> None:
        self.space = space
        self.sandbox = sandbox
        self.benchmark = benchmark
        self.evaluations = 0
        self._key_of_code: dict[str, str | CandidateError] = {}
        self._first_with_key: dict[str, Candidate] = {}
        self.inspect_seconds = 0.0
        self.benchmark_seconds = 0.0

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
        for candidate in candidates:
            if candidate.status != "pending":
                continue  # failed earlier (e.g. no code could be extracted)
            # A baseline's code is rendered from its key by our own code: nothing to identify.
            key = candidate.arch if candidate.arch is not None else self.key_of_code(candidate.code)
            if isinstance(key, CandidateError):
                candidate.fail(key.kind, key.message)
                continue
            candidate.arch = key
            first = self._first_with_key.get(key)
            if first is not None:
                candidate.status, candidate.duplicate_of = "duplicate", first.id
                candidate.objective, candidate.test_objective = (
                    first.objective,
                    first.test_objective,
                )
                candidate.measures = dict(first.measures)
                continue
            if self.evaluations >= budget:
                candidate.status = "skipped"
                continue
            self.score(candidate, key)

    def score(self, candidate: Candidate, key: str) -> None:
        """One charged benchmark evaluation of network ``key`` for ``candidate``."""
        self.evaluations += 1
        self._first_with_key[key] = candidate
        candidate.charged = True
        try:
            result = self.space.evaluate(benchmark=self.benchmark, key=key, code=candidate.code)
        except CandidateError as err:
            candidate.fail(err.kind, err.message)
            return
        self.benchmark_seconds += result.seconds
        candidate.eval_seconds += result.seconds
        candidate.status = "evaluated"
        candidate.objective, candidate.test_objective = result.objective, result.test_objective
        candidate.measures = dict(result.measures)

    def key_of_code(self, code: str) -> str | CandidateError:
        """The key of ``code`` (cached by normalised code), or why there is none."""
        normalized = normalize_code(code)
        if normalized not in self._key_of_code:
            reason = check_code(code)
            if reason is not None:
                self._key_of_code[normalized] = CandidateError("forbidden_code", reason)
                return self._key_of_code[normalized]
            call = self.space.identify_call(code=code)
            result = self.sandbox.run(call.target, call.payload, check=call.check)
            self.inspect_seconds += result.seconds
            self._key_of_code[normalized] = (
                self.space.key_of(result.value)
                if result.ok
                else CandidateError(result.error_kind or "exception", result.error or "")
            )
        return self._key_of_code[normalized]
