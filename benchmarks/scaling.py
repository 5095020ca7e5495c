"""Evaluations per minute with 1, 2 and 8 workers, and where the LLM becomes the bottleneck.

Four measurements, each a real search through ``run_experiment`` (random search unless
said), timed over the search loop (start-up of sandboxes and Ray actors excluded):

1. ``table``: the NB201 table with a fixed artificial training time per evaluation
   (``benchmark.simulated_train_s``), 1 and 2 local workers.
2. ``digits``: the quickstart's digits training, for real, 1 and 2 local workers (one
   torch thread per child; this machine has 2 cores).
3. ``ray``: a simulated cluster, Ray on this machine with 8 workers (a quarter CPU each,
   since they mostly wait) and a fixed training time, against 1 Ray worker.
4. ``llm``: LLMatic with a stand-in LLM that takes a fixed time per call, the table with a
   fixed training time, 1-8 local workers: evaluations run in parallel but the LLM
   writes each batch first, so past a few workers the LLM sets the pace; then the same
   with ``search.overlap=true`` (the LLM writes batch i+1 while batch i trains).

Usage::

    python -m benchmarks.scaling [--table PATH] [--only table digits ray llm]

Figures go to ``benchmarks/results/scaling.{json,md}``; runs to ``runs/bench_scaling/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from llmatic.run import run_experiment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONF = str(ROOT / "conf")
DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nasbench201" / "nb201.csv"
RUNS = ROOT / "runs" / "bench_scaling"


def measure(name: str, overrides: list[str]) -> dict:
    """One search; its evaluations per minute over the search loop."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "output.plots=false"])
    last: list = []
    run_dir = RUNS / name
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    summary = run_experiment(cfg, run_dir, on_iteration=last.append)
    loop_seconds = last[-1].seconds
    # Steady state: from the end of the first iteration on (each worker's first call pays
    # its one-time warm-up, e.g. measuring NB201's macro network parts).
    steady = (
        60 * (last[-1].evaluations - last[0].evaluations) / (last[-1].seconds - last[0].seconds)
        if len(last) > 1
        else float("nan")
    )
    row = {
        "name": name,
        "overrides": overrides,
        "evaluations": summary["evaluations"],
        "loop_seconds": round(loop_seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "evaluations_per_minute": round(60 * summary["evaluations"] / loop_seconds, 2),
        "steady_evaluations_per_minute": round(steady, 2),
        "llm_seconds": round(summary["seconds"]["llm"], 2),
    }
    print(json.dumps(row), flush=True)
    return row


def on_table(table: Path, *, train_s: float, budget: int) -> list[str]:
    """The NB201 table with a fixed artificial training time, batches of 8."""
    return [
        "benchmark=nasbench201",
        f"benchmark.table={table}",
        f"benchmark.simulated_train_s={train_s}",
        "search.batch_size=8",
        f"search.budget={budget}",
    ]


def table_runs(table: Path) -> list[dict]:
    base = [*on_table(table, train_s=1.0, budget=32), "search=random"]
    return [measure(f"table_w{w}", [*base, f"evaluator.workers={w}"]) for w in (1, 2)]


def digits_runs() -> list[dict]:
    base = ["search=random", "search.batch_size=8", "search.budget=24", "sandbox.num_threads=1"]
    return [measure(f"digits_w{w}", [*base, f"evaluator.workers={w}"]) for w in (1, 2)]


def ray_runs(table: Path) -> list[dict]:
    base = [
        *on_table(table, train_s=2.0, budget=48),
        "search=random",
        "evaluator=ray",
        "evaluator.num_cpus=0.25",
        "+evaluator.init_kwargs={num_cpus:2,include_dashboard:false,log_to_driver:false}",
    ]
    return [measure(f"ray_w{w}", [*base, f"evaluator.workers={w}"]) for w in (1, 8)]


def llm_runs(table: Path) -> list[dict]:
    base = [
        *on_table(table, train_s=1.0, budget=48),
        "llm=scripted",
        "llm.delay_s=1.0",
        "llm.broken=0",
        "search.init_children=8",
    ]
    plain = [measure(f"llm_w{w}", [*base, f"evaluator.workers={w}"]) for w in (1, 2, 4, 8)]
    # search.overlap: the LLM writes the next batch while this one trains.
    ahead = [*base, "search.overlap=true", "output.checkpoint_every=1000"]
    return plain + [
        measure(f"llm+overlap_w{w}", [*ahead, f"evaluator.workers={w}"]) for w in (1, 2, 8)
    ]


def report(rows: dict[str, list[dict]]) -> str:
    lines = [
        "# Scaling: evaluations per minute against workers",
        "",
        f"`python -m benchmarks.scaling` on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d')}. Search-loop time (start-up "
        "of sandboxes and Ray actors excluded). Steady: from the end of the first iteration "
        "on, leaving out each worker's one-time warm-up. Speed-up against 1 worker of the "
        "same kind.",
        "",
        "| measurement | workers | evaluations | loop s | evals/min | speed-up | "
        "steady evals/min | steady speed-up | LLM s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in rows.values():
        one = group[0]["evaluations_per_minute"]
        steady_one = group[0]["steady_evaluations_per_minute"]
        for row in group:
            workers = row["name"].rsplit("_w", 1)[1]
            lines.append(
                f"| {row['name'].rsplit('_w', 1)[0]} | {workers} | {row['evaluations']} | "
                f"{row['loop_seconds']:.1f} | {row['evaluations_per_minute']:.1f} | "
                f"{row['evaluations_per_minute'] / one:.2f}x | "
                f"{row['steady_evaluations_per_minute']:.1f} | "
                f"{row['steady_evaluations_per_minute'] / steady_one:.2f}x | "
                f"{row['llm_seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--only", nargs="+", choices=["table", "digits", "ray", "llm"])
    args = parser.parse_args(argv)
    chosen = args.only or ["table", "digits", "ray", "llm"]
    if {"table", "ray", "llm"} & set(chosen) and not args.table.is_file():
        parser.error(f"no NB201 table at {args.table}: pass --table PATH")
    makers = {
        "table": lambda: table_runs(args.table),
        "digits": digits_runs,
        "ray": lambda: ray_runs(args.table),
        "llm": lambda: llm_runs(args.table),
    }
    rows = {name: makers[name]() for name in chosen}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = report(rows)
    (RESULTS / "scaling.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
