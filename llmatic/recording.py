"""What a run writes into its directory (Hydra's output dir).

- ``metrics.csv``: one row per iteration (:class:`~llmatic.search.loop.IterationStats`);
- ``candidates.jsonl``: every candidate (written by :class:`~llmatic.candidate.CandidateStore`);
- ``archives/network.pkl``, ``archives/prompts.pkl``: the pyribs GridArchives, pickled
  (``pickle.load`` gives back a ``ribs.archives.GridArchive``), and their ``.csv`` tables;
- ``summary.json``: the final report (see :func:`summarize`);
- ``checkpoint.pkl``: the search state, to resume the run (see :mod:`llmatic.checkpoint`);
- ``plots/``: heatmaps of both archives and the progress plot (``python -m experiments.plot``).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path

from ribs.archives import GridArchive

from llmatic.candidate import CandidateStore
from llmatic.search.loop import IterationStats

NETWORK_ARCHIVE = "archives/network.pkl"
PROMPT_ARCHIVE = "archives/prompts.pkl"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunRecorder:
    """Writes the files of one run into ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.csv"
        #: The rows of ``metrics.csv`` (a checkpoint keeps them).
        self.metrics: list[IterationStats] = []

    def log_iteration(self, stats: IterationStats) -> None:
        self.metrics.append(stats)
        new = not self.metrics_path.exists()
        with self.metrics_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(IterationStats)])
            if new:
                writer.writeheader()
            writer.writerow(asdict(stats))

    def restore_metrics(self, metrics: list[IterationStats]) -> None:
        """Rewrites ``metrics.csv`` to hold exactly ``metrics`` (when resuming)."""
        self.metrics = list(metrics)
        tmp = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(IterationStats)])
            writer.writeheader()
            writer.writerows(asdict(stats) for stats in self.metrics)
        os.replace(tmp, self.metrics_path)

    def save_archives(self, network: GridArchive, prompts: GridArchive | None) -> None:
        """Snapshots both archives (``prompts`` is None for searches without prompts)."""
        for archive, name in ((network, NETWORK_ARCHIVE), (prompts, PROMPT_ARCHIVE)):
            if archive is None:
                continue
            path = self.run_dir / name
            atomic_write_bytes(path, pickle.dumps(archive))
            archive.data(return_type="pandas").to_csv(path.with_suffix(".csv"), index=False)

    def write_summary(self, summary: dict) -> None:
        atomic_write_bytes(self.run_dir / "summary.json", json.dumps(summary, indent=2).encode())


def load_archive(path: str | Path) -> GridArchive:
    """Loads an archive snapshot written by :meth:`RunRecorder.save_archives`."""
    with Path(path).open("rb") as f:
        return pickle.load(f)  # our own file, written by this run


def summarize(
    store: CandidateStore, *, evaluations: int, budget: int, network: GridArchive
) -> dict:
    """The run's report: the best architecture *by validation* and its *test* accuracy."""
    evaluated = [c for c in store if c.status == "evaluated"]
    best = max(evaluated, key=lambda c: (c.objective, -c.id), default=None)
    llm_made = [c for c in store if c.prompt_id is not None and c.status != "pending"]
    stats = network.stats
    return {
        "evaluations": evaluations,
        "budget": budget,
        "candidates": len(store),
        "status_counts": dict(Counter(c.status for c in store)),
        "failure_kinds": dict(Counter(c.error_kind for c in store if c.error_kind)),
        "llm_candidates": len(llm_made),
        "valid_code_rate": (
            sum(c.arch is not None for c in llm_made) / len(llm_made) if llm_made else None
        ),
        "best": None
        if best is None
        else {
            "candidate_id": best.id,
            "arch": best.arch,
            "val_accuracy": best.objective,
            "test_accuracy": best.test_objective,
            "operator": best.operator,
            "found_at_evaluation": sum(1 for c in store if c.charged and c.id <= best.id),
        },
        "network_archive": {
            "cells": int(network.cells),
            "filled_cells": int(stats.num_elites),
            "coverage": float(stats.coverage),
            "qd_score": float(stats.qd_score),
        },
    }
