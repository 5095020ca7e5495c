"""How well each prompt works: evidence for tuning the prompt list of a benchmark.

From the ``candidates.jsonl`` of LLM runs, per (dataset, operator, prompt): how many
children the prompt produced, the share with valid code, the share that were duplicates,
the share of new architectures whose validation accuracy beat their (first) parent's, and
the mean change in validation accuracy (points) over those. Random mutation from the same
parents is the yardstick for these numbers (``benchmarks/edit_quality.py``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PromptStats:
    """One row of the prompt table; shares are fractions in [0, 1]."""

    dataset: str
    operator: str
    prompt: str
    children: int
    valid: float
    duplicates: float
    evaluated: int
    improved: float
    mean_change: float


def prompt_stats(runs: Iterable[tuple[str, Path]]) -> list[PromptStats]:
    """Statistics per (dataset, operator, prompt) over ``(dataset, run_dir)`` pairs.

    Runs without LLM candidates (baselines) contribute nothing.
    """
    groups: dict[tuple[str, str, str], list[tuple[dict, dict | None]]] = defaultdict(list)
    for dataset, run_dir in runs:
        candidates = [
            json.loads(line)
            for line in (Path(run_dir) / "candidates.jsonl").read_text().splitlines()
            if line.strip()
        ]
        by_id = {c["id"]: c for c in candidates}
        for c in candidates:
            if c.get("prompt") is None or c["operator"] not in ("mutation", "crossover"):
                continue
            parent = by_id.get(c["parent_ids"][0]) if c.get("parent_ids") else None
            groups[(dataset, c["operator"], c["prompt"])].append((c, parent))
    rows = []
    for (dataset, operator, prompt), items in sorted(groups.items()):
        n = len(items)
        new = [
            (c["objective"], p["objective"])
            for c, p in items
            if c["status"] == "evaluated" and p is not None and p.get("objective") is not None
        ]
        changes = [child - parent for child, parent in new]
        rows.append(
            PromptStats(
                dataset=dataset,
                operator=operator,
                prompt=prompt,
                children=n,
                valid=sum(c.get("arch") is not None for c, _ in items) / n,
                duplicates=sum(c["status"] == "duplicate" for c, _ in items) / n,
                evaluated=len(new),
                improved=sum(d > 0 for d in changes) / len(changes) if changes else float("nan"),
                mean_change=sum(changes) / len(changes) if changes else float("nan"),
            )
        )
    return rows


def prompt_markdown(rows: Iterable[PromptStats]) -> str:
    """The prompt table as Markdown ('' when there are no LLM candidates)."""
    rows = list(rows)
    if not rows:
        return ""
    lines = [
        "| dataset | operator | prompt | children | valid | duplicates | new archs | "
        "improved on parent | mean change (points) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.dataset} | {r.operator} | {r.prompt} | {r.children} | {r.valid:.0%} | "
            f"{r.duplicates:.0%} | {r.evaluated} | {r.improved:.0%} | {r.mean_change:+.2f} |"
        )
    return "\n".join(lines) + "\n"
