"""The default experiment, run as a user runs it, with the real embedded model."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_default_run_with_a_tiny_budget_writes_every_file(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "search.budget=4",
            "search.init_children=3",
            "search.batch_size=3",
            "benchmark.epochs=1",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (
        "config.yaml",
        "candidates.jsonl",
        "metrics.csv",
        "summary.json",
        "run.log",
        "archives/network.pkl",
        "archives/prompts.pkl",
        "plots/network_archive.png",
        "plots/prompt_archive.png",
        "plots/progress.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluations"] == 4
    assert summary["llm_tokens"] > 0, "the real model generated nothing"
    candidates = [
        json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()
    ]
    made = [c for c in candidates if c["operator"] in ("init", "mutation", "crossover")]
    assert made and all(c["generation_tokens"] > 0 for c in made)
    # Constrained decoding: every sample of the embedded model is a valid cell.
    assert all(c["status"] != "failed" for c in made), [c["error"] for c in made]
    log = (run_dir / "run.log").read_text()
    assert "evals 4/4" in log
    assert re.search(r"llm: smollm2-135m on (cpu|cuda\S*) in (bfloat16|float32)", log)


@pytest.mark.slow
def test_the_freeform_quickstart_writes_valid_networks_with_the_embedded_model(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "+exp=freeform_digits",
            "search.budget=8",
            "search.init_children=4",
            "search.batch_size=4",
            "benchmark.epochs=1",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("plots/network_archive.png", "plots/prompt_archive.png"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluations"] == 8
    # Under the network-code grammar every sample of SmolLM2-135M builds and trains
    # (free, it writes almost none).
    assert summary["valid_code_rate"] == 1.0
    candidates = [
        json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()
    ]
    made = [c for c in candidates if c["operator"] in ("init", "mutation", "crossover")]
    assert made and all(c["code"].startswith("class Net(nn.Module):") for c in made)
    assert summary["network_archive"]["filled_cells"] >= 2


def test_a_bad_config_value_stops_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "experiments.run", "search.budget=-1", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "search.budget must be > 0" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_an_unreachable_llm_server_stops_with_one_line_and_keeps_the_run(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.run",
            "llm=openai",
            f"llm.base_url=http://127.0.0.1:{port}/v1",
            "llm.max_retries=0",
            "search.budget=3",
            "benchmark.epochs=1",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-2000:]
    assert "Traceback" not in output
    assert f"resume={tmp_path}" in output
    # The seed network was evaluated before the first LLM call: it is on disk.
    assert (tmp_path / "checkpoint.pkl").is_file() and (tmp_path / "summary.json").is_file()
