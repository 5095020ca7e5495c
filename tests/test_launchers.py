"""Sweeps under Hydra's launchers (docs/cluster.md), run as a user runs them.

joblib (conf/hydra/launcher/local_parallel.yaml) runs for real: two searches at once, each
in its own process with its own sandbox, giving what the same seeds give one after
another. The SLURM config (conf/hydra/launcher/slurm.yaml) is submitted to a stand-in
`sbatch` that keeps the job script; submitit_local runs one tiny job for real.
"""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 8


def cheap(table: Path, *extra: str) -> list[str]:
    """A small LLMatic search on the table with the scripted LLM: seconds, but it starts a
    sandbox (each candidate's code is inspected there) like a real one."""
    return [
        "benchmark=nasbench201",
        f"benchmark.table={table}",
        "output.plots=false",
        "llm=scripted",
        f"search.budget={BUDGET}",
        "search.batch_size=4",
        "search.init_children=3",
        *extra,
    ]


def experiments_run(*args: str, env: dict | None = None, timeout: float = 240):
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def job_dirs(sweep: Path) -> dict[int, Path]:
    """The sweep's run directories by seed (each run's own resolved config.yaml)."""
    dirs = {}
    for path in sweep.iterdir():
        if (path / "config.yaml").is_file():
            seed = yaml.safe_load((path / "config.yaml").read_text())["seed"]
            assert seed not in dirs, f"two runs of seed {seed}"
            dirs[seed] = path
    return dirs


def outcome(run_dir: Path) -> dict:
    """What a run found, timings left out."""
    candidates = [
        json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()
    ]
    for c in candidates:
        del c["eval_seconds"], c["llm_seconds"]
    with (run_dir / "metrics.csv").open() as f:
        metrics = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    summary = json.loads((run_dir / "summary.json").read_text())
    keys = ("evaluations", "candidates", "status_counts", "best", "network_archive")
    return {
        "candidates": candidates,
        "metrics": metrics,
        "summary": {k: summary[k] for k in keys},
    }


def test_a_joblib_sweep_runs_jobs_at_once_and_matches_the_basic_launcher(table, tmp_path):
    parallel = experiments_run(
        "-m",
        "seed=0,1",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=2",
        *cheap(table),
        f"hydra.sweep.dir={tmp_path / 'parallel'}",
    )
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in parallel.stdout + parallel.stderr
    serial = experiments_run(
        "-m", "seed=0,1", *cheap(table), f"hydra.sweep.dir={tmp_path / 'serial'}"
    )
    assert serial.returncode == 0, serial.stderr[-3000:]

    by_joblib, one_by_one = job_dirs(tmp_path / "parallel"), job_dirs(tmp_path / "serial")
    assert sorted(by_joblib) == sorted(one_by_one) == [0, 1]
    for seed, run_dir in by_joblib.items():
        assert run_dir.name.endswith(f"_seed{seed}")  # hydra.sweep.subdir names the run
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["evaluations"] == BUDGET
        assert summary["seconds"]["inspect_code"] > 0  # its sandbox ran in the worker
        assert "evaluations" in (run_dir / "run.log").read_text()  # Hydra's log per job
        assert outcome(run_dir) == outcome(one_by_one[seed]), f"seed {seed}"
    assert outcome(by_joblib[0])["candidates"] != outcome(by_joblib[1])["candidates"]


def test_a_failed_job_fails_the_sweep_but_not_the_other_jobs(table, tmp_path):
    # A config error in one job (exit status 2 on its own) must not cancel the job
    # running beside it: the sweep finishes it, then exits 1 naming the failure.
    result = experiments_run(
        "-m",
        "search.budget=-1,4",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_jobs=2",
        "search=random",
        *cheap(table)[:3],
        f"hydra.sweep.dir={tmp_path}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "JobFailed: exit status 2: ConfigError: search.budget must be > 0" in output
    finished = [p for p in tmp_path.iterdir() if (p / "summary.json").is_file()]
    assert len(finished) == 1
    assert json.loads((finished[0] / "summary.json").read_text())["evaluations"] == 4


def test_a_sweep_launched_again_continues_its_killed_job(table, tmp_path):
    # What a SLURM job requeued by submitit (preemption) does: the same job, in the same
    # directory, again. It must continue its run, not start over on top of its files.
    args = ["-m", "seed=3", *cheap(table, "llm.delay_s=0.3"), f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(
            len(p.read_text().splitlines()) >= 3 for p in tmp_path.glob("*/metrics.csv")
        ):  # a header and two iterations
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    (run_dir,) = job_dirs(tmp_path).values()
    assert not (run_dir / "summary.json").exists()

    again = experiments_run(*args)  # the same command, as submitit requeues it
    assert again.returncode == 0, again.stderr[-3000:]
    log = (run_dir / "run.log").read_text()
    assert "continuing it" in log and "resuming" in log
    candidates = [
        json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()
    ]
    assert [c["id"] for c in candidates] == list(range(len(candidates)))  # none twice
    with (run_dir / "metrics.csv").open() as f:
        iterations = [int(row["iteration"]) for row in csv.DictReader(f)]
    assert iterations == list(range(1, len(iterations) + 1))
    assert json.loads((run_dir / "summary.json").read_text())["evaluations"] == BUDGET

    # Once more: the run is finished, nothing changes.
    before = (run_dir / "candidates.jsonl").read_bytes()
    third = experiments_run(*args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "finished already" in third.stdout + third.stderr
    assert (run_dir / "candidates.jsonl").read_bytes() == before


def test_the_slurm_config_makes_the_job_script_without_a_cluster(table, tmp_path):
    # Stand-ins for SLURM's commands: submitit looks for `srun`, and `sbatch` keeps the
    # job script it is given and refuses it, so that nothing waits for jobs.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "srun": "exit 0",
        "sbatch": 'cp "$1" "$SBATCH_CAPTURE"\necho "sbatch: error: a test double" >&2\nexit 1',
    }.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    script = tmp_path / "job.sh"
    sweep = tmp_path / "sweep"
    result = experiments_run(
        "-m",
        "seed=0,1,2",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.account=nas",
        "hydra.launcher.timeout_min=90",
        "hydra.launcher.array_parallelism=2",
        *cheap(table),
        f"hydra.sweep.dir={sweep}",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SBATCH_CAPTURE": str(script)},
        timeout=120,
    )
    assert result.returncode == 1  # the stand-in refused it
    assert "sbatch: error: a test double" in result.stdout + result.stderr
    lines = set(script.read_text().splitlines())
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=nas",
        "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32GB",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --array=0-2%2",  # three jobs, two at a time
        "#SBATCH --job-name=run",
    ):
        assert line in lines, line
    # submitit's logs and pickles under the sweep directory; this very interpreter runs
    # the job (the same virtualenv on the compute node).
    assert f"#SBATCH --output={sweep}/.submitit/%A_%a/%A_%a_0_log.out" in lines
    assert any(f"{sys.executable} -u -m submitit.core._submit" in line for line in lines)
    # Nothing ran: no run directory.
    assert not [p for p in sweep.iterdir() if (p / "config.yaml").exists()]


def test_submitit_local_runs_a_job(table, tmp_path):
    result = experiments_run(
        "-m",
        "seed=1",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        *cheap(table),
        f"hydra.sweep.dir={tmp_path}",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = job_dirs(tmp_path).values()
    assert run_dir.name == "0_nasbench201-cifar10_llmatic_seed1"
    assert json.loads((run_dir / "summary.json").read_text())["evaluations"] == BUDGET
    logs = list((tmp_path / ".submitit").glob("*/*_log.out"))
    assert logs and "Job completed successfully" in logs[0].read_text()
