"""Retrain a run's best networks longer, over several seeds, and report their test accuracy.

The search ranks networks by validation accuracy after a short training budget; a paper
reports what the best of them reach when trained properly. :func:`retrain_run` takes a
finished (or stopped) run directory, picks the ``top`` evaluated networks by validation
accuracy, trains each again with a longer budget under several seeds (in the sandbox, on
the run's own benchmark and space, exactly as the search trained them but for the budget
and the seed), and writes:

- ``retrain.md``: a table, one row per network: search validation accuracy, test accuracy
  mean ± std over seeds, validation accuracy mean ± std, parameters, FLOPs, training
  seconds;
- ``retrain.csv``: one row per (network, seed);
- ``retrain.png``: validation accuracy against FLOPs over every evaluated network of the
  run, with the retrained networks' test accuracy (mean ± std) on top.

Test accuracy is read here for the report only; the ranking uses validation accuracy.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmatic.errors import CandidateError, ConfigError

#: Where the training budget of each trained benchmark lives in the config.
EPOCHS_KEY = {"digits": "benchmark.epochs", "cifar": "benchmark.train.epochs"}


@dataclass(frozen=True)
class RetrainRow:
    """One network trained under one seed (``error`` set when the training failed)."""

    candidate_id: int
    seed: int
    search_val: float
    val: float | None
    test: float | None
    params: float | None
    flops: float | None
    seconds: float | None
    error: str | None = None


def pick_top(run_dir: Path, top: int) -> list[dict]:
    """The ``top`` evaluated candidates by validation accuracy (one per network key)."""
    rows = [
        json.loads(line)
        for line in (run_dir / "candidates.jsonl").read_text().splitlines()
        if line.strip()
    ]
    evaluated = [r for r in rows if r["status"] == "evaluated" and r["objective"] is not None]
    evaluated.sort(key=lambda r: (-r["objective"], r["id"]))  # ties: the earliest
    return evaluated[:top]


def retrain_run(
    run_dir: Path,
    *,
    top: int = 5,
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: float | None = None,
    device: str | None = None,
    out_dir: Path | None = None,
) -> list[RetrainRow]:
    """Retrains the run's ``top`` networks under each seed; writes the report files.

    Args:
        run_dir: A run directory (its ``config.yaml`` and ``candidates.jsonl``).
        top: How many networks, best validation accuracy first.
        seeds: Training seeds (weights, data order, augmentation).
        epochs: The longer budget; None: three times the run's.
        device: Overrides ``benchmark.device`` (``cpu``, ``cuda``, ``auto``).
        out_dir: Where the report goes; None: ``run_dir / "retrain"``.

    Returns:
        One row per network and seed, in the order trained.

    Raises:
        ConfigError: The run's benchmark does not train networks (a table look-up), or
            ``top`` / ``seeds`` are empty.
        FileNotFoundError: ``run_dir`` lacks ``config.yaml`` or ``candidates.jsonl``.
    """
    from llmatic.run.build import benchmark_sandbox, build_benchmark, build_space
    from llmatic.run.config import sandbox_limits
    from llmatic.sandbox import Sandbox

    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert isinstance(cfg, DictConfig)
    if cfg.benchmark.name not in EPOCHS_KEY:
        raise ConfigError(
            f"benchmark={cfg.benchmark.name} scores networks by table look-up: there is "
            "nothing to retrain (its table already holds the long-budget accuracies)"
        )
    if top < 1 or not seeds:
        raise ConfigError("--top must be >= 1 and --seeds must name at least one seed")
    key = EPOCHS_KEY[cfg.benchmark.name]
    budget = float(epochs if epochs is not None else 3 * OmegaConf.select(cfg, key))
    OmegaConf.update(cfg, key, budget if cfg.benchmark.name == "cifar" else math.ceil(budget))
    if device is not None:
        OmegaConf.update(cfg, "benchmark.device", device)
    chosen = pick_top(run_dir, top)
    space = build_space(cfg)
    preload, setup = benchmark_sandbox(cfg)
    rows: list[RetrainRow] = []
    with Sandbox(
        limits=sandbox_limits(cfg), preload=(*space.sandbox_preload, *preload), setup=setup
    ) as box:
        for seed in seeds:
            OmegaConf.update(cfg, "benchmark.train_seed", seed)
            bench = build_benchmark(cfg, box)
            for candidate in chosen:
                rows.append(_train_one(space, bench, candidate, seed))
    out_dir = out_dir or run_dir / "retrain"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(rows, run_dir=run_dir, out_dir=out_dir, epochs=budget, seeds=seeds)
    return rows


def _train_one(space, bench, candidate: dict, seed: int) -> RetrainRow:
    base = {"candidate_id": candidate["id"], "seed": seed, "search_val": candidate["objective"]}
    try:
        result = space.evaluate(benchmark=bench, key=candidate["arch"], code=candidate["code"])
    except CandidateError as err:
        none = dict.fromkeys(("val", "test", "params", "flops", "seconds"))
        return RetrainRow(**base, **none, error=f"{err.kind}: {err.message}"[:200])
    return RetrainRow(
        **base,
        val=result.objective,
        test=result.test_objective,
        params=result.measures.get("params"),
        flops=result.measures.get("flops"),
        seconds=result.seconds,
    )


def _mean_std(values: list[float]) -> str:
    if not values:
        return "failed"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def write_report(
    rows: list[RetrainRow], *, run_dir: Path, out_dir: Path, epochs: float, seeds: tuple
) -> None:
    """``retrain.md``, ``retrain.csv`` and ``retrain.png`` in ``out_dir``."""
    with (out_dir / "retrain.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(RetrainRow.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
            writer.writerow(row.__dict__)
    ids = list(dict.fromkeys(row.candidate_id for row in rows))
    lines = [
        f"# Retrained: the {len(ids)} best networks of `{run_dir}`",
        "",
        f"{epochs:g} epochs, seeds {', '.join(map(str, seeds))}; mean ± std over the seeds "
        "that trained. Ranked by the search's validation accuracy; test accuracy is read "
        "here only.",
        "",
        "| candidate | search val (%) | test (%) | val (%) | params | MFLOPs | train s | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cid in ids:
        mine = [r for r in rows if r.candidate_id == cid]
        good = [r for r in mine if r.error is None]
        first = good[0] if good else mine[0]
        lines.append(
            f"| {cid} | {mine[0].search_val:.2f} | {_mean_std([r.test for r in good])} | "
            f"{_mean_std([r.val for r in good])} | "
            f"{'' if first.params is None else f'{first.params:,.0f}'} | "
            f"{'' if first.flops is None else f'{first.flops / 1e6:,.2f}'} | "
            f"{_mean_std([r.seconds for r in good]) if good else ''} | "
            f"{len(mine) - len(good)} |"
        )
    (out_dir / "retrain.md").write_text("\n".join(lines) + "\n")
    _plot(rows, run_dir=run_dir, path=out_dir / "retrain.png")


def _plot(rows: list[RetrainRow], *, run_dir: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmatic.analysis.plotting import save_figure

    evaluated = [
        json.loads(line)
        for line in (run_dir / "candidates.jsonl").read_text().splitlines()
        if line.strip()
    ]
    evaluated = [r for r in evaluated if r["status"] == "evaluated" and r["measures"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.scatter(
        [r["measures"]["flops"] for r in evaluated],
        [r["objective"] for r in evaluated],
        s=12,
        alpha=0.5,
        label="search: validation accuracy",
    )
    for cid in dict.fromkeys(r.candidate_id for r in rows):
        good = [r for r in rows if r.candidate_id == cid and r.error is None]
        if not good:
            continue
        tests = [r.test for r in good]
        std = statistics.stdev(tests) if len(tests) > 1 else 0.0
        ax.errorbar(
            good[0].flops, statistics.fmean(tests), yerr=std, fmt="o", color="C3", capsize=3
        )
    ax.plot([], [], "o", color="C3", label="retrained: test accuracy (mean ± std)")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per image")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="lower right")
    ax.set_title(f"{run_dir.name}: accuracy against FLOPs")
    save_figure(fig, path)
