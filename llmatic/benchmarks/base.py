"""The interface of a benchmark: arch string in, validation/test accuracy and measures out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from llmatic.sandbox import results

#: What :meth:`llmatic.measures.NetworkMeasures.as_dict` holds.
MEASURE_KEYS = ("flops", "depth", "width", "params", "width_to_depth", "log10_flops")


@dataclass(frozen=True)
class ArchEvaluation:
    """What a benchmark says about one architecture.

    Attributes:
        objective: Validation accuracy in %: the only number the search sees.
        test_objective: Test accuracy in %: reported at the end, never used for selection.
        measures: Network measures (see :mod:`llmatic.measures`), including the archive's
            ``width_to_depth`` and ``log10_flops``.
        seconds: Wall time of the evaluation.
    """

    objective: float
    test_objective: float
    measures: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class Lineage:
    """A trained candidate and the parent whose trained weights it may start from.

    Benchmarks that keep trained weights (``benchmark.inherit_weights``) save a candidate's
    under ``candidate_id`` and warm-start it from ``parent_id``'s where those exist.
    """

    candidate_id: int
    parent_id: int | None


class Benchmark(Protocol):
    """Scores NAS-Bench-201 architectures given as arch strings."""

    name: str

    def evaluate(self, arch: str) -> ArchEvaluation:
        """Raises ``CandidateError`` when the architecture cannot be evaluated."""
        ...


def check_measures(value: Any) -> dict[str, float]:
    """The parent's check of measures a sandboxed child sent: :data:`MEASURE_KEYS`, finite.

    Raises:
        ValueError: A key is missing or unknown, or a value is not a finite number.
    """
    measures = results.exact_keys(value, MEASURE_KEYS)
    return {key: results.number(measures[key]) for key in MEASURE_KEYS}
