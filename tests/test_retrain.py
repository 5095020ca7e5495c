"""experiments.retrain: a run's best networks trained again, longer, over seeds."""

from __future__ import annotations

import csv

import pytest
from omegaconf import OmegaConf
from test_experiment import TINY, compose_cfg

from experiments.retrain import main as retrain_main
from llmatic.analysis.retrain import pick_top, retrain_run
from llmatic.errors import ConfigError
from llmatic.run import run_experiment


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    run_experiment(compose_cfg(*TINY, "llm=scripted", "output.plots=false"), run_dir)
    return run_dir


def test_the_best_networks_are_retrained_under_each_seed_and_reported(digits_run, tmp_path):
    top = pick_top(digits_run, 2)
    assert len(top) == 2 and top[0]["objective"] >= top[1]["objective"]
    rows = retrain_run(digits_run, top=2, seeds=(0, 1), epochs=2, out_dir=tmp_path)
    assert [(r.candidate_id, r.seed) for r in rows] == [
        (top[0]["id"], 0),
        (top[1]["id"], 0),
        (top[0]["id"], 1),
        (top[1]["id"], 1),
    ]
    assert all(r.error is None and 0.0 <= r.test <= 100.0 for r in rows)
    assert all(r.flops > 0 and r.params > 0 for r in rows)
    with (tmp_path / "retrain.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    table = (tmp_path / "retrain.md").read_text()
    assert f"| {top[0]['id']} | {top[0]['objective']:.2f} |" in table and "±" in table
    assert (tmp_path / "retrain.png").stat().st_size > 0


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path, capsys):
    assert retrain_main([str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_a_table_benchmark_has_nothing_to_retrain(tmp_path):
    cfg = compose_cfg("benchmark=nasbench201")
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (tmp_path / "candidates.jsonl").write_text("")
    with pytest.raises(ConfigError, match="nothing to retrain"):
        retrain_run(tmp_path)
