"""Stop a search whose setup is broken after seconds, not after the whole budget.

A memory limit too small for torch, a missing data file, a broken benchmark or device:
then every evaluation fails, each one is recorded as a failed candidate, and a run used to
spend its whole budget that way and end with ``best val nan%`` and exit status 0.
:class:`FailFast` looks at the candidates' recorded statuses and failure kinds after
each iteration and raises :class:`SearchAborted` when the run cannot be working.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmatic.candidate import Candidate, CandidateStore
from llmatic.errors import ENVIRONMENT_KINDS, STATIC_KINDS

#: Candidates in the window of the "all failed the same way" rule, by default.
DEFAULT_AFTER = 8


class SearchAborted(RuntimeError):
    """The search stopped early: its setup is broken (see :class:`FailFast`).

    Attributes:
        kind: The failure kind that stopped it.
        candidate_ids: The candidates whose failures decided it.
    """

    def __init__(self, message: str, *, kind: str, candidate_ids: Sequence[int]) -> None:
        super().__init__(message)
        self.kind = kind
        self.candidate_ids = tuple(candidate_ids)


class FailFast:
    """Stops a search that cannot work, judged on its candidates' recorded failures.

    Two rules, checked at the end of every iteration (after the iteration is recorded and
    checkpointed, so that nothing finished is lost):

    1. **The seed network failed**, for any reason. The space's seed network
       (``benchmark.seed_arch`` for NB201) is trusted code from the config, a valid
       network of the space: if it cannot be
       mapped and scored, the sandbox or the benchmark is broken, and LLMatic has nothing
       to search from (its archive stays empty, its children are edits of a network that
       never ran).
    2. **The first** ``after`` **candidates that ran all failed with the same
       environment kind** (:data:`~llmatic.errors.ENVIRONMENT_KINDS`: ``out_of_memory``,
       ``timeout``, ``crashed``, ``exception``, ``training_error``). This catches searches
       without a seed (random search, REA) and any other broken setup. It is decided once,
       at the iteration in which the ``after``-th such candidate finishes; a run that got
       past it is never stopped by it later (a resumed run neither).

    What counts in rule 2. A candidate *ran* when its code or architecture reached the
    sandbox or the benchmark: evaluated candidates and failed ones, except failures found
    by reading the completion (:data:`~llmatic.errors.STATIC_KINDS`: ``no_code``,
    ``syntax_error``, ``forbidden_code``; they say nothing about the machine). Duplicates
    and skipped candidates ran nothing. Failures that are the candidate's own fault
    (``build_error``, ``out_of_space``, ``forward_error``, ``wrong_output_shape``,
    ``no_module``) count as having run but never stop a run: a model writing bad code is
    the search's normal business, and ``search.max_candidates`` bounds it. Only
    environment kinds can, and only when *all* of the window failed with the *same* one:
    one success, or failures of different kinds, mean that evaluations can work (or fail
    for the networks' own reasons), so a run with some failures of any kind among
    successes goes on exactly as before.

    Why ``after=8``: eight networks in a row failing the same environment way, with not
    one success, does not happen to a working setup (even a limit that only big networks
    hit lets small ones through); and eight is reached within the first iteration of
    random search (16 per batch), in the first two of LLMatic (whose seed rule usually
    decides first), and after eight quick failures of REA.

    Args:
        seed: Apply rule 1.
        after: Window of rule 2, in candidates that ran; 0 turns rule 2 off.
        hint: ``hint(kind, seed)``: what the user should do about ``kind`` (``seed``: it
            was the seed's failure); appended to the message.
    """

    def __init__(
        self,
        *,
        seed: bool = True,
        after: int = DEFAULT_AFTER,
        hint: Callable[[str, bool], str] | None = None,
    ) -> None:
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        self.seed = seed
        self.after = after
        self.hint = hint
        self._decided = after == 0  # the window is complete: rule 2 is done with

    def check(self, store: CandidateStore, batch: Sequence[Candidate]) -> None:
        """Raises :class:`SearchAborted` if ``batch``, the iteration just finished, shows
        that the setup is broken (``store`` holds every candidate so far)."""
        if self.seed:
            for candidate in batch:
                if candidate.operator == "seed" and candidate.status == "failed":
                    kind = candidate.error_kind or "exception"
                    raise SearchAborted(
                        self._message(
                            f"the seed network (candidate {candidate.id}) failed with {kind}",
                            candidate,
                            kind,
                            seed=True,
                        ),
                        kind=kind,
                        candidate_ids=[candidate.id],
                    )
        if self._decided or not batch:
            return
        window: list[Candidate] = []
        for candidate in store:
            if ran(candidate):
                window.append(candidate)
                if len(window) == self.after:
                    break
        if len(window) < self.after:
            return  # not complete yet
        self._decided = True
        if window[-1].id not in {c.id for c in batch}:
            return  # completed in an earlier iteration (before a resume): decided then
        kinds = {c.error_kind if c.status == "failed" else None for c in window}
        if len(kinds) != 1:
            return
        (kind,) = kinds
        if kind not in ENVIRONMENT_KINDS:
            return
        raise SearchAborted(
            self._message(
                f"the first {self.after} candidates that ran all failed with {kind}",
                window[-1],
                kind,
                seed=False,
            ),
            kind=kind,
            candidate_ids=[c.id for c in window],
        )

    def _message(self, what: str, example: Candidate, kind: str, *, seed: bool) -> str:
        error = " ".join((example.error or "").split())
        if len(error) > 200:
            error = error[:197] + "..."
        message = f"{what} ({error})" if error else what
        hint = self.hint(kind, seed) if self.hint is not None else ""
        return f"{message}: {hint}" if hint else message


def ran(candidate: Candidate) -> bool:
    """Whether ``candidate`` reached the sandbox or the benchmark (see :class:`FailFast`)."""
    if candidate.status == "evaluated":
        return True
    return candidate.status == "failed" and candidate.error_kind not in STATIC_KINDS
