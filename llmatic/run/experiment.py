"""From a Hydra config to a finished run directory.

``run_experiment`` builds the pieces the config names (sandbox, benchmark, LLM, archives,
emitters, schedulers), runs :func:`llmatic.search.loop.run_search`, and always leaves the
run's files behind, also when the search stops with an error or Ctrl-C. It checkpoints
the search (:mod:`llmatic.checkpoint`) and, with ``resume=True``, continues a run from
its checkpoint; :func:`resume_config` checks a command line against the run's config.
A run whose setup is broken (the seed network fails, or every evaluation fails the same
way) stops with :class:`~llmatic.search.fail_fast.SearchAborted` (``fail_fast`` in the
config; :func:`failure_hint` says what to do).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmatic.archives import make_network_archive
from llmatic.candidate import CandidateStore
from llmatic.checkpoint import CHECKPOINT_FILE, Checkpointer, Search, SearchState
from llmatic.checkpoint import load as load_checkpoint
from llmatic.checkpoint import read_header as read_checkpoint_header
from llmatic.checkpoint import restore as restore_checkpoint
from llmatic.errors import ConfigError
from llmatic.evaluation import Evaluator
from llmatic.llm.base import LLMBackend
from llmatic.recording import RunRecorder, summarize, summarize_cost, summarize_operators
from llmatic.run.build import (
    build_fail_fast,
    build_phases,
    build_space,
    build_workers,
    weights_dir,
)
from llmatic.run.config import llm_prices, validate_config
from llmatic.search.loop import IterationStats, run_search

log = logging.getLogger(__name__)


def run_experiment(
    cfg: DictConfig,
    run_dir: str | Path,
    *,
    llm: LLMBackend | None = None,
    resume: bool = False,
    on_iteration: Callable[[IterationStats], None] | None = None,
) -> dict:
    """Runs the configured search into ``run_dir``; returns the summary.

    Args:
        cfg: The composed config (``conf/config.yaml``); when resuming, the run's own
            (see :func:`resume_config`).
        run_dir: Where the run's files go.
        llm: A backend to use instead of the configured one (tests pass a scripted one).
        resume: Continue the run in ``run_dir`` from its checkpoint: the files are cut
            back to the checkpoint and the search goes on to the budget. A finished run
            is left as it is (its summary is returned).
        on_iteration: Also called after every iteration (benchmarks, tests).

    Raises:
        ConfigError: A config value is wrong.
        CheckpointError: ``resume`` and the checkpoint is missing or unusable.
        SearchAborted: The setup is broken (the seed network failed, or every evaluation
            failed the same way; see :class:`~llmatic.search.fail_fast.FailFast`). The
            run's files are written as far as it got.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT_FILE
    state: SearchState | None = None
    if resume:
        if read_checkpoint_header(checkpoint_path)["finished"]:
            log.info("%s finished already: nothing to resume", run_dir)
            summary_path = run_dir / "summary.json"
            return json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        state = load_checkpoint(checkpoint_path)
    validate_config(cfg)
    candidates_file = run_dir / "candidates.jsonl"
    if state is None and candidates_file.is_file() and candidates_file.stat().st_size > 0:
        # Its files would be appended to: refuse rather than mix two runs (or delete one).
        raise ConfigError(
            f"{run_dir} holds a run already: resume={run_dir} continues it (when it has a "
            "checkpoint), or choose another directory (hydra.run.dir=...)"
        )
    start = time.perf_counter() - (state.run_seconds if state else 0.0)
    recorder = RunRecorder(run_dir)
    if state is None:
        (recorder.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        checkpoint_path.unlink(missing_ok=True)  # a stale one from an earlier run here
    store = CandidateStore(path=recorder.run_dir / "candidates.jsonl")
    search, bench = cfg.search, cfg.benchmark
    if state is not None:
        network_archive = state.network_archive
    else:
        network_archive = make_network_archive(
            dims=list(bench.archive.dims),
            width_to_depth_range=tuple(bench.archive.width_to_depth_range),
            log10_flops_range=tuple(bench.archive.log10_flops_range),
            seed=cfg.seed,
        )
    space = build_space(cfg)
    weights = weights_dir(cfg, recorder.run_dir)
    if weights is not None:
        log.info("weight inheritance: on (children start from their parent's in %s)", weights)
    with build_workers(cfg, space, weights=weights) as workers:
        evaluator = Evaluator(space=space, workers=workers, inherit_weights=weights is not None)
        phases, prompt_archive, llm = build_phases(
            cfg, network_archive=network_archive, store=store, evaluator=evaluator, llm=llm
        )
        parts = Search(network_archive, prompt_archive, phases, store, evaluator, llm)
        if state is not None:
            restore_checkpoint(parts, state)
            recorder.restore_metrics(state.metrics)
            log.info(
                "resuming %s after iteration %d (%s phase): %d evaluations, %d candidates",
                run_dir,
                state.iteration,
                state.phase,
                evaluator.evaluations,
                len(store),
            )
        checkpointer = Checkpointer(
            checkpoint_path,
            parts,
            every=cfg.output.checkpoint_every,
            metrics=recorder.metrics,
            clock=lambda: time.perf_counter() - start,
            resumed=state,
        )

        def save_archives() -> None:
            recorder.save_archives(
                network_archive, prompt_archive.archive if prompt_archive else None
            )

        def after_iteration(stats: IterationStats) -> None:
            recorder.log_iteration(stats)
            if stats.iteration % cfg.output.snapshot_every == 0:
                save_archives()
            checkpointer.iteration_done(stats)
            if on_iteration is not None:
                on_iteration(stats)

        iterations = None
        try:
            iterations = run_search(
                phases=phases,
                store=store,
                evaluator=evaluator,
                prompt_archive=prompt_archive,
                budget=search.budget,
                max_candidates=search.max_candidates or 10 * search.budget,
                on_iteration=after_iteration,
                start_iteration=state.iteration if state else 0,
                elapsed_seconds=state.metrics[-1].seconds if state and state.metrics else 0.0,
                fail_fast=build_fail_fast(cfg),
                overlap=bool(search.get("overlap", False)),
                drain_every=cfg.output.checkpoint_every,
                stop_objective=search.get("stop_objective"),
            )
        finally:
            evaluator.close(wait=iterations is not None)
            # Whatever happened, keep what was finished.
            store.flush()
            if iterations is not None:
                checkpointer.finish(iterations)
            else:
                checkpointer.close()  # the last finished iteration, if not on disk yet
            save_archives()
            summary = summarize(
                store,
                evaluations=evaluator.evaluations,
                budget=search.budget,
                network=network_archive,
            )
            if prompt_archive is not None:
                summary["prompt_archive"] = {
                    "cells": int(prompt_archive.archive.cells),
                    "filled_cells": len(prompt_archive.archive),
                }
            total = time.perf_counter() - start
            seconds = {
                "llm": getattr(llm, "total_seconds", 0.0),
                "inspect_code": evaluator.inspect_seconds,  # sandboxed code -> key
                "benchmark": evaluator.benchmark_seconds,  # training / table look-up
                "checkpoint": checkpointer.seconds,  # serialising and writing checkpoints
            }
            # Start-up (sandbox, model load), archives, logging: everything else.
            seconds["other"] = total - sum(seconds.values())
            summary["seconds"] = {"total": total, **seconds}
            summary["evaluations_per_minute"] = 60 * evaluator.evaluations / total
            summary["llm_tokens"] = getattr(llm, "total_tokens", None)
            price_in, price_out = llm_prices(cfg)
            summary["cost"] = summarize_cost(
                store,
                evaluations=evaluator.evaluations,
                price_per_million_input=price_in,
                price_per_million_output=price_out,
            )
            summary["operators"] = summarize_operators(store)
            summary["inherit_weights"] = weights is not None
            bandits = [s for _, s, _ in phases if hasattr(s, "selection_report")]
            if bandits:  # what UCB1 chose, and how often each choice paid off
                summary["bandit"] = bandits[0].selection_report()
            summary["checkpoint"] = checkpointer.report()
            recorder.write_summary(summary)
    if cfg.output.plots:
        from llmatic.analysis.plotting import plot_run

        plot_run(recorder.run_dir)
    best = summary["best"]
    log.info(
        "done: %d evaluations, %d candidates in %.0f s; best val %.2f%% (test %.2f%%) %s; "
        "network archive %d/%d cells; files in %s",
        summary["evaluations"],
        summary["candidates"],
        summary["seconds"]["total"],
        best["val_accuracy"] if best else float("nan"),
        best["test_accuracy"] if best else float("nan"),
        best["arch"] if best else "-",
        summary["network_archive"]["filled_cells"],
        summary["network_archive"]["cells"],
        recorder.run_dir,
    )
    return summary
