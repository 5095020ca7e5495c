"""The whole search with a scripted LLM: budget, de-duplication, failures, run files."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from conftest import ScriptedLLM, edges_completion
from hydra import compose, initialize_config_dir
from ribs.archives import GridArchive

from llmatic.run import ConfigError, run_experiment, validate_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")

GOOD = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|nor_conv_3x3~1|none~2|",
]
# A script with good cells, repeats (duplicates) and broken completions.
SCRIPT = [
    edges_completion(GOOD[0]),
    'nor_conv_3x3"](C)\n        self.edge_0_2 = OPS[',  # syntax error
    edges_completion(GOOD[1]),
    edges_completion(GOOD[0]),  # duplicate architecture
    'conv_9x9"](C)\n',  # unknown operation
    *[edges_completion(a) for a in GOOD[2:]],
]


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


TINY = (
    "search.budget=6",
    "search.batch_size=4",
    "search.init_children=3",
    "benchmark.epochs=1",
    "output.snapshot_every=1",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    llm = ScriptedLLM(SCRIPT)
    summary = run_experiment(compose_cfg(*TINY), run_dir, llm=llm)
    return run_dir, summary, llm


def read_candidates(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]


def test_budget_is_respected_and_counted_honestly(tiny_run):
    run_dir, summary, _ = tiny_run
    candidates = read_candidates(run_dir)
    charged = [c for c in candidates if c["charged"]]
    assert summary["evaluations"] == len(charged) == 6
    assert len({c["arch"] for c in charged}) == len(charged), "an architecture was charged twice"
    assert summary["candidates"] == len(candidates)
    assert summary["status_counts"].get("duplicate", 0) >= 1
    assert {"syntax_error", "build_error"} <= set(summary["failure_kinds"])


def test_failed_and_duplicate_candidates_never_enter_the_archive(tiny_run):
    run_dir, _, _ = tiny_run
    archive: GridArchive = pickle.loads((run_dir / "archives/network.pkl").read_bytes())
    by_id = {c["id"]: c for c in read_candidates(run_dir)}
    ids = [int(i) for i in archive.data("solution")]
    assert ids and all(by_id[i]["status"] == "evaluated" for i in ids)
    assert archive.stats.obj_max == max(
        c["objective"] for c in by_id.values() if c["status"] == "evaluated"
    )


def test_every_candidate_is_recorded_with_its_provenance(tiny_run):
    run_dir, _, llm = tiny_run
    candidates = read_candidates(run_dir)
    assert candidates[0]["operator"] == "seed" and candidates[0]["status"] == "evaluated"
    made = [c for c in candidates if c["operator"] in ("init", "mutation", "crossover")]
    assert len(made) == sum(len(call) for call in llm.calls)
    for c in made:
        assert c["parent_ids"] and c["prompt"] and 0.1 <= c["temperature"] <= 1.0
        assert c["status"] in ("evaluated", "failed", "duplicate", "skipped")
        assert (c["status"] == "failed") == (c["error_kind"] is not None)
    assert {c["operator"] for c in made} >= {"init", "mutation"}


def test_run_directory_has_every_file(tiny_run):
    run_dir, summary, _ = tiny_run
    for name in (
        "config.yaml",
        "candidates.jsonl",
        "metrics.csv",
        "summary.json",
        "archives/network.pkl",
        "archives/prompts.pkl",
        "archives/network.csv",
        "plots/network_archive.png",
        "plots/prompt_archive.png",
        "plots/progress.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,phase,evaluations")
    assert int(lines[-1].split(",")[2]) == summary["evaluations"]
    best = summary["best"]
    assert best["test_accuracy"] is not None and 0 <= best["val_accuracy"] <= 100


def test_curiosity_was_credited(tiny_run):
    run_dir, _, _ = tiny_run
    prompts: GridArchive = pickle.loads((run_dir / "archives/prompts.pkl").read_bytes())
    assert len(prompts) > 0
    assert (prompts.data("objective") != 0).any()


@pytest.mark.parametrize(
    "override, message",
    [
        ("search.budget=0", "search.budget"),
        ("benchmark.archive.log10_flops_range=[6,4]", "log10_flops_range"),
        ("benchmark.seed_arch=nonsense", "seed_arch"),
        ("search.temperature.initial=2.0", "temperature"),
        ("search.temperature.schedule=cosine", "search.temperature.schedule"),
        pytest.param("llm.device=cuda", "llm.device: .*CUDA is not available", marks=NO_CUDA),
        ("llm.device=gpu0", "llm.device: .*not a device"),
        pytest.param("benchmark.device=cuda:1", "benchmark.device: .*CUDA", marks=NO_CUDA),
        ("llm.dtype=float8", "llm.dtype"),
    ],
)
def test_bad_config_values_give_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(override))


def test_plot_command_redraws_a_run(tiny_run, tmp_path):
    import shutil

    from experiments.plot import main as plot_main

    run_dir, _, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "plots")
    assert plot_main([str(copy)]) == 0
    assert {p.name for p in (copy / "plots").iterdir()} == {
        "network_archive.png",
        "prompt_archive.png",
        "progress.png",
    }
    assert plot_main([str(tmp_path / "nowhere")]) == 1


def test_nasbench201_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="benchmark.dataset"):
        validate_config(compose_cfg("+exp=nasbench201", "benchmark.dataset=mnist"))
    cfg = compose_cfg("+exp=nasbench201", f"benchmark.table={tmp_path / 'missing.csv'}")
    with pytest.raises(ConfigError, match="benchmark.table: .*convert"):
        run_experiment(cfg, tmp_path / "run", llm=ScriptedLLM(["x"]))


def test_sandbox_children_are_cuda_children_only_when_the_benchmark_trains_on_cuda():
    from llmatic.run.config import sandbox_limits

    assert sandbox_limits(compose_cfg("benchmark.device=cpu")).cuda is False
    assert sandbox_limits(compose_cfg("+sandbox.cuda=true")).cuda is True  # said outright
    auto = sandbox_limits(compose_cfg("benchmark.device=auto"))
    assert auto.cuda is torch.cuda.is_available()


def test_a_new_run_in_a_directory_with_a_run_is_refused(tiny_run, tmp_path):
    """Two runs' candidates would be mixed in one file: refused, and nothing is touched."""
    run_dir = tiny_run[0]
    before = (run_dir / "candidates.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="holds a run already: resume="):
        run_experiment(compose_cfg(*TINY), run_dir, llm=ScriptedLLM(SCRIPT))
    assert (run_dir / "candidates.jsonl").read_bytes() == before
