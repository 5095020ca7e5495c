"""N evaluations at a time on this machine: threads that each wait on a sandboxed child."""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from llmatic.benchmarks.base import ArchEvaluation, Benchmark, Lineage
from llmatic.errors import CandidateError
from llmatic.sandbox import Sandbox
from llmatic.spaces import SearchSpace

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class IdentifyOutcome:
    """What the sandboxed identification of one code gave.

    Attributes:
        identity: The checked value that :meth:`SearchSpace.key_of` reads; None on failure.
        error: Why there is none (``(kind, message)``), else None.
        seconds: Wall time of the call.
    """

    identity: dict | None
    error: tuple[str, str] | None
    seconds: float


#: Tries of a call whose worker was lost (``worker_lost``: the sandbox's zygote died
#: mid-call): the first, and one retry on the zygote that replaces it.
ATTEMPTS = 2


def identify_in(sandbox: Sandbox, space: SearchSpace, code: str) -> IdentifyOutcome:
    """Runs ``space``'s identification of ``code`` in ``sandbox`` (any process)."""
    call = space.identify_call(code=code)
    for _ in range(ATTEMPTS):
        result = sandbox.run(call.target, call.payload, check=call.check)
        if result.error_kind != "worker_lost":
            break
    if result.ok:
        return IdentifyOutcome(result.value, None, result.seconds)
    return IdentifyOutcome(
        None, (result.error_kind or "exception", result.error or ""), result.seconds
    )


#: One evaluation: the network's key, its code, and its lineage (None: no inheritance).
Job = tuple[str, str, Lineage | None]


def evaluate_on(
    benchmark: Benchmark, space: SearchSpace, key: str, code: str, lineage: Lineage | None = None
) -> ArchEvaluation | CandidateError:
    """Scores network ``key`` (written as ``code``) on ``benchmark``; its error if it fails."""
    extra = {} if lineage is None else {"lineage": lineage}
    for _ in range(ATTEMPTS):
        try:
            return space.evaluate(benchmark=benchmark, key=key, code=code, **extra)
        except CandidateError as err:
            if err.kind != "worker_lost":
                return err
            lost = err
    return lost


class LocalWorkers:
    """``len(benchmarks)`` calls at a time in one sandbox (each call its own child).

    The sandbox takes concurrent calls from several threads; the threads here only wait
    on their child, so the search process itself stays one Python thread of work. Worker
    ``i`` scores on ``benchmarks[i]``, which may hold a device of its own (one GPU per
    worker); which worker scores which candidate does not change its score.

    Args:
        space: Identifies code and says what the benchmark evaluates.
        sandbox: Runs the untrusted code (shared by the workers).
        benchmarks: One benchmark per worker.
    """

    def __init__(
        self, *, space: SearchSpace, sandbox: Sandbox, benchmarks: Sequence[Benchmark]
    ) -> None:
        if not benchmarks:
            raise ValueError("LocalWorkers needs at least one benchmark (one per worker)")
        self.space = space
        self.sandbox = sandbox
        self.benchmarks = list(benchmarks)
        self._free: queue.SimpleQueue[Benchmark] = queue.SimpleQueue()
        for benchmark in self.benchmarks:
            self._free.put(benchmark)
        self._executor = (
            ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="llmatic-worker")
            if self.size > 1
            else None
        )

    @property
    def size(self) -> int:
        return len(self.benchmarks)

    def identify(self, codes: Sequence[str]) -> list[IdentifyOutcome]:
        return self._map(lambda code: identify_in(self.sandbox, self.space, code), codes)

    def evaluate(self, jobs: Sequence[Job]) -> list[ArchEvaluation | CandidateError]:
        def run(job: Job) -> ArchEvaluation | CandidateError:
            benchmark = self._free.get()
            try:
                return evaluate_on(benchmark, self.space, *job)
            finally:
                self._free.put(benchmark)

        return self._map(run, jobs)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``function`` over ``items``, results in input order (a worker per item at once)."""
        if self._executor is None or len(items) <= 1:
            return [function(item) for item in items]
        return list(self._executor.map(function, items))
