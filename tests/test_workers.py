"""Parallel evaluation: the same seed gives the same run with 1 or N workers, local or Ray.

The golden NB201 runs (``tests/golden/``, written with one worker) are re-run with several
local workers and with Ray workers and must write exactly the same candidates; a Ray worker
killed mid-call is replaced and its call retried, and a call that loses its worker twice is
the candidate's ``worker_lost`` failure.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from test_golden_nb201 import CASES, COMMON, GOLDEN, SHARED_CSV, golden_candidates

try:
    import sandbox_targets
except ImportError:  # run from the repository root as a package
    from tests import sandbox_targets

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.errors import CandidateError
from llmatic.run import ConfigError, run_experiment, validate_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")
needs_table = pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared NB201 table absent")


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def golden_run(name: str, run_dir: Path, *evaluator: str) -> list[dict]:
    overrides = [*COMMON, f"benchmark.table={SHARED_CSV}", *CASES[name], *evaluator]
    run_experiment(compose_cfg(*overrides), run_dir)
    return golden_candidates(run_dir)


@needs_table
@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("name", sorted(CASES))
def test_several_local_workers_write_the_golden_candidates(name, workers, tmp_path):
    got = golden_run(name, tmp_path, f"evaluator.workers={workers}")
    want = json.loads((GOLDEN / f"nb201_{name}.json").read_text())
    assert got == want


def test_workers_train_digits_to_the_same_scores(tmp_path):
    """Real training: two workers at once score each network as one worker does."""
    overrides = (
        "search=random",
        "search.budget=4",
        "search.batch_size=4",
        "benchmark.epochs=1",
        "output.plots=false",
        "sandbox.num_threads=1",
    )
    runs = {}
    for workers in (1, 2):
        run_dir = tmp_path / f"w{workers}"
        summary = run_experiment(compose_cfg(*overrides, f"evaluator.workers={workers}"), run_dir)
        assert summary["evaluations"] == 4
        runs[workers] = [
            (c["arch"], c["status"], c["objective"], c["test_objective"])
            for c in map(json.loads, (run_dir / "candidates.jsonl").read_text().splitlines())
        ]
    assert runs[1] == runs[2]
    assert all(status == "evaluated" for _, status, _, _ in runs[1])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluator.workers=0", "evaluator.workers must be an integer >= 1"),
        ("evaluator.name=slurm", "evaluator='slurm' is unknown"),
        ("evaluator.devices=[]", "evaluator.devices must be a list"),
        ("evaluator.devices=[tpu:0]", "evaluator.devices"),
    ],
)
def test_bad_evaluator_settings_give_a_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(override))


class SandboxedLength:
    """Scores a key by its length, in a sandboxed child that takes ``seconds``."""

    name = "length"

    def __init__(self, sandbox, seconds: float) -> None:
        self.sandbox, self.seconds = sandbox, seconds

    def evaluate(self, arch: str) -> ArchEvaluation:
        payload = {"seconds": self.seconds, "value": len(arch)}
        result = self.sandbox.run(f"{sandbox_targets.__name__}:sleep_then_echo", payload)
        if not result.ok:
            raise CandidateError(result.error_kind, result.error)
        return ArchEvaluation(
            objective=float(result.value["value"]),
            test_objective=0.0,
            measures={},
            seconds=result.seconds,
        )


def test_a_local_call_whose_sandbox_server_dies_is_retried():
    from llmatic.sandbox import Sandbox, SandboxLimits
    from llmatic.workers import LocalWorkers

    limits = SandboxLimits(wall_time_s=60.0)
    with Sandbox(limits=limits, preload=[sandbox_targets.__name__]) as box:
        workers = LocalWorkers(
            space=KeySpace(), sandbox=box, benchmarks=[SandboxedLength(box, 2.0)] * 2
        )
        zygote = box.server_pid
        killer = threading.Timer(0.8, os.kill, (zygote, signal.SIGKILL))
        killer.start()
        try:
            results = workers.evaluate([("abc", "", None), ("de", "", None)])
        finally:
            killer.cancel()
            workers.close()
        assert box.server_pid != zygote  # replaced
    assert [r.objective for r in results] == [3.0, 2.0]  # both calls retried, nothing lost


# ------------------------------------------------------------------------------------- Ray

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray cluster of 2 CPUs for this module (RayWorkers joins it)."""
    import test_workers

    # Ray workers cannot import this test module: its doubles travel by value.
    ray.cloudpickle.register_pickle_by_value(test_workers)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class KeySpace:
    """The part of a search space a worker calls: the benchmark scores the key."""

    def evaluate(self, *, benchmark, key: str, code: str) -> ArchEvaluation:
        return benchmark.evaluate(key)


class SleepyBenchmark:
    """Scores a key by its length after ``delay_s``; the key ``die`` kills its worker."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def evaluate(self, arch: str) -> ArchEvaluation:
        if arch == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay_s)
        return ArchEvaluation(
            objective=float(len(arch)), test_objective=0.0, measures={}, seconds=self.delay_s
        )


class SleepyWorker:
    """A picklable factory of one worker's parts (no sandbox: nothing untrusted runs)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def __call__(self):
        return KeySpace(), None, SleepyBenchmark(self.delay_s)


def sleepy_workers(count: int, delay_s: float):
    from llmatic.workers.ray_pool import RayWorkers

    return RayWorkers(factories=[SleepyWorker(delay_s) for _ in range(count)])


def test_ray_workers_give_results_in_input_order(local_ray):
    workers = sleepy_workers(2, 0.2)
    try:
        results = workers.evaluate([(key, "", None) for key in ("aaa", "b", "cc", "dddd", "e")])
    finally:
        workers.close()
    assert [r.objective for r in results] == [3.0, 1.0, 2.0, 4.0, 1.0]


def test_a_killed_ray_worker_is_replaced_and_its_call_retried(local_ray):
    workers = sleepy_workers(2, 2.0)
    victim = workers.pids[0]
    killer = threading.Timer(0.8, os.kill, (victim, signal.SIGKILL))
    killer.start()
    try:
        results = workers.evaluate([("aa", "", None), ("bbb", "", None)])
    finally:
        killer.cancel()
        workers.close()
    assert [r.objective for r in results] == [2.0, 3.0]  # nothing lost
    assert workers.replaced == 1


def test_a_call_that_loses_its_worker_twice_is_a_worker_lost_failure(local_ray):
    workers = sleepy_workers(2, 0.1)
    try:
        results = workers.evaluate([("die", "", None), ("ok", "", None)])
    finally:
        workers.close()
    assert isinstance(results[0], CandidateError) and results[0].kind == "worker_lost"
    assert results[1].objective == 2.0
    assert workers.replaced == 2


@needs_table
def test_ray_workers_write_the_golden_candidates(local_ray, tmp_path):
    """Each Ray worker identifies code in a sandbox of its own, built from the config."""
    got = golden_run("llmatic", tmp_path, "evaluator=ray", "evaluator.workers=2")
    want = json.loads((GOLDEN / "nb201_llmatic.json").read_text())
    assert got == want
