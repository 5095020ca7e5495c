"""CIFAR in the search: the benchmark in the sandbox, its config, and a short real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from llmatic.benchmarks.cifar import CifarBenchmark
from llmatic.errors import CandidateError
from llmatic.nb201.cell import format_arch, parse_arch
from llmatic.run import ConfigError, run_experiment, validate_config
from llmatic.run.build import benchmark_sandbox
from llmatic.sandbox import Sandbox, SandboxLimits, SandboxSetupError
from llmatic.spaces.freeform import seed_code

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT.parent / "shared" / "data" / "cifar10-mini"
CONF = str(ROOT / "conf")
# A few hundred images' worth of training: enough to run every step of the recipe.
TINY = {"epochs": 0.1, "batch_size": 128, "augment": True}

pytestmark = pytest.mark.skipif(not MINI.is_dir(), reason=f"no test data in {MINI}")


def compose_cifar(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose("config", overrides=["+exp=cifar10", f"data.root={MINI}", *overrides])


@pytest.fixture(scope="module")
def cifar_sandbox():
    preload, setup = benchmark_sandbox(compose_cifar("data.val_size=1000"))
    limits = SandboxLimits(wall_time_s=120, num_threads=1)
    with Sandbox(limits=limits, preload=preload, setup=setup) as box:
        yield box


def benchmark(box: Sandbox, **train) -> CifarBenchmark:
    return CifarBenchmark(
        sandbox=box, dataset="cifar10", train={**TINY, **train}, seed=0, device="cpu"
    )


def test_a_candidates_own_code_trains_on_the_data_the_zygote_loaded(cifar_sandbox):
    bench = benchmark(cifar_sandbox)
    code = seed_code(input_shape=(3, 32, 32), num_classes=10)
    first, again = bench.evaluate_code(code), bench.evaluate_code(code)
    assert 0.0 <= first.objective <= 100.0 and 0.0 <= first.test_objective <= 100.0
    assert first.measures["width"] == 10 and first.measures["depth"] == 2
    # Deterministic under its seed: the same network scores the same.
    assert (first.objective, first.test_objective) == (again.objective, again.test_objective)


def test_the_nb201_macro_network_of_an_arch_trains_too(cifar_sandbox):
    arch = format_arch(
        parse_arch("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    )
    result = benchmark(cifar_sandbox, epochs=0.05).evaluate(arch)
    assert result.measures["width"] == 64  # NB201's C=16 macro network: 16, 32, 64 channels
    assert 0.0 <= result.objective <= 100.0


def test_a_nan_loss_and_a_crash_while_training_are_recorded_failure_kinds(cifar_sandbox):
    bench = benchmark(cifar_sandbox)
    nan = seed_code(input_shape=(3, 32, 32), num_classes=10).replace(
        "x = self.fc1(x)", "x = self.fc1(x) * float('nan')"
    )
    with pytest.raises(CandidateError) as failure:
        bench.evaluate_code(nan)
    assert failure.value.kind == "training_error"
    crash = seed_code(input_shape=(3, 32, 32), num_classes=10).replace(
        "        return x",
        "        if torch.is_grad_enabled():  # while training, not while probed\n"
        "            raise RuntimeError('boom')\n"
        "        return x",
    )
    with pytest.raises(CandidateError) as failure:
        bench.evaluate_code(crash)
    assert failure.value.kind == "forward_error"


def test_a_broken_data_set_stops_the_sandbox_with_the_datas_message(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    (folder / "test_batch").write_bytes(b"not a pickle")
    preload, setup = benchmark_sandbox(compose_cifar(f"data.root={tmp_path}"))
    with pytest.raises(SandboxSetupError, match="data_batch_1"):
        Sandbox(limits=SandboxLimits(wall_time_s=60), preload=preload, setup=setup)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.root=/nowhere/at/all", "no cifar-10-batches-py/ there.*data.download=true"),
        ("benchmark.num_classes=100", "cifar10 has 10 classes"),
        ("benchmark.train.schedule=cosine", "benchmark.train: schedule"),
        ("benchmark.dataset=svhn", "benchmark.dataset must be one of"),
    ],
)
def test_bad_cifar_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cifar(override))


def test_a_short_cifar_run_leaves_both_heatmaps(tmp_path):
    cfg = compose_cifar(
        "search.budget=3",
        "search.init_children=2",
        "search.batch_size=2",
        "data.val_size=1000",
        "benchmark.train.epochs=0.2",
        "llm=scripted",
    )
    summary = run_experiment(cfg, tmp_path)
    assert summary["evaluations"] == 3
    for name in ("plots/network_archive.png", "plots/prompt_archive.png"):
        assert (tmp_path / name).stat().st_size > 0
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    trained = [row for row in rows if row["status"] == "evaluated"]
    assert len(trained) == 3 and all(row["test_objective"] is not None for row in trained)


def test_a_child_starts_from_its_parents_trained_weights(cifar_sandbox, tmp_path):
    """Weight inheritance: the files travel as attached descriptors, never unpickled."""
    from llmatic.benchmarks.base import Lineage

    bench = CifarBenchmark(
        sandbox=cifar_sandbox,
        dataset="cifar10",
        train={**TINY, "deterministic": True},
        seed=0,
        device="cpu",
        weights_dir=tmp_path,
    )
    code = seed_code(input_shape=(3, 32, 32), num_classes=10)
    parent = bench.evaluate_code(code, lineage=Lineage(candidate_id=0, parent_id=None))
    fresh = bench.evaluate_code(code, lineage=Lineage(candidate_id=1, parent_id=None))
    child = bench.evaluate_code(code, lineage=Lineage(candidate_id=2, parent_id=0))
    assert 0.0 <= child.objective <= 100.0
    from safetensors.torch import load_file

    saved = {i: load_file(tmp_path / f"{i}.safetensors") for i in (0, 1, 2)}
    assert set(saved[0]) == set(saved[2]) and len(saved[0]) > 0
    # The same seed from scratch trains to the same weights and score; from the parent's
    # trained weights it goes further.
    assert all(saved[0][k].equal(saved[1][k]) for k in saved[0])
    assert (parent.objective, parent.test_objective) == (fresh.objective, fresh.test_objective)
    assert not all(saved[0][k].equal(saved[2][k]) for k in saved[0])
    # A missing parent file (its training failed) means a start from scratch.
    orphan = bench.evaluate_code(code, lineage=Lineage(candidate_id=3, parent_id=99))
    assert orphan.objective == parent.objective


def test_a_cifar_run_with_inheritance_keeps_each_candidates_weights(tmp_path):
    cfg = compose_cifar(
        "search.budget=3",
        "search.init_children=2",
        "search.batch_size=2",
        "data.val_size=1000",
        "benchmark.train.epochs=0.1",
        "benchmark.inherit_weights=true",
        "llm=scripted",
        "output.plots=false",
    )
    summary = run_experiment(cfg, tmp_path)
    assert summary["inherit_weights"] is True
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    trained = [row["id"] for row in rows if row["status"] == "evaluated"]
    assert len(trained) == 3
    for candidate_id in trained:
        assert (tmp_path / "weights" / f"{candidate_id}.safetensors").stat().st_size > 0


def test_inheritance_outside_cifar_is_a_config_error():
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose("config", overrides=["+benchmark.inherit_weights=true"])
    with pytest.raises(ConfigError, match="benchmark.inherit_weights needs"):
        validate_config(cfg)
