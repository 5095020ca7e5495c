"""The search loop: ask the emitters, evaluate in the sandbox, tell the archives.

init phase:  seed network -> LLM children of the seed (random prompts, t = 0.6)
main phase:  repeat until the budget is spent (or stop_objective is reached):
    ids = scheduler.ask()              # mutation + crossover emitters, one LLM call each
    evaluator.evaluate(candidates)     # sandboxed code -> arch -> benchmark (deduplicated)
    scheduler.tell(...)                # network archive; emitters credit curiosity
    fail_fast.check(...)               # stop a broken setup early (llmatic.search.fail_fast)

With ``overlap`` (``search.overlap``), the LLM writes batch i+1 while batch i is scored:
batch i is identified and charged, its scoring starts in the background, the emitters ask
on the archive as it was (without batch i), and batch i is told once scored. Every
``drain_every``-th iteration asks nothing ahead, so that the search's state is whole there
(checkpoints are taken at those iterations only).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ribs.schedulers import Scheduler

from llmatic.archives import NETWORK_MEASURES
from llmatic.candidate import Candidate, CandidateStore
from llmatic.search.fail_fast import FailFast
from llmatic.search.scheduler import ask_ahead, tell_behind

log = logging.getLogger(__name__)


@dataclass
class IterationStats:
    """One row of ``metrics.csv``."""

    iteration: int
    phase: str
    evaluations: int  # charged benchmark evaluations so far
    candidates: int  # every candidate proposed so far (incl. failed and duplicates)
    valid_code_rate: float  # share of LLM candidates whose code mapped to an arch (NaN: no LLM)
    duplicates: int
    best_objective: float  # best validation accuracy in the network archive, %
    qd_score: float
    coverage: float  # share of network-archive cells filled
    prompt_cells: int  # filled cells of the prompt archive
    seconds: float  # wall time since the search started
    in_flight: int = 0  # candidates asked ahead, not told yet (search.overlap)


def tell_fields(candidates: Sequence[Candidate]) -> dict[str, np.ndarray]:
    """The arrays ``EvaluatedOnlyScheduler.tell`` takes for these candidates."""

    def objects(values: list) -> np.ndarray:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array

    return {
        "objective": np.array([c.objective or 0.0 for c in candidates], dtype=np.float64),
        "measures": np.array(
            [[c.measures.get(m, 0.0) for m in NETWORK_MEASURES] for c in candidates],
            dtype=np.float64,
        ).reshape(-1, len(NETWORK_MEASURES)),
        "evaluated": np.array([c.status == "evaluated" for c in candidates], dtype=bool),
        "code": objects([c.code for c in candidates]),
        "arch": objects([c.arch or "" for c in candidates]),
        "operator": objects([c.operator for c in candidates]),
        "parent_ids": objects([list(c.parent_ids) for c in candidates]),
        "prompt_id": np.array([-1 if c.prompt_id is None else c.prompt_id for c in candidates]),
        "temperature": np.array(
            [np.nan if c.temperature is None else c.temperature for c in candidates]
        ),
    }


def run_search(
    *,
    phases: Sequence[tuple[str, Scheduler, Callable[[], bool]]],
    store: CandidateStore,
    evaluator,
    prompt_archive,
    budget: int,
    max_candidates: int,
    on_iteration: Callable[[IterationStats], None] = lambda stats: None,
    start_iteration: int = 0,
    elapsed_seconds: float = 0.0,
    fail_fast: FailFast | None = None,
    overlap: bool = False,
    drain_every: int = 1,
    stop_objective: float | None = None,
) -> int:
    """Runs the phases in order until the budget or the candidate cap is reached.

    Args:
        phases: ``(name, scheduler, done)``; a phase runs while ``done()`` is False.
        store: Candidate store shared with the emitters.
        evaluator: Completes candidates (see :class:`llmatic.evaluation.Evaluator`).
        prompt_archive: For the statistics line (None for searches without prompts).
        budget: Charged evaluations at most.
        max_candidates: Candidates at most (a search whose LLM writes only broken code
            must still stop).
        on_iteration: Called after every iteration (logging, snapshots).
        start_iteration: Iterations already done (when resuming).
        elapsed_seconds: Search time already spent (when resuming), for the statistics.
        fail_fast: Checks every finished iteration (after ``on_iteration`` has recorded
            it) and stops a search whose setup is broken.
        overlap: Ask the next batch while this one is scored (not in the ``init`` phase,
            whose children need the seed told first).
        drain_every: With ``overlap``, iterations whose number is a multiple of it ask
            nothing ahead (their stats have ``in_flight`` 0: a checkpoint may be taken).
        stop_objective: Stop after the iteration whose evaluation first reaches this
            objective (validation accuracy, %), e.g. the table's best for a
            time-to-target study; None: run to the budget.

    Returns:
        The number of iterations run in total.

    Raises:
        SearchAborted: ``fail_fast`` stopped the search.
    """
    start = time.perf_counter() - elapsed_seconds
    iteration = start_iteration
    best = max(
        (c.objective for c in store if c.status == "evaluated" and c.objective is not None),
        default=-math.inf,
    )  # resumed runs bring theirs
    reached = stop_objective is not None and best >= stop_objective
    for phase, scheduler, done in phases:
        ahead = overlap and phase != "init"
        next_ids = None  # a batch asked while the last one was scored

        def more(done: Callable[[], bool] = done) -> bool:
            return not done() and evaluator.evaluations < budget and len(store) < max_candidates

        while next_ids is not None or (not reached and more()):
            iteration += 1
            ids = scheduler.ask() if next_ids is None else next_ids
            if len(ids) == 0:
                if phase == "init" or scheduler.archive.empty:
                    raise RuntimeError(
                        f"the {phase} phase proposed no candidates: the network archive is "
                        "empty (did the seed network fail? see candidates.jsonl)"
                    )
                # No operator can write a network that is not known already (crossover
                # alone with one elite, or once every pair's children are evaluated):
                # stop with what was found rather than fail or spin.
                log.warning(
                    "the %s phase has nothing new to propose (crossover alone needs two "
                    "elites whose children are not all evaluated): the search stops at %d "
                    "of %d evaluations",
                    phase,
                    evaluator.evaluations,
                    budget,
                )
                iteration -= 1
                break
            candidates = [store[i] for i in ids]
            for candidate in candidates:
                candidate.iteration = iteration
            batch = evaluator.submit(candidates, budget=budget, background=ahead)
            next_ids, behind = None, None
            if ahead and iteration % drain_every != 0 and not reached and more():
                next_ids, behind = ask_ahead(scheduler)  # the LLM works while batch trains
            evaluator.collect(batch)
            if behind is None:
                scheduler.tell(**tell_fields(candidates))
            else:
                tell_behind(scheduler, behind, **tell_fields(candidates))
            store.flush()
            scored = [c.objective for c in candidates if c.status == "evaluated"]
            best = max([best, *(x for x in scored if x is not None)])
            if not reached and stop_objective is not None and best >= stop_objective:
                reached = True
                log.info(
                    "search.stop_objective=%s reached (best %.4f) after %d evaluations: stopping",
                    stop_objective,
                    best,
                    evaluator.evaluations,
                )
            stats = _stats(iteration, phase, store, scheduler, prompt_archive, evaluator, start)
            stats.in_flight = 0 if next_ids is None else len(next_ids)
            log.info(status_line(stats, budget))
            on_iteration(stats)
            if fail_fast is not None:
                fail_fast.check(store, candidates)
    return iteration


def status_line(stats: IterationStats, budget: int) -> str:
    """The progress line printed after every iteration."""
    valid = "n/a" if math.isnan(stats.valid_code_rate) else f"{stats.valid_code_rate:.0%}"
    return (
        f"iter {stats.iteration} [{stats.phase}] | evals {stats.evaluations}/{budget} | "
        f"candidates {stats.candidates} | valid {valid} | dup {stats.duplicates} | "
        f"best {stats.best_objective:.2f} | QD {stats.qd_score:.1f} | "
        f"coverage {stats.coverage:.1%}"
    )


def _stats(iteration, phase, store, scheduler, prompt_archive, evaluator, start) -> IterationStats:
    llm_made = [c for c in store if c.prompt_id is not None and c.status != "pending"]
    valid = [c for c in llm_made if c.arch is not None]
    archive_stats = scheduler.archive.stats
    return IterationStats(
        iteration=iteration,
        phase=phase,
        evaluations=evaluator.evaluations,
        candidates=len(store),
        valid_code_rate=len(valid) / len(llm_made) if llm_made else float("nan"),
        duplicates=sum(c.status == "duplicate" for c in store),
        best_objective=float(archive_stats.obj_max) if archive_stats.num_elites else float("nan"),
        qd_score=float(archive_stats.qd_score),
        coverage=float(archive_stats.coverage),
        prompt_cells=len(prompt_archive.archive) if prompt_archive is not None else 0,
        seconds=time.perf_counter() - start,
    )
