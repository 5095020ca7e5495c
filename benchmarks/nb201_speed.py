"""Evaluations per minute of a LLMatic NAS-Bench-201 search, and where the time goes.

Runs ``python -m experiments.run +exp=nasbench201`` (embedded model, CIFAR-10) with the
budget given (default the headline 2,000 evaluations), then reads the run's
``summary.json``: wall time, evaluations per minute, LLM samples and tokens, and the share
of time in generation (the LLM), isolation (sandboxed code -> arch mapping), the table
lookup, and bookkeeping (archives, emitters, logs: the rest).

Usage::

    python -m benchmarks.nb201_speed [--budget 2000] [--seed 0] [--table PATH] [-- OVERRIDES]
    python -m benchmarks.nb201_speed --run-dir RUN_DIR [RUN_DIR ...]  # finished runs

Figures go to ``benchmarks/results/nb201_speed.{json,md}``; the run itself to
``runs/bench_nb201_speed/``. The NB201 table defaults to the shared test copy,
``../shared/data/nasbench201/nb201.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nasbench201" / "nb201.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument(
        "--run-dir",
        type=Path,
        nargs="+",
        help="read finished NB201 runs (search-loop time) instead of starting one",
    )
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for the run")
    args = parser.parse_args(argv)
    if args.run_dir is not None:
        runs = []
        for run_dir in args.run_dir:
            summary = json.loads((run_dir / "summary.json").read_text())
            name = f"{run_dir.parent.name}/{run_dir.name}"
            runs.append((name, summary, summary["seconds"]["total"]))
        return report(runs)
    run_dir = ROOT / "runs" / "bench_nb201_speed"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "experiments.run",
        "+exp=nasbench201",
        f"benchmark.table={args.table.resolve()}",
        f"search.budget={args.budget}",
        f"seed={args.seed}",
        f"hydra.run.dir={run_dir}",
        *args.overrides,
    ]
    print(" ".join(command), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    start = time.perf_counter()
    rc = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    wall = time.perf_counter() - start
    if rc != 0:
        print(f"the run failed (exit {rc}); see {run_dir}/run.log", file=sys.stderr)
        return rc
    summary = json.loads((run_dir / "summary.json").read_text())
    return report([(run_dir.name, summary, wall)])


def figures(summary: dict, *, wall: float) -> dict:
    """The speed figures of one run's ``summary.json``; ``wall`` in seconds."""
    seconds = summary["seconds"]
    loop = seconds["total"]
    return {
        "budget": summary["budget"],
        "evaluations": summary["evaluations"],
        "candidates": summary["candidates"],
        "duplicates": summary["status_counts"].get("duplicate", 0),
        "valid_code_rate": summary["valid_code_rate"],
        "wall_minutes": wall / 60,
        "search_minutes": loop / 60,
        "evaluations_per_minute": summary["evaluations"] / (wall / 60),
        "llm_samples_per_minute": summary["llm_candidates"] / (seconds["llm"] / 60),
        "llm_tokens_per_second": summary["llm_tokens"] / seconds["llm"],
        "share": {
            "generation": seconds["llm"] / loop,
            "isolation": seconds["inspect_code"] / loop,
            "table_lookup": seconds["benchmark"] / loop,
            "bookkeeping": seconds["other"] / loop,
        },
        "best_test_accuracy": summary["best"]["test_accuracy"],
    }


def report(runs: list[tuple[str, dict, float]]) -> int:
    """Writes the figures of ``(name, summary, wall seconds)`` runs, one row each, to
    ``benchmarks/results/nb201_speed.{json,md}`` (with a mean row for several)."""
    rows = [(name, figures(summary, wall=wall)) for name, summary, wall in runs]
    result = {
        "command": " ".join(["python -m benchmarks.nb201_speed", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": {name: row for name, row in rows},
    }
    if len(rows) > 1:
        result["mean"] = _mean([row for _, row in rows])
        rows.append(("mean", result["mean"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nb201_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "| run | evaluations | wall (min) | evals/min | candidates (dup) | LLM samples/min | "
        "generation | isolation | lookup | bookkeeping |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows:
        share = row["share"]
        lines.append(
            f"| {name} | {row['evaluations']:.0f} | {row['wall_minutes']:.1f} | "
            f"{row['evaluations_per_minute']:.1f} | "
            f"{row['candidates']:.0f} ({row['duplicates']:.0f}) | "
            f"{row['llm_samples_per_minute']:.1f} | {share['generation']:.0%} | "
            f"{share['isolation']:.1%} | {share['table_lookup']:.1%} | "
            f"{share['bookkeeping']:.1%} |"
        )
    table = "\n".join(lines)
    (RESULTS / "nb201_speed.md").write_text(f"`{result['command']}`\n\n{table}\n")
    print(table)
    return 0


def _mean(rows: list[dict]) -> dict:
    """Field-wise mean of figure dicts (nested ``share`` included)."""
    mean: dict = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            mean[key] = _mean([row[key] for row in rows])
        elif isinstance(value, int | float):
            mean[key] = sum(row[key] for row in rows) / len(rows)
    return mean


if __name__ == "__main__":
    sys.exit(main())
