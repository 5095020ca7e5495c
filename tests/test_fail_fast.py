"""A broken setup stops a run in seconds with one line and exit code 4; nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ScriptedLLM, edges_completion
from test_experiment import GOOD, compose_cfg, read_candidates

import llmatic.run.build as build
from llmatic.benchmarks.base import ArchEvaluation
from llmatic.candidate import CandidateStore
from llmatic.errors import ENVIRONMENT_KINDS, CandidateError
from llmatic.run import ConfigError, run_experiment, validate_config
from llmatic.search.fail_fast import FailFast, SearchAborted

ROOT = Path(__file__).resolve().parents[1]


# --- the rules, on recorded candidates -------------------------------------------------


def batch(store: CandidateStore, outcomes: list[str], operator: str = "random") -> list:
    """New candidates with these outcomes: ``evaluated``, ``duplicate`` or a failure kind."""
    made = []
    for outcome in outcomes:
        candidate = store.new(operator)
        if outcome in ("evaluated", "duplicate", "skipped"):
            candidate.status = outcome
        else:
            candidate.fail(outcome, f"{outcome} happened")
        made.append(candidate)
    return made


@pytest.mark.parametrize("kind", ["exception", "out_of_memory", "out_of_space", "build_error"])
def test_a_failed_seed_stops_the_run_whatever_the_kind(kind):
    store = CandidateStore()
    seed = batch(store, [kind], operator="seed")
    with pytest.raises(SearchAborted, match=f"seed network .*failed with {kind}") as info:
        FailFast(hint=lambda kind, seed: f"hint for {kind} seed={seed}").check(store, seed)
    assert info.value.kind == kind and info.value.candidate_ids == (0,)
    assert str(info.value).endswith(f"hint for {kind} seed=True")


def test_a_working_seed_and_later_failures_do_not_stop_it():
    store, check = CandidateStore(), FailFast(after=4)
    check.check(store, batch(store, ["evaluated"], operator="seed"))
    for _ in range(5):
        check.check(store, batch(store, ["out_of_memory"] * 4, operator="mutation"))


def test_the_first_candidates_all_failing_the_same_environment_way_stop_it():
    store, check = CandidateStore(), FailFast(after=8, hint=lambda kind, seed: "raise it")
    check.check(store, batch(store, ["out_of_memory"] * 5))  # 5 of 8: not decided yet
    # Failures found by reading the completion say nothing about the machine: not counted.
    check.check(store, batch(store, ["syntax_error", "no_code", "forbidden_code", "duplicate"]))
    with pytest.raises(
        SearchAborted,
        match="first 8 candidates that ran all failed with "
        "out_of_memory \\(out_of_memory happened\\): raise it",
    ) as info:
        check.check(store, batch(store, ["out_of_memory"] * 3))
    assert info.value.kind == "out_of_memory"
    assert info.value.candidate_ids == (0, 1, 2, 3, 4, 9, 10, 11)


@pytest.mark.parametrize(
    "window",
    [
        ["out_of_memory"] * 7 + ["evaluated"],  # one success: evaluations can work
        ["out_of_memory"] * 4 + ["timeout"] * 4,  # not one and the same reason
        ["build_error"] * 8,  # the code's own fault: the model's business
        ["out_of_space"] * 8,
        ["evaluated"] * 8,
    ],
)
def test_successes_mixed_failures_and_bad_code_never_stop_it(window):
    store, check = CandidateStore(), FailFast(after=8)
    check.check(store, batch(store, window))
    # Decided once: a run that got past the window is not stopped by it later.
    for _ in range(3):
        check.check(store, batch(store, ["out_of_memory"] * 8))


def test_a_model_writing_only_unparsable_code_is_not_a_broken_setup():
    store, check = CandidateStore(), FailFast(after=8)
    for _ in range(10):
        check.check(store, batch(store, ["syntax_error", "forbidden_code", "no_code"]))


def test_both_rules_can_be_turned_off():
    store = CandidateStore()
    FailFast(seed=False).check(store, batch(store, ["exception"], operator="seed"))
    store = CandidateStore()
    FailFast(after=0).check(store, batch(store, ["exception"] * 20))
    with pytest.raises(ValueError):
        FailFast(after=-1)
    with pytest.raises(ConfigError, match="fail_fast.after"):
        validate_config(compose_cfg("fail_fast.after=-1"))


# --- whole runs ------------------------------------------------------------------------


class FakeBenchmark:
    """Scores instantly; ``fail(n, arch)`` says which failure kind the n-th call raises."""

    name = "fake"

    def __init__(self, fail) -> None:
        self.fail = fail
        self.calls = 0

    def evaluate(self, arch: str) -> ArchEvaluation:
        self.calls += 1
        kind = self.fail(self.calls, arch)
        if kind is not None:
            raise CandidateError(kind, f"{kind} in call {self.calls}")
        score = 50.0 + self.calls
        measures = {"width_to_depth": 1.5 + self.calls % 3, "log10_flops": 4.0 + self.calls / 100}
        return ArchEvaluation(score, score, measures, 0.0)


@pytest.fixture
def fake_benchmark(monkeypatch):
    def install(fail):
        bench = FakeBenchmark(fail)
        monkeypatch.setattr(build, "build_benchmark", lambda cfg, sandbox, **kwargs: bench)
        return bench

    return install


RANDOM = ("search=random", "search.batch_size=4", "search.budget=40", "output.plots=false")


def test_a_baseline_whose_every_evaluation_runs_out_of_memory_stops_after_8(
    tmp_path, fake_benchmark
):
    bench = fake_benchmark(lambda n, arch: "out_of_memory")
    cfg = compose_cfg(*RANDOM, "sandbox.memory_mb=512")
    with pytest.raises(SearchAborted) as info:
        run_experiment(cfg, tmp_path)
    message = str(info.value)
    assert "first 8 candidates that ran all failed with out_of_memory" in message
    assert "sandbox.memory_mb=512 is too small" in message
    assert bench.calls == 8  # two iterations of 4, not the budget of 40
    # What was done is on disk: candidates, metrics, checkpoint, archives, summary.
    assert [c["error_kind"] for c in read_candidates(tmp_path)] == ["out_of_memory"] * 8
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failure_kinds"] == {"out_of_memory": 8}
    for name in ("checkpoint.pkl", "archives/network.pkl", "config.yaml"):
        assert (tmp_path / name).is_file(), name


def test_a_run_with_failures_among_successes_runs_to_its_budget(tmp_path, fake_benchmark):
    kinds = ["out_of_memory", "timeout", "training_error", "exception", "crashed"]
    # Calls 1, 2, 4, 5, ... fail (environment kinds, one after another); every 3rd works.
    fake_benchmark(lambda n, arch: None if n % 3 == 0 else kinds[n % len(kinds)])
    summary = run_experiment(compose_cfg(*RANDOM, "search.budget=24"), tmp_path)
    assert summary["evaluations"] == 24
    assert summary["status_counts"]["evaluated"] == 8
    assert set(summary["failure_kinds"]) == set(kinds)


def test_a_run_whose_environment_failures_all_share_a_kind_but_one_success_goes_on(
    tmp_path, fake_benchmark
):
    fake_benchmark(lambda n, arch: None if n == 5 else "out_of_memory")
    summary = run_experiment(compose_cfg(*RANDOM, "search.budget=12"), tmp_path)
    assert summary["evaluations"] == 12
    assert summary["failure_kinds"] == {"out_of_memory": 11}


def test_a_seed_outside_the_benchmark_stops_llmatic_before_any_llm_call(tmp_path, fake_benchmark):
    seed_arch = compose_cfg().benchmark.seed_arch
    fake_benchmark(lambda n, arch: "out_of_space" if arch == seed_arch else None)
    llm = ScriptedLLM([edges_completion(a) for a in GOOD])
    cfg = compose_cfg("search.budget=6", "search.init_children=3", "output.plots=false")
    with pytest.raises(SearchAborted, match="seed network .*failed with out_of_space") as info:
        run_experiment(cfg, tmp_path, llm=llm)
    assert f"cannot map or score benchmark.seed_arch={seed_arch}" in str(info.value)
    assert llm.calls == []
    (seed,) = read_candidates(tmp_path)
    assert seed["operator"] == "seed" and seed["error_kind"] == "out_of_space"


def test_the_memory_limit_too_small_stops_with_one_line_and_exit_code_4(tmp_path):
    # The command of the bug report: every sandboxed call fails for lack of memory.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "sandbox.memory_mb=10",
            "search.budget=2",
            "llm=scripted",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output[-3000:]
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "SearchAborted" in line]
    assert "[ERROR]" in line and "best val" not in output
    (seed,) = read_candidates(tmp_path)  # the seed, recorded before the run stopped
    assert seed["operator"] == "seed" and seed["status"] == "failed"
    # The sandbox classifies the failed allocation: out_of_memory, or (torch's oneDNN
    # reports it as "could not create a primitive") exception, or crashed if the process
    # dies of it. Either way the line names that kind, the memory limit and the run's files.
    assert seed["error_kind"] in ENVIRONMENT_KINDS
    assert f"failed with {seed['error_kind']}" in line
    assert "sandbox.memory_mb=10" in line
    assert f"The run so far is in {tmp_path} (candidates.jsonl" in line
    for name in ("checkpoint.pkl", "metrics.csv", "summary.json"):
        assert (tmp_path / name).is_file(), name
