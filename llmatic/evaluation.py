"""Candidate code -> arch string (in the sandbox) -> benchmark score, counted honestly.

- Generated code only ever runs in the sandbox (``llmatic.nb201.inspect:inspect_cell``),
  and only once it passes the static check (:mod:`llmatic.sandbox.static_check`), which
  runs here first so that forbidden code costs no sandbox call; candidates that come with
  their arch (the baselines render code from an arch with our own code) skip that step.
- The same code (after normalisation) is inspected once; the same architecture is
  evaluated once: a repeat is recorded as a ``duplicate`` of the first and costs no budget.
- Every benchmark call counts as one evaluation, whether it succeeds or not; once the
  budget is spent the remaining candidates are ``skipped``.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from llmatic.benchmarks.base import Benchmark
from llmatic.candidate import Candidate, CandidateStore
from llmatic.errors import CandidateError
from llmatic.nb201.inspect import check_inspect_result
from llmatic.network_code import normalize_code
from llmatic.sandbox import Sandbox, check_code


class CellEvaluator:
    """Evaluates NB201-cell candidates on a benchmark.

    Args:
        sandbox: Runs the untrusted cell code.
        benchmark: Scores arch strings.
        probe_channels: Channels of the cell built to inspect the code.
        probe_size: Spatial size of the probe input.
    """

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        benchmark: Benchmark,
        probe_channels: int = 4,
        probe_size: int = 8,
    ) -> None:
        self.sandbox = sandbox
        self.benchmark = benchmark
        self.probe = {"channels": probe_channels, "size": probe_size}
        self.evaluations = 0
        self._arch_of_code: dict[str, str | CandidateError] = {}
        self._first_with_arch: dict[str, Candidate] = {}
        self.inspect_seconds = 0.0
        self.benchmark_seconds = 0.0

    @property
    def evaluated_archs(self) -> Container[str]:
        """Arch strings charged so far (a live view)."""
        return self._first_with_arch.keys()

    def state_dict(self) -> dict:
        """Evaluation count, de-duplication tables and timings (for a checkpoint).

        Candidates are referred to by id and errors as ``(kind, message)``: both pickle
        without the store and without ``CandidateError``'s constructor.
        """
        return {
            "evaluations": self.evaluations,
            "arch_of_code": {
                key: (value.kind, value.message) if isinstance(value, CandidateError) else value
                for key, value in self._arch_of_code.items()
            },
            "first_with_arch": {arch: c.id for arch, c in self._first_with_arch.items()},
            "inspect_seconds": self.inspect_seconds,
            "benchmark_seconds": self.benchmark_seconds,
        }

    def load_state_dict(self, state: dict, store: CandidateStore) -> None:
        """Restores :meth:`state_dict`; ``store`` holds the candidates it refers to.

        The tables are refilled in place: :attr:`evaluated_archs` views stay live.
        """
        self.evaluations = int(state["evaluations"])
        self._arch_of_code.clear()
        for key, value in state["arch_of_code"].items():
            self._arch_of_code[key] = value if isinstance(value, str) else CandidateError(*value)
        self._first_with_arch.clear()
        for arch, candidate_id in state["first_with_arch"].items():
            self._first_with_arch[arch] = store[candidate_id]
        self.inspect_seconds = float(state["inspect_seconds"])
        self.benchmark_seconds = float(state["benchmark_seconds"])

    def evaluate(self, candidates: Sequence[Candidate], *, budget: int) -> None:
        """Completes each pending candidate in place; stops charging at ``budget``."""
        for candidate in candidates:
            if candidate.status != "pending":
                continue  # failed earlier (e.g. no code could be extracted)
            # A baseline's code is rendered from its arch by our own code: nothing to map.
            arch = candidate.arch if candidate.arch is not None else self.arch_of(candidate.code)
            if isinstance(arch, CandidateError):
                candidate.fail(arch.kind, arch.message)
                continue
            candidate.arch = arch
            first = self._first_with_arch.get(arch)
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
            self.score(candidate, arch)

    def score(self, candidate: Candidate, arch: str) -> None:
        """One charged benchmark evaluation of ``arch`` for ``candidate``."""
        self.evaluations += 1
        self._first_with_arch[arch] = candidate
        candidate.charged = True
        try:
            result = self.benchmark.evaluate(arch)
        except CandidateError as err:
            candidate.fail(err.kind, err.message)
            return
        self.benchmark_seconds += result.seconds
        candidate.eval_seconds += result.seconds
        candidate.status = "evaluated"
        candidate.objective, candidate.test_objective = result.objective, result.test_objective
        candidate.measures = dict(result.measures)

    def arch_of(self, code: str) -> str | CandidateError:
        """The arch string of ``code`` (cached by normalised code), or why there is none."""
        key = normalize_code(code)
        if key not in self._arch_of_code:
            reason = check_code(code)
            if reason is not None:
                self._arch_of_code[key] = CandidateError("forbidden_code", reason)
                return self._arch_of_code[key]
            result = self.sandbox.run(
                "llmatic.nb201.inspect:inspect_cell",
                {"code": code, **self.probe},
                check=check_inspect_result,
            )
            self.inspect_seconds += result.seconds
            self._arch_of_code[key] = (
                result.value["arch"]
                if result.ok
                else CandidateError(result.error_kind or "exception", result.error or "")
            )
        return self._arch_of_code[key]
