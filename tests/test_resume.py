"""Checkpoint and resume: a run stopped mid-way and resumed ends like one never stopped."""

from __future__ import annotations

import csv
import itertools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from llmatic.candidate import CandidateStore
from llmatic.checkpoint import CHECKPOINT_FILE, FORMAT_VERSION, CheckpointError, read_header
from llmatic.evaluation import Evaluator
from llmatic.pickled_prefix import PickledPrefix
from llmatic.run import ConfigError, resume_config, run_experiment

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
BUDGET = 24


def overrides(table: Path, *extra: str) -> list[str]:
    """A small LLMatic run on the table with the scripted (fake) LLM."""
    return [
        "benchmark=nasbench201",
        f"benchmark.table={table}",
        "llm=scripted",
        f"search.budget={BUDGET}",
        "search.batch_size=4",
        "search.init_children=3",
        "output.plots=false",
        *extra,
    ]


def compose_cfg(overrides_: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides_)


def outcome(run_dir: Path) -> dict:
    """What must not depend on whether the run was interrupted (timings left out)."""
    candidates = [
        json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()
    ]
    for c in candidates:
        del c["eval_seconds"], c["llm_seconds"]
    archives = {}
    for name in ("network", "prompts"):
        if not (run_dir / f"archives/{name}.pkl").exists():
            continue  # the baselines have no prompt archive
        archive = pickle.loads((run_dir / f"archives/{name}.pkl").read_bytes())
        data = archive.data()
        order = np.argsort(data["index"])
        archives[name] = {
            k: [None if x != x else x for x in np.asarray(v)[order].tolist()]  # NaN -> None
            for k, v in data.items()
        }
    with (run_dir / "metrics.csv").open() as f:
        metrics = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "candidates": candidates,
        "archives": archives,
        "metrics": metrics,
        "summary": {k: summary[k] for k in ("evaluations", "candidates", "status_counts", "best")},
    }


def check_accounting(result: dict) -> None:
    """No finished evaluation lost or repeated; the budget respected."""
    candidates = result["candidates"]
    assert [c["id"] for c in candidates] == list(range(len(candidates)))
    charged = [c["arch"] for c in candidates if c["charged"]]
    assert len(charged) == len(set(charged)) == BUDGET == result["summary"]["evaluations"]


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory) -> tuple[Path, dict]:
    """The same run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference")
    run_experiment(compose_cfg(overrides(table)), run_dir)
    result = outcome(run_dir)
    check_accounting(result)
    statuses = result["summary"]["status_counts"]
    assert {"evaluated", "failed"} <= set(statuses), statuses  # failures are resumed too
    return run_dir, result


def interrupt(monkeypatch, method: str, call: int) -> None:
    """Ctrl-C in the middle of an iteration, at the ``call``-th call of ``score`` (one
    benchmark evaluation by a worker; the batch half done) or of ``Evaluator.collect``
    (on its way out: the batch done, the archives not told yet)."""
    import llmatic.workers.local as local_workers

    owner, name = (local_workers, "evaluate_on") if method == "score" else (Evaluator, method)
    original = getattr(owner, name)
    calls = itertools.count(1)

    def interrupted(*args, **kwargs):
        n = next(calls)
        if method == "score" and n == call:
            raise KeyboardInterrupt
        result = original(*args, **kwargs)
        if n == call:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(owner, name, interrupted)


@pytest.mark.parametrize("every, method, call", [(1, "collect", 5), (3, "score", 11)])
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(
    table, reference, tmp_path, monkeypatch, every, method, call
):
    cfg = compose_cfg(overrides(table, f"output.checkpoint_every={every}"))
    with monkeypatch.context() as patch:
        interrupt(patch, method, call)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path)
    header = read_header(tmp_path / CHECKPOINT_FILE)
    assert not header["finished"] and 0 < header["evaluations"] < BUDGET
    if method == "collect":
        # The files ran ahead of the checkpoint: a batch evaluated, not told.
        lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
        assert len(lines) > header["candidates"]

    summary = run_experiment(cfg, tmp_path, resume=True)
    result = outcome(tmp_path)
    check_accounting(result)
    assert result == reference[1]
    assert read_header(tmp_path / CHECKPOINT_FILE)["finished"]
    assert summary["checkpoint"]["writes"] >= 1


@pytest.mark.parametrize("search", ["rea", "local"])
def test_resumed_baseline_keeps_its_population(table, tmp_path, monkeypatch, search):
    cfg = compose_cfg(
        [
            "benchmark=nasbench201",
            f"benchmark.table={table}",
            f"search={search}",
            f"search.budget={BUDGET}",
            "search.batch_size=5",  # local search: a neighbourhood over several iterations
            "output.plots=false",
        ]
    )
    run_experiment(cfg, tmp_path / "reference")
    with monkeypatch.context() as patch:
        interrupt(patch, "score", call=17)  # after the population of 10 is full
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path / "resumed")
    header = read_header(tmp_path / "resumed" / CHECKPOINT_FILE)
    assert 0 < header["evaluations"] < BUDGET
    run_experiment(cfg, tmp_path / "resumed", resume=True)
    resumed = outcome(tmp_path / "resumed")
    check_accounting(resumed)
    assert resumed == outcome(tmp_path / "reference")


def test_resumed_bandit_pool_equals_the_uninterrupted_one(table, tmp_path, monkeypatch):
    cfg = compose_cfg(overrides(table, "search=llmatic_bandit", "search.classic_batch_size=3"))
    run_experiment(cfg, tmp_path / "reference")
    with monkeypatch.context() as patch:
        interrupt(patch, "score", call=15)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path / "resumed")
    run_experiment(cfg, tmp_path / "resumed", resume=True)
    resumed, reference = outcome(tmp_path / "resumed"), outcome(tmp_path / "reference")
    check_accounting(resumed)
    assert resumed == reference
    operators = {c["operator"] for c in reference["candidates"]}
    assert "classic" in operators and operators & {"mutation", "crossover"}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _experiments_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_kill_9_then_resume_from_the_command_line(table, reference, tmp_path):
    run_dir = tmp_path / "run"
    args = [*overrides(table, "llm.delay_s=0.15"), f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        metrics = run_dir / "metrics.csv"
        deadline = time.monotonic() + 240
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
        children = _children(proc.pid)  # the sandbox's zygote
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    header = read_header(run_dir / CHECKPOINT_FILE)
    assert not header["finished"] and header["evaluations"] < BUDGET
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "the sandbox outlived its search"

    resumed = _experiments_run(f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = outcome(run_dir)
    check_accounting(result)
    assert result == reference[1]
    assert "resuming" in (run_dir / "run.log").read_text()  # Hydra's log went on there
    assert (run_dir / ".hydra/resume/overrides.yaml").is_file()
    assert (run_dir / ".hydra/overrides.yaml").read_text() != ""  # the original kept

    # (c) Once more: the run is finished, nothing changes, exit status 0.
    before = (run_dir / "candidates.jsonl").read_bytes()
    again = _experiments_run(f"resume={run_dir}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "finished already" in again.stdout + again.stderr
    assert (run_dir / "candidates.jsonl").read_bytes() == before


def test_resuming_a_finished_run_changes_nothing(reference, tmp_path):
    run_dir = tmp_path / "done"
    shutil.copytree(reference[0], run_dir)
    cfg = compose_cfg([])  # not even read: the run is finished
    summary = run_experiment(cfg, run_dir, resume=True)
    assert summary["evaluations"] == BUDGET
    assert outcome(run_dir) == reference[1]


# ------------------------------------------------------------------ (b) unusable checkpoints


@pytest.fixture
def unfinished(reference, tmp_path) -> Path:
    """A copy of the reference run whose checkpoint says it is not finished."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference[0], run_dir)
    path = run_dir / CHECKPOINT_FILE
    header, body = path.read_bytes().split(b"\n", 1)
    fields = json.loads(header)
    fields["finished"] = False
    path.write_bytes(json.dumps(fields).encode() + b"\n" + body)
    return run_dir


def _damage_body(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1000])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x01garbage")


def _other_version(path: Path) -> None:
    header, body = path.read_bytes().split(b"\n", 1)
    fields = json.loads(header)
    fields["version"] = FORMAT_VERSION + 1
    path.write_bytes(json.dumps(fields).encode() + b"\n" + body)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda path: path.unlink(), "no checkpoint at .*start a new run"),
        (_damage_body, "is damaged .*start a new run"),
        (_truncate, "is damaged .*start a new run"),
        (_garbage, "is not an llmatic checkpoint .*start a new run"),
        (_other_version, f"format version {FORMAT_VERSION + 1}, this llmatic reads"),
    ],
)
def test_unusable_checkpoint_gives_a_clear_error(unfinished, damage, message):
    damage(unfinished / CHECKPOINT_FILE)
    cfg = compose_cfg([])
    with pytest.raises(CheckpointError, match=message) as err:
        run_experiment(cfg, unfinished, resume=True)
    assert "\n" not in str(err.value)


def test_command_line_error_is_one_line(unfinished):
    (unfinished / CHECKPOINT_FILE).unlink()
    result = _experiments_run(f"resume={unfinished}", timeout=120)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "CheckpointError" in line]
    assert len(errors) == 1 and "no checkpoint at" in errors[0], output


# ----------------------------------------------------------------- the command line's config


def test_resume_config_takes_the_runs_own_config(reference, table):
    run_dir = reference[0]
    # Only resume=: the run's config, whatever the defaults are now.
    cfg = resume_config(run_dir, compose_cfg([f"resume={run_dir}"]), [f"resume={run_dir}"])
    assert cfg.benchmark.name == "nasbench201" and cfg.search.budget == BUDGET
    # The run's own command line again: fine. How it runs may change.
    again = [*overrides(table), "output.snapshot_every=2", "sandbox.memory_mb=4096"]
    cfg = resume_config(run_dir, compose_cfg(again), again)
    assert cfg.output.snapshot_every == 2 and cfg.sandbox.memory_mb == 4096
    assert cfg.search.budget == BUDGET


@pytest.mark.parametrize(
    "extra, named",
    [
        (["search.budget=99"], "search.budget (24 -> 99)"),
        (["seed=3"], "seed (0 -> 3)"),
        (["llm=smollm2"], "llm.backend ('scripted' -> 'transformers')"),
        (None, "benchmark.archive.dims ([20, 12] -> [8, 10])"),  # +exp=quickstart
    ],
)
def test_resume_refuses_a_changed_config(reference, table, extra, named):
    run_dir = reference[0]
    command = [*overrides(table), *extra] if extra is not None else ["+exp=quickstart"]
    with pytest.raises(ConfigError, match="drop those overrides") as err:
        resume_config(run_dir, compose_cfg(command), command)
    assert named in str(err.value)


def test_resume_of_a_directory_without_a_run(tmp_path):
    with pytest.raises(ConfigError, match="no config.yaml"):
        resume_config(tmp_path, compose_cfg([]), [])


def test_store_pickles_final_candidates_once_and_restores_every_candidate(tmp_path):
    store = CandidateStore(path=tmp_path / "candidates.jsonl")
    store._pickled = PickledPrefix(chunk=2)  # small chunks: several in 5 candidates
    for k in range(5):
        c = store.new("random", code=f"net{k}", arch=f"a{k}")
        c.status, c.objective = ("evaluated", float(k)) if k < 3 else ("pending", None)
    store.flush()  # the first three are final and in the file
    first = store.state_dict()
    assert len(first["pickled"]) == 1 and [c.id for c in first["candidates"]] == [2, 3, 4]
    store[3].status = "failed"
    store.flush()
    second = store.state_dict()
    assert len(second["pickled"]) == 2 and second["pickled"][0] is first["pickled"][0]
    assert second["size"] == 5 and [c.id for c in second["candidates"]] == [4]
    state = pickle.loads(pickle.dumps(second))
    restored = CandidateStore(path=tmp_path / "restored.jsonl")
    restored.load_state_dict(state)
    assert [c.to_json() for c in restored] == [c.to_json() for c in store]
    assert len((tmp_path / "restored.jsonl").read_text().splitlines()) == 4
    # A checkpoint from before the pickled chunks: every candidate in one list.
    older = CandidateStore()
    older.load_state_dict({"candidates": list(store), "flushed": 4})
    assert [c.to_json() for c in older] == [c.to_json() for c in store]


def test_pickled_prefix_pickles_each_chunk_once():
    prefix, items = PickledPrefix(chunk=3), list(range(10))
    chunks, rest = prefix.split(items, final=7)
    assert len(chunks) == 2 and rest == [6, 7, 8, 9]
    items[8] = "changed"  # not final yet: taken as it is now
    again, rest = prefix.split(items, final=7)
    assert again == chunks and again[1] is chunks[1] and rest == [6, 7, "changed", 9]
    assert PickledPrefix().restore(again, rest) == items
    with pytest.raises(ValueError, match="chunk"):
        PickledPrefix(chunk=0)
