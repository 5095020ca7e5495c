"""A pyribs Scheduler that lets only evaluated candidates into the network archive."""

from __future__ import annotations

import numpy as np
from ribs.schedulers import Scheduler


class EvaluatedOnlyScheduler(Scheduler):
    """``ribs.schedulers.Scheduler`` whose ``tell`` takes a boolean ``evaluated`` field.

    Candidates with ``evaluated=False`` (broken code, duplicates, skipped by the budget)
    have no objective; they never enter the archive, and their emitters see them with
    ``add_info["status"] == 0``. Everything else (asking emitters in order, slicing the
    batch back to each emitter in ``tell``) is pyribs' own.
    """

    def _add_to_archives(self, data: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        evaluated = np.asarray(data["evaluated"], dtype=bool)
        archive_fields = set(self.archive.field_list)
        rows = {name: arr[evaluated] for name, arr in data.items() if name in archive_fields}
        add_info = {
            "status": np.zeros(len(evaluated), dtype=np.int32),
            "value": np.zeros(len(evaluated), dtype=np.float64),
        }
        if evaluated.any():
            added = self.archive.add(**rows)
            for name in add_info:
                add_info[name][evaluated] = added[name]
        return add_info
