"""``benchmarks/edit_quality.py``'s statistics on made-up samples: best of N per parent,
instruction following of prompts that name an edge."""

from __future__ import annotations

import json

import pytest

from benchmarks.edit_quality import best_of, best_of_rows, main, named_edge, summarise


def sample(parent: str, parent_val: float, child_val: float | None) -> dict:
    child = None if child_val is None else f"{parent}-child"
    return {"parent": parent, "parent_val": parent_val, "child": child, "child_val": child_val}


SAMPLES = {
    "random-1": [
        sample("a", 50.0, 49.0),
        sample("a", 50.0, 53.0),
        sample("a", 50.0, 60.0),  # the third sample: beyond N = 2
        sample("b", 70.0, 69.0),
        sample("b", 70.0, 68.0),
        sample("b", 70.0, 90.0),
    ],
    "llm@0.5": [
        sample("a", 50.0, None),  # invalid: counts as one of the N, scores nothing
        sample("a", 50.0, 51.0),
        sample("b", 70.0, None),
        sample("b", 70.0, None),
    ],
    "llm@0.9": [sample("a", 50.0, 55.0)],  # fewer than N samples of a parent: left out
}


def test_best_of_n_takes_each_parents_first_n_samples():
    random = best_of(SAMPLES["random-1"], 2)
    assert random["improved"] == 1 and random["parents"] == 2
    assert random["mean_gain"] == pytest.approx((3.0 - 1.0) / 2)
    llm = best_of(SAMPLES["llm@0.5"], 2)
    assert llm["scored"] == 1 and llm["improved"] == 1 and llm["mean_gain"] == 1.0
    rows = best_of_rows(SAMPLES, 2)
    assert [(r["operator"], r["temperature"]) for r in rows] == [("random-1", None), ("llm", 0.5)]


def test_render_adds_the_best_of_section_to_a_saved_result(tmp_path):
    meta = {
        "parents": 2, "min_val": 0.0, "max_val": 100.0, "seed": 0, "samples": 2,
        "unconstrained_samples": 0, "random_samples": 3, "seconds": 1.0, "prompts": ["p"],
    }  # fmt: skip
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps({"meta": meta, "rows": [], "tests_vs_random_1": [], "samples": SAMPLES})
    )
    result = main(["--render", str(path)])
    assert [r["improved"] for r in result["best_of"]] == [1, 1]
    md = path.with_suffix(".md").read_text()
    assert "Best of N = 2 per parent" in md and "| random-1 | - | 1/2 (50%) | +1.00 |" in md
    assert json.loads(path.read_text())["best_of"] == result["best_of"]


def test_prompts_that_name_an_edge_are_checked_for_changing_it():
    assert named_edge("Give self.edge_1_3 of the above cell a better operation.") == (1, 3)
    assert named_edge("Improve the above cell.") is None
    parent = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    on_edge = "|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|"  # edge (1, 3)
    elsewhere = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # edge (0, 1)
    rows = [
        {"parent": parent, "parent_val": 1.0, "child": child, "child_val": 2.0,
         "error": None, "named_edge": [1, 3]}  # as the JSON gives it back
        for child in (on_edge, elsewhere, on_edge)
    ]  # fmt: skip
    summary = summarise(rows)
    assert summary["named_edge_changed"] == 2 and summary["named_edge_children"] == 3
