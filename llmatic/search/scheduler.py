"""pyribs schedulers that let only evaluated candidates into the network archive.

:class:`EvaluatedOnlyScheduler` asks every emitter every iteration (pyribs' ``Scheduler``);
:class:`EvaluatedOnlyBanditScheduler` asks the ``num_active`` emitters of a pool that UCB1
picks from their past success (pyribs' ``BanditScheduler``), so the budget flows to the
operator that improves the archive, or (``reward="best"``) to the one that finds new best
networks.
"""

from __future__ import annotations

import copy

import numpy as np
from ribs.archives import ArchiveBase
from ribs.schedulers import BanditScheduler, Scheduler


def add_evaluated(
    archive: ArchiveBase, data: dict[str, np.ndarray | None]
) -> dict[str, np.ndarray]:
    """Adds the rows with ``data["evaluated"]`` True to ``archive``; ``add_info`` for all rows.

    Rows that were not evaluated (broken code, duplicates, skipped by the budget) get
    ``status`` 0 and ``value`` 0.
    """
    evaluated = np.asarray(data["evaluated"], dtype=bool)
    archive_fields = set(archive.field_list)
    rows = {name: arr[evaluated] for name, arr in data.items() if name in archive_fields}
    add_info = {
        "status": np.zeros(len(evaluated), dtype=np.int32),
        "value": np.zeros(len(evaluated), dtype=np.float64),
    }
    if evaluated.any():
        added = archive.add(**rows)
        for name in add_info:
            add_info[name][evaluated] = added[name]
    return add_info


#: What counts as a success of a bandit pool's emitter (:class:`EvaluatedOnlyBanditScheduler`).
BANDIT_REWARDS = ("archive", "best")


def new_best(objective: np.ndarray, evaluated: np.ndarray, best_before: float) -> np.ndarray:
    """Which rows beat every network evaluated before them (``best_before``, then the
    rows before them in the batch): a (batch,) bool array; rows not evaluated never do."""
    running = np.maximum.accumulate(np.where(evaluated, objective, -np.inf))
    before = np.concatenate([[best_before], np.maximum(running[:-1], best_before)])
    return evaluated & (objective > before)


class EvaluatedOnlyScheduler(Scheduler):
    """``ribs.schedulers.Scheduler`` whose ``tell`` takes a boolean ``evaluated`` field.

    Candidates with ``evaluated=False`` (broken code, duplicates, skipped by the budget)
    have no objective; they never enter the archive, and their emitters see them with
    ``add_info["status"] == 0``. Everything else (asking emitters in order, slicing the
    batch back to each emitter in ``tell``) is pyribs' own.
    """

    def _add_to_archives(self, data: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        return add_evaluated(self.archive, data)


class EvaluatedOnlyBanditScheduler(BanditScheduler):
    """``ribs.schedulers.BanditScheduler`` with :class:`EvaluatedOnlyScheduler`'s ``tell``.

    Each ``ask`` activates the ``num_active`` emitters of the pool with the highest UCB1
    score (``reselect="all"``: chosen again every iteration). An emitter's success rate is
    the share of its candidates that entered or improved the network archive
    (``reward="archive"``, pyribs' own), or that beat every network evaluated before them
    (``reward="best"``); either way duplicates and broken code count against it. ``ask``
    and the choice are pyribs'; ``tell`` repeats pyribs' crediting loop because pyribs'
    version adds every row to the archive.

    Why ``"best"``: a parent pool of the fittest networks (``classic_parents="evaluated"``)
    finds better networks in cells that are already filled, and the archive's reward
    rates that no higher than filling a new cell with a poor network.

    Args:
        *args: pyribs' ``BanditScheduler`` (archive, emitter pool).
        reward: ``"archive"`` or ``"best"``.
        **kwargs: pyribs' ``BanditScheduler`` (``num_active``, ``reselect``, ``zeta``).
    """

    def __init__(self, *args, reward: str = "archive", **kwargs) -> None:
        if reward not in BANDIT_REWARDS:
            raise ValueError(f"reward must be one of {BANDIT_REWARDS}, got {reward!r}")
        super().__init__(*args, **kwargs)
        self.reward = reward

    @property
    def emitters(self) -> list:
        """The whole pool (what checkpoints save and the run looks through)."""
        return list(self.emitter_pool)

    def ask(self) -> np.ndarray:
        """pyribs' ``ask``; an active emitter with nothing to propose (crossover whose
        elites' children are all evaluated) counts as one unsuccessful selection, and the
        next emitters by UCB1 that were not tried in this ``ask`` are asked instead, until
        one proposes something or every emitter was tried (the search then ends)."""
        # pyribs' UCB1 takes log(total successes): log(0) before the pool's first
        # success is harmless (untried emitters go first), not worth a warning.
        with np.errstate(divide="ignore", invalid="ignore"):
            solutions = super().ask()
        tried = np.zeros(len(self._emitter_pool), dtype=bool)
        while not len(solutions):
            self._selection[self._active_arr] += 1
            tried |= self._active_arr
            if tried.all():
                break
            ranked = [i for i in np.argsort(self._ucb1(), kind="stable")[::-1] if not tried[i]]
            self._active_arr[:] = False
            self._active_arr[ranked[: self._num_active]] = True
            solutions = self._ask_active()
        return solutions

    def _ucb1(self) -> np.ndarray:
        """pyribs' UCB1 score per emitter of the pool (inf: never selected)."""
        score = np.full(len(self._emitter_pool), np.inf)
        selected = self._selection != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            score[selected] = self._success[selected] / self._selection[
                selected
            ] + self._zeta * np.sqrt(np.log(self._success.sum()) / self._selection[selected])
        return score

    def _ask_active(self) -> np.ndarray:
        """The active emitters' ``ask``, recorded for ``tell`` as pyribs' ``ask`` does."""
        batches = []
        for i in np.where(self._active_arr)[0]:
            batches.append(self._emitter_pool[i].ask())
            self._num_emitted[i] = len(batches[-1])
        self._cur_solutions = np.concatenate(batches, axis=0)
        return self._cur_solutions

    def selection_report(self) -> list[dict]:
        """Per emitter of the pool: candidates asked (``selected``) and their successes
        (by :attr:`reward`)."""
        return [
            {
                "emitter": type(emitter).__name__,
                "operator": getattr(emitter, "operator", None),
                "selected": int(selected),
                "successes": int(success),
                "success_rate": float(success / selected) if selected else None,
            }
            for emitter, selected, success in zip(
                self.emitter_pool, self._selection, self._success, strict=True
            )
        ]

    def tell(self, objective, measures, **fields) -> None:
        if self._last_called != "ask":
            raise RuntimeError("tell() was called without calling ask().")
        self._last_called = "tell"
        data = self._validate_tell_data({"objective": objective, "measures": measures, **fields})
        # The archive's best is the best evaluated so far: it keeps each cell's best.
        best_before = -np.inf if self.archive.empty else self.archive.stats.obj_max
        add_info = add_evaluated(self.archive, data)
        if self.reward == "best":
            success = new_best(data["objective"], np.asarray(data["evaluated"]), best_before)
        else:
            success = add_info["status"] > 0
        pos = 0
        for i in np.where(self._active_arr)[0]:
            end = pos + self._num_emitted[i]
            self._selection[i] += end - pos
            self._success[i] += np.count_nonzero(success[pos:end])
            self._emitter_pool[i].tell(
                **{name: None if arr is None else arr[pos:end] for name, arr in data.items()},
                add_info={name: arr[pos:end] for name, arr in add_info.items()},
            )
            pos = end


# ------------------------------------------------------------------------ asking ahead
#: What pyribs' schedulers keep between an ``ask`` and its ``tell``: which solutions came
#: from which emitter (and, for the bandit, which emitters were active).
_BATCH_FIELDS = ("_cur_solutions", "_num_emitted", "_active_arr")


def _batch_state(scheduler: Scheduler) -> dict:
    return {
        name: copy.copy(getattr(scheduler, name))
        for name in _BATCH_FIELDS
        if hasattr(scheduler, name)
    }


def ask_ahead(scheduler: Scheduler) -> tuple[np.ndarray, dict]:
    """Asks the next batch before the last one is told (``search.overlap``).

    pyribs allows one ``ask`` per ``tell``; this keeps the told-later batch's bookkeeping
    aside so that :func:`tell_behind` can tell it afterwards. The emitters ask on the
    archive as it was (without the batch still being scored).

    Returns:
        The new batch, and the state :func:`tell_behind` needs for the batch before it.
    """
    behind = _batch_state(scheduler)
    scheduler._last_called = "tell"
    try:
        return scheduler.ask(), behind
    except BaseException:
        for name, value in behind.items():
            setattr(scheduler, name, value)
        scheduler._last_called = "ask"
        raise


def tell_behind(scheduler: Scheduler, behind: dict, **fields) -> None:
    """Tells the batch asked before :func:`ask_ahead`'s (with its bookkeeping ``behind``)."""
    ahead = _batch_state(scheduler)
    for name, value in behind.items():
        setattr(scheduler, name, value)
    scheduler._last_called = "ask"
    scheduler.tell(**fields)
    for name, value in ahead.items():
        setattr(scheduler, name, value)
    scheduler._last_called = "ask"  # the batch asked ahead is now the one to tell
