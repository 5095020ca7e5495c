"""Per-prompt evidence from candidates.jsonl (llmatic.analysis.prompt_stats)."""

from __future__ import annotations

import json
import math

from llmatic.analysis.prompt_stats import prompt_markdown, prompt_stats


def _write(run_dir, candidates):
    run_dir.mkdir()
    lines = [json.dumps(c) for c in candidates]
    (run_dir / "candidates.jsonl").write_text("\n".join(lines) + "\n")


def C(i, status, objective, prompt=None, parent=None, operator="mutation", arch="a"):
    return {
        "id": i,
        "operator": operator,
        "prompt": prompt,
        "parent_ids": [] if parent is None else [parent],
        "status": status,
        "objective": objective,
        "arch": arch,
    }


def test_rates_per_prompt_count_every_child_and_compare_with_the_parent(tmp_path):
    _write(
        tmp_path / "run",
        [
            C(0, "evaluated", 80.0, operator="seed"),
            C(1, "evaluated", 85.0, "grow", 0),  # +5
            C(2, "evaluated", 70.0, "grow", 0),  # -10
            C(3, "duplicate", 85.0, "grow", 0),
            C(4, "failed", None, "grow", 0, arch=None),
            C(5, "evaluated", 90.0, "shrink", 1),  # +5 on parent 1 (85)
        ],
    )
    rows = {r.prompt: r for r in prompt_stats([("cifar10", tmp_path / "run")])}
    assert set(rows) == {"grow", "shrink"}  # the seed has no prompt
    grow = rows["grow"]
    assert grow.children == 4 and grow.evaluated == 2
    assert grow.valid == 0.75 and grow.duplicates == 0.25
    assert grow.improved == 0.5 and math.isclose(grow.mean_change, -2.5)
    assert rows["shrink"].improved == 1.0 and math.isclose(rows["shrink"].mean_change, 5.0)
    table = prompt_markdown(rows.values())
    assert "| cifar10 | mutation | grow | 4 | 75% | 25% | 2 | 50% | -2.50 |" in table


def test_baseline_runs_give_no_table(tmp_path):
    _write(tmp_path / "rea", [C(0, "evaluated", 80.0, operator="rea")])
    assert prompt_markdown(prompt_stats([("cifar10", tmp_path / "rea")])) == ""
