"""Random search and REA: the NB201 operators, and whole runs on a tiny table."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_experiment import compose_cfg

from experiments.compare import main as compare_main
from llmatic.analysis.comparison import load_run, results_frame, runs_table
from llmatic.nb201.cell import EDGES, format_arch, parse_arch
from llmatic.run import run_experiment
from llmatic.spaces.nb201 import mutate_arch, random_arch

TINY_OPS = ("none", "nor_conv_3x3")


def test_mutation_changes_exactly_one_edge():
    rng = np.random.default_rng(0)
    for _ in range(50):
        parent = random_arch(rng)
        child = mutate_arch(parent, rng)
        a, b = parse_arch(parent), parse_arch(child)
        assert sum(a[e] != b[e] for e in EDGES) == 1


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory) -> tuple[Path, str]:
    """All 64 archs over two ops, with a unique best-by-validation arch."""
    rng = np.random.default_rng(0)
    rows = []
    for ops in itertools.product(TINY_OPS, repeat=len(EDGES)):
        row = {"arch": format_arch(dict(zip(EDGES, ops, strict=True)))}
        for dataset in ("cifar10", "cifar100", "imagenet16"):
            for split in ("val", "test"):
                row[f"{dataset}_{split}"] = float(rng.uniform(10, 80))
        rows.append(row)
    frame = pd.DataFrame(rows)
    best = int(np.argmax(frame["cifar10_val"]))
    frame.loc[best, "cifar10_val"] = 95.0
    path = tmp_path_factory.mktemp("table") / "tiny.csv"
    frame.to_csv(path, index=False)
    return path, frame.loc[best, "arch"]


def whole_tiny_table(table: Path, search: str) -> tuple[str, ...]:
    """Overrides for a run of ``search`` whose budget is the whole tiny table."""
    return (
        "+exp=nasbench201",
        f"search={search}",
        f"benchmark.table={table}",
        "search.budget=64",
        "search.max_candidates=3000",
        "search.ops=[none,nor_conv_3x3]",
        "output.plots=false",
    )


@pytest.mark.parametrize("search", ["random", "rea"])
def test_baseline_reaches_the_optimum_with_the_whole_budget(search, tiny_table, tmp_path):
    table, optimum = tiny_table
    cfg = compose_cfg(*whole_tiny_table(table, search))
    summary = run_experiment(cfg, tmp_path)
    assert summary["evaluations"] == 64
    assert summary["best"]["arch"] == optimum and summary["best"]["val_accuracy"] == 95.0


def test_short_real_runs_make_a_comparison(tiny_table, tmp_path):
    table, _ = tiny_table
    multirun = tmp_path / "multirun"
    for search, seed in itertools.product(("random", "rea"), (0, 1)):
        cfg = compose_cfg(
            "+exp=nasbench201",
            f"search={search}",
            f"benchmark.table={table}",
            f"seed={seed}",
            "search.budget=12",
            "search.ops=[none,nor_conv_3x3]",
            "output.plots=false",
        )
        run_experiment(cfg, multirun / f"{search}_{seed}")
    out = tmp_path / "comparison"
    assert compare_main([str(multirun), "--budgets", "5", "12", "--out", str(out)]) == 0
    report = (out / "comparison.md").read_text()
    assert "random" in report and "rea" in report and "12 evals" in report
    assert (out / "best_so_far_cifar10.png").stat().st_size > 0
    rows = pd.read_csv(out / "comparison.csv")
    assert len(rows) == 2 * 2 * 2  # methods x seeds x budgets
    summaries = [json.loads(p.read_text()) for p in multirun.glob("*/summary.json")]
    assert all(s["evaluations"] == 12 for s in summaries)


@pytest.mark.parametrize("search", ["random", "classic_elitist"])
def test_stop_objective_ends_a_run_as_a_prefix_of_the_whole_one(search, tiny_table, tmp_path):
    """A run stopped at the table's best validation accuracy is the whole run cut short,
    so with ``settled`` the comparison reports for it what the whole run reports."""
    table, optimum = tiny_table
    runs = {}
    for stop in ("null", "95.0"):
        cfg = compose_cfg(
            *whole_tiny_table(table, search),
            f"search.stop_objective={stop}",
            # A seed inside the tiny table (two ops only), for the classic mutation.
            "benchmark.seed_arch='|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'",
            "llm=scripted",
        )
        run_experiment(cfg, tmp_path / stop)
        runs[stop] = load_run(tmp_path / stop)
    whole, stopped = runs["null"], runs["95.0"]
    assert whole.evaluations == 64 and whole.complete
    assert stopped.complete and stopped.stop_objective == 95.0  # stopped where it was asked
    assert stopped.val.max() == 95.0 and stopped.evaluations < 64
    reached = int(np.argmax(whole.val == 95.0)) + 1
    assert reached <= stopped.evaluations < reached + 8  # after the iteration that found it
    assert np.array_equal(stopped.val, whole.val[: stopped.evaluations])
    budgets = [1, reached, 40, 64]
    settled = results_frame([stopped], budgets, {"cifar10": 95.0})
    assert settled["test"].tolist() == results_frame([whole], budgets)["test"].tolist()
    assert settled["settled"].tolist() == [b > stopped.evaluations for b in budgets]
    assert "| 1 stopped at search.stop_objective |" in runs_table([stopped], [search])
    summary = json.loads((tmp_path / "95.0" / "summary.json").read_text())
    assert summary["best"]["arch"] == optimum
