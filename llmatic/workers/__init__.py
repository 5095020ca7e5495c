"""Where candidates are evaluated: a pool of workers on this machine or on a Ray cluster.

The :class:`~llmatic.evaluation.Evaluator` decides *what* is evaluated (which code to
identify, which key to charge, when the budget is spent); a worker pool runs those calls,
several at a time, and gives the results back in the order they were asked for, so a
search's results never depend on the number of workers or on the order they finish in.

- :class:`LocalWorkers` (``evaluator=local``): N calls at a time in this machine's
  sandbox, each in its own sandboxed child; each worker has its own benchmark (and so its
  own device: ``evaluator.devices``). A call whose sandbox server died mid-way is retried
  once on the server that replaces it.
- :class:`~llmatic.workers.ray_pool.RayWorkers` (``evaluator=ray``): one Ray actor per
  worker, each with a sandbox of its own built from the run's config, so untrusted code is
  as confined on a Ray worker as it is here. A worker lost mid-call is replaced and the
  call retried once; a second loss is the candidate's ``worker_lost`` failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.errors import CandidateError
from llmatic.workers.local import IdentifyOutcome, Job, LocalWorkers

__all__ = ["IdentifyOutcome", "Job", "LocalWorkers", "Workers"]


class Workers(Protocol):
    """A pool that runs identification and evaluation calls, results in input order."""

    @property
    def size(self) -> int:
        """How many calls run at once."""

    def identify(self, codes: Sequence[str]) -> list[IdentifyOutcome]:
        """Runs the space's sandboxed identification of each of ``codes``."""

    def evaluate(self, jobs: Sequence[tuple[str, str]]) -> list[ArchEvaluation | CandidateError]:
        """Scores each ``(key, code)`` on the benchmark; a failure is its error."""

    def close(self) -> None:
        """Releases the workers."""
