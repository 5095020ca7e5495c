"""The benchmark scripts' report code (the benchmarks themselves run with `make bench`)."""

from __future__ import annotations

import json

import pytest

from benchmarks import nb201_speed


def _summary(evaluations: int, llm_seconds: float, dups: int) -> dict:
    return {
        "budget": 2000,
        "evaluations": evaluations,
        "candidates": evaluations + dups,
        "status_counts": {"evaluated": evaluations, "duplicate": dups},
        "valid_code_rate": 1.0,
        "llm_candidates": evaluations + dups,
        "llm_tokens": 100 * (evaluations + dups),
        "seconds": {
            "total": 600.0,
            "llm": llm_seconds,
            "inspect_code": 30.0,
            "benchmark": 0.0,
            "other": 570.0 - llm_seconds,
        },
        "best": {"test_accuracy": 94.37},
    }


def test_nb201_speed_reports_one_row_per_finished_run_and_their_mean(tmp_path, monkeypatch):
    monkeypatch.setattr(nb201_speed, "RESULTS", tmp_path)
    for name, evaluations, llm, dups in (("a", 2000, 540.0, 100), ("b", 1000, 480.0, 300)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(_summary(evaluations, llm, dups)))
    assert nb201_speed.main(["--run-dir", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    result = json.loads((tmp_path / "nb201_speed.json").read_text())
    a, b = (f"{tmp_path.name}/{name}" for name in "ab")  # a run is named by dataset/seed
    assert result["runs"][a]["evaluations_per_minute"] == pytest.approx(200.0)
    assert result["runs"][b]["share"]["generation"] == pytest.approx(0.8)
    assert result["mean"]["evaluations_per_minute"] == pytest.approx(150.0)
    assert result["mean"]["share"]["generation"] == pytest.approx(0.85)
    table = (tmp_path / "nb201_speed.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[-3:]] == [f"| {a}", f"| {b}", "| mean"]
