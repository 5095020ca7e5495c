"""The comparison of finished runs: selection by validation, budgets, statistics, files."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from experiments.compare import main
from llmatic.analysis.comparison import (
    NoRunsError,
    accuracy_table,
    best_so_far_index,
    compare,
    load_run,
    load_runs,
    published_for,
    results_frame,
)

REPO = Path(__file__).resolve().parents[1]


def evaluated(val: float, test: float) -> dict:
    """A charged candidate with validation / test accuracy (%)."""
    return {"status": "evaluated", "charged": True, "objective": val, "test_objective": test}


def uncharged(status: str, val: float | None = None, test: float | None = None) -> dict:
    """A candidate that costs no evaluation (failed, duplicate, skipped)."""
    return {"status": status, "charged": False, "objective": val, "test_objective": test}


def write_run(
    root: Path,
    *,
    method: str,
    seed: int,
    candidates: list[dict],
    dataset: str | None = "cifar10",
    budget: int = 3,
) -> Path:
    """A run directory as ``experiments.run`` leaves it, with the given candidates."""
    run_dir = root / f"{dataset}_{method}_seed{seed}"
    (run_dir / "archives").mkdir(parents=True)
    bench = {"name": "nasbench201" if dataset else "digits"}
    if dataset:
        bench["dataset"] = dataset
    cfg = {"seed": seed, "search": {"name": method, "budget": budget}, "benchmark": bench}
    (run_dir / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    lines = []
    for i, c in enumerate(candidates):
        full = {
            "id": i,
            "operator": "mutation",
            "parent_ids": [],
            "prompt_id": None,
            "prompt": None,
            "temperature": None,
            "code": "",
            "iteration": 1,
            "error_kind": None,
            "error": None,
            "arch": f"arch{i}",
            "duplicate_of": None,
            "measures": {},
            "generation_tokens": 0,
            "eval_seconds": 0.0,
            **c,
        }
        lines.append(json.dumps(full))
    (run_dir / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    charged = sum(c["charged"] for c in candidates)
    (run_dir / "metrics.csv").write_text(
        "iteration,phase,evaluations,candidates,valid_code_rate,duplicates,best_objective,"
        f"qd_score,coverage,prompt_cells,seconds\n1,search,{charged},{len(candidates)},1,0,0,0,0,0,1\n"
    )
    (run_dir / "summary.json").write_text(json.dumps({"evaluations": charged, "budget": budget}))
    (run_dir / "archives" / "network.pkl").write_bytes(pickle.dumps(small_archive(seed)))
    return run_dir


def small_archive(seed: int):
    from ribs.archives import GridArchive

    archive = GridArchive(
        solution_dim=(), dims=[4, 4], ranges=[(0, 1), (0, 1)], solution_dtype=object
    )
    rng = np.random.default_rng(seed)
    solution = np.empty(3, dtype=object)
    solution[:] = ["a", "b", "c"]
    archive.add(solution, rng.uniform(50, 90, 3), rng.uniform(0, 1, (3, 2)))
    return archive


# Known per-seed results at budgets 2 and 3 (tests %, selected by validation).
LLMATIC_TESTS = {0: [80.0, 91.0], 1: [82.0, 93.0], 2: [84.0, 95.0]}
RANDOM_TESTS = {0: [70.0, 71.0], 1: [72.0, 73.0], 2: [74.0, 75.0]}


def seeded_run(root: Path, method: str, seed: int, tests: list[float], **kw) -> Path:
    """Three evaluations whose best-by-validation at budget 2 / 3 has test ``tests``.

    A failed and a duplicate candidate with a higher (bogus) accuracy sit in between: they
    must count neither as evaluations nor as candidates for selection.
    """
    return write_run(
        root,
        method=method,
        seed=seed,
        candidates=[
            evaluated(60.0, 10.0),
            evaluated(61.0, tests[0]),
            uncharged("failed"),
            uncharged("duplicate", 99.0, 99.0),
            evaluated(62.0, tests[1]),
            uncharged("skipped"),
        ],
        **kw,
    )


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multirun")
    for seed, tests in LLMATIC_TESTS.items():
        seeded_run(root, "llmatic", seed, tests)
    for seed, tests in RANDOM_TESTS.items():
        seeded_run(root, "random", seed, tests)
    # A short run: 2 of its 3 evaluations, so no value at budget 3.
    write_run(root, method="rea", seed=0, candidates=[evaluated(50.0, 51.0), evaluated(52.0, 53.0)])
    write_run(
        root,
        method="random",
        seed=0,
        dataset=None,
        budget=2,
        candidates=[evaluated(10.0, 20.0), evaluated(30.0, 40.0)],
    )
    return root


@pytest.fixture(scope="module")
def result(multirun: Path):
    return compare([multirun], budgets=[2, 3], anchors=True)


def test_selects_by_validation_not_test_and_earliest_tie(tmp_path):
    run = load_run(
        write_run(
            tmp_path,
            method="llmatic",
            seed=0,
            candidates=[
                evaluated(90.0, 85.0),
                evaluated(80.0, 95.0),  # best test, worse validation: never reported
                evaluated(90.0, 99.0),  # ties the first on validation: the earlier one stays
            ],
        )
    )
    selection = run.select(3)
    assert (selection.val, selection.test, selection.evaluation) == (90.0, 85.0, 1)


def test_budget_counts_only_charged_evaluations(tmp_path):
    run = load_run(
        write_run(
            tmp_path,
            method="llmatic",
            seed=0,
            candidates=[
                evaluated(70.0, 71.0),
                uncharged("failed"),
                uncharged("duplicate", 99.0, 99.0),
                evaluated(75.0, 76.0),
                uncharged("skipped"),
                evaluated(90.0, 91.0),  # found at evaluation 3: not usable at budget 2
            ],
        )
    )
    assert run.evaluations == 3
    assert run.select(2).test == 76.0 and run.select(2).evaluation == 2
    assert run.select(3).test == 91.0
    assert run.select(4) is None  # fewer than 4 evaluations: no value


def test_a_short_run_that_found_the_best_validation_is_settled_only_on_request(tmp_path):
    # Two runs of 2 evaluations; the table's best validation accuracy is 90.
    found, not_found = (
        load_run(
            write_run(
                tmp_path,
                method="llmatic",
                seed=seed,
                budget=2,
                candidates=[evaluated(70.0, 71.0), evaluated(val, test)],
            )
        )
        for seed, (val, test) in enumerate([(90.0, 88.0), (89.0, 93.0)])
    )
    assert found.select(5) is None  # nothing is carried without a target
    carried = found.select(5, target=90.0)
    assert (carried.test, carried.evaluation, carried.settled) == (88.0, 2, True)
    assert not found.select(2, target=90.0).settled  # inside the run: measured
    assert not_found.select(5, target=90.0) is None  # 89 < 90: a later one could win

    frame = results_frame([found, not_found], [2, 5], {"cifar10": 90.0})
    at_5 = frame[frame["budget"] == 5].set_index("seed")
    assert at_5.loc[0, "test"] == 88.0 and bool(at_5.loc[0, "settled"])
    assert math.isnan(at_5.loc[1, "test"]) and not bool(at_5.loc[1, "settled"])
    table = accuracy_table(frame, "test", ["llmatic"], [2, 5])
    assert "| llmatic | 90.50 ± 3.54 (n=2) | 88.00 (n=1; 1 run short; 1 settled) |" in table
    assert results_frame([found], [5])["test"].isna().all()  # off by default


def test_best_so_far_index_ignores_nan_and_keeps_earliest_tie():
    val = np.array([np.nan, 3.0, 2.0, 3.0, 5.0])
    assert best_so_far_index(val).tolist() == [-1, 1, 1, 1, 4]


def test_long_csv_has_one_row_per_run_and_budget(result, multirun):
    frame = pd.read_csv(multirun / "comparison" / "comparison.csv")
    assert len(frame) == 8 * 2
    llmatic = frame[(frame["method"] == "llmatic") & (frame["dataset"] == "cifar10")]
    got = llmatic.pivot(index="seed", columns="budget", values="test")
    assert got[2].tolist() == [t[0] for t in LLMATIC_TESTS.values()]
    assert got[3].tolist() == [t[1] for t in LLMATIC_TESTS.values()]
    rea = frame[frame["method"] == "rea"].set_index("budget")
    assert rea.loc[2, "test"] == 53.0 and math.isnan(rea.loc[3, "test"])


def test_markdown_has_mean_std_and_short_runs(result):
    tests = np.array([t[1] for t in LLMATIC_TESTS.values()])
    cell = f"{tests.mean():.2f} ± {tests.std(ddof=1):.2f} (n=3)"
    assert cell == "93.00 ± 2.00 (n=3)"
    assert f"| llmatic | 82.00 ± 2.00 (n=3) | {cell} |" in result.markdown
    assert "| rea | 53.00 (n=1) | n/a (1 run short) |" in result.markdown
    assert "| llmatic | 61.00 ± 0.00 (n=3) | 62.00 ± 0.00 (n=3) |" in result.markdown  # val
    assert "## digits (digits)" in result.markdown  # missing benchmark.dataset


def test_mann_whitney_matches_scipy(result):
    x = [t[1] for t in LLMATIC_TESTS.values()]
    y = [t[1] for t in RANDOM_TESTS.values()]
    p = mannwhitneyu(x, y, alternative="two-sided").pvalue
    row = f"| llmatic | random | 3 | 3 vs 3 | 93.00 | 73.00 | {p:.3g} | llmatic |"
    assert row in result.markdown
    # rea has one seed: no test.
    assert "| llmatic | rea | 2 | 3 vs 1 | 82.00 | 53.00 | n/a |" in result.markdown


def test_anchors_are_labelled_published(result):
    assert "Published numbers (test %, from the literature, not these runs)" in result.markdown
    assert "| LLMatic paper (2,000 evaluations) | 94.26 |" in result.markdown
    assert published_for("nasbench201", "imagenet16")[0] == ("optimum of the search space", 47.31)
    assert published_for("digits", "digits") == []


def test_files_written(result, multirun):
    out = multirun / "comparison"
    names = {p.name for p in result.files}
    assert names == {
        "comparison.md",
        "comparison.csv",
        "best_so_far_cifar10.png",
        "archives_cifar10.png",
        "best_so_far_digits.png",
        "archives_digits.png",
    }
    for name in names:
        assert (out / name).stat().st_size > 0
    assert (out / "comparison.md").read_text() == result.markdown
    assert (out / "best_so_far_cifar10.png").read_bytes()[:4] == b"\x89PNG"


def test_corrupt_run_is_skipped_with_a_warning(tmp_path):
    good = seeded_run(tmp_path, "llmatic", 0, [1.0, 2.0])
    bad = seeded_run(tmp_path, "llmatic", 1, [1.0, 2.0])
    with (bad / "candidates.jsonl").open("a") as f:
        f.write('{"charged": tru\n')
    runs, warnings = load_runs([tmp_path])
    assert [r.run_dir for r in runs] == [good]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "line 7" in warnings[0]


def test_no_runs_raises(tmp_path):
    with pytest.raises(NoRunsError, match="no run directories"):
        load_runs([tmp_path])


def test_cli_exits_nonzero_on_empty_dir(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.compare", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: no run directories")
    assert proc.stdout == ""


def test_cli_prints_markdown(multirun, tmp_path, capsys):
    assert main([str(multirun), "--budgets", "2", "--out", str(tmp_path / "out")]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("# Comparison of NAS runs")
    assert (tmp_path / "out" / "comparison.md").exists()
