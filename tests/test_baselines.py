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


@pytest.mark.parametrize("search", ["random", "rea"])
def test_baseline_reaches_the_optimum_with_the_whole_budget(search, tiny_table, tmp_path):
    table, optimum = tiny_table
    cfg = compose_cfg(
        "+exp=nasbench201",
        f"search={search}",
        f"benchmark.table={table}",
        "search.budget=64",
        "search.max_candidates=3000",
        "search.ops=[none,nor_conv_3x3]",
        "output.plots=false",
    )
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
