"""What a run writes into its directory (Hydra's output dir).

- ``metrics.csv``: one row per iteration (:class:`~llmatic.search.loop.IterationStats`);
- ``candidates.jsonl``: every candidate (written by :class:`~llmatic.candidate.CandidateStore`);
- ``archives/network.pkl``, ``archives/prompts.pkl``: the pyribs GridArchives, pickled
  (``pickle.load`` gives back a ``ribs.archives.GridArchive``), and their ``.csv`` tables;
- ``summary.json``: the final report (see :func:`summarize`; its ``cost``:
  :func:`summarize_cost`);
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


def summarize_cost(
    store: CandidateStore,
    *,
    evaluations: int,
    price_per_million_input: float = 0.0,
    price_per_million_output: float = 0.0,
) -> dict:
    """What the LLM cost: tokens in and out, seconds and USD, in all and per unit.

    Worked out from the candidates (each carries its tokens and its share of the LLM's
    time), so a resumed run counts the calls made before it was stopped too. USD applies
    the configured prices per million tokens (0 for local models).

    Returns:
        ``prompt_tokens``, ``completion_tokens``, ``llm_seconds``, ``usd`` over the run,
        the prices used, and the same four numbers ``per_candidate`` (per candidate an LLM
        made: one with a ``prompt_id``; None when there is none) and ``per_evaluation``
        (per charged evaluation; None when there is none).
    """
    made = [c for c in store if c.prompt_id is not None]
    prompt_tokens = sum(c.prompt_tokens for c in store)
    completion_tokens = sum(c.generation_tokens for c in store)
    totals = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "llm_seconds": float(sum(c.llm_seconds for c in store)),
        "usd": (
            prompt_tokens * price_per_million_input + completion_tokens * price_per_million_output
        )
        / 1e6,
    }

    def per(count: int) -> dict | None:
        return {key: value / count for key, value in totals.items()} if count else None

    return {
        **totals,
        "price_per_million_input": price_per_million_input,
        "price_per_million_output": price_per_million_output,
        "per_candidate": per(len(made)),
        "per_evaluation": per(evaluations),
    }


def summarize_operators(store: CandidateStore) -> dict[str, dict]:
    """What each operator (``mutation``, ``crossover``, ``classic``, ``rea``, ...) gave.

    Per operator: its candidates; their statuses; its charged evaluations and their share
    of all charged evaluations; ``better_than_parent``, the share of its evaluated children
    (with parents) that beat their best parent's validation accuracy; and ``new_best``, how
    many of its evaluations set a new best validation accuracy of the run.
    """
    report: dict[str, dict] = {}
    charged_total = store.evaluations
    best = float("-inf")
    for candidate in store:  # creation order = evaluation order
        row = report.setdefault(
            candidate.operator,
            {
                "candidates": 0,
                "evaluations": 0,
                "failed": 0,
                "duplicates": 0,
                "_with_parent": 0,
                "_better": 0,
                "new_best": 0,
            },
        )
        row["candidates"] += 1
        row["failed"] += candidate.status == "failed"
        row["duplicates"] += candidate.status == "duplicate"
        if not candidate.charged or candidate.objective is None:
            continue
        row["evaluations"] += 1
        if candidate.objective > best:
            best = candidate.objective
            row["new_best"] += 1
        parents = [store[i].objective for i in candidate.parent_ids]
        parents = [p for p in parents if p is not None]
        if parents:
            row["_with_parent"] += 1
            row["_better"] += candidate.objective > max(parents)
    for row in report.values():
        with_parent, better = row.pop("_with_parent"), row.pop("_better")
        row["share_of_evaluations"] = row["evaluations"] / charged_total if charged_total else 0.0
        row["better_than_parent"] = better / with_parent if with_parent else None
    return report
