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

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from ribs.archives import GridArchive
from ribs.schedulers import Scheduler

from llmatic.archives import PromptArchive, make_network_archive
from llmatic.benchmarks.base import Benchmark
from llmatic.benchmarks.digits import DigitsBenchmark
from llmatic.candidate import CandidateStore
from llmatic.checkpoint import CHECKPOINT_FILE, Checkpointer, Search, SearchState
from llmatic.checkpoint import load as load_checkpoint
from llmatic.checkpoint import read_header as read_checkpoint_header
from llmatic.checkpoint import restore as restore_checkpoint
from llmatic.devices import resolve_device
from llmatic.emitters import (
    CuriosityRule,
    LLMCrossoverEmitter,
    LLMInitialEmitter,
    LLMMutationEmitter,
    RandomSearchEmitter,
    RegularizedEvolutionEmitter,
    TemperatureRule,
)
from llmatic.errors import ENVIRONMENT_KINDS
from llmatic.evaluation import Evaluator
from llmatic.llm.base import LLMBackend
from llmatic.prompting import PromptSettings
from llmatic.recording import RunRecorder, summarize
from llmatic.sandbox import Sandbox, SandboxLimits
from llmatic.search.fail_fast import DEFAULT_AFTER, FailFast
from llmatic.search.loop import IterationStats, run_search
from llmatic.search.scheduler import EvaluatedOnlyScheduler
from llmatic.spaces import SearchSpace

log = logging.getLogger(__name__)

#: Modules the sandbox's zygote imports once, so that no evaluation imports them again
#: (the search space adds its own: ``SearchSpace.sandbox_preload``).
BENCHMARK_PRELOAD = (
    "llmatic.benchmarks.digits",
    "llmatic.benchmarks._digits_data",
    "llmatic.measures",
    "llmatic.training",
)


SEARCHES = ("llmatic", "random", "rea")
BENCHMARKS = ("digits", "nasbench201")
#: ``scripted`` is a fake for tests and benchmarks (:mod:`llmatic.debug_llm`).
LLM_BACKENDS = ("transformers", "openai", "scripted")


class ConfigError(ValueError):
    """A config value is wrong; the message says which and how to fix it."""


def sandbox_limits(cfg: DictConfig) -> SandboxLimits:
    """``SandboxLimits`` from the ``sandbox`` group (each key a field of it).

    Raises:
        ConfigError: An unknown key or a bad value, in one line.
    """
    settings = OmegaConf.to_container(cfg.sandbox, resolve=True)
    known = {field.name for field in dataclasses.fields(SandboxLimits)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"sandbox.{unknown[0]} is unknown; use one of {sorted(known)}")
    try:
        return SandboxLimits(**settings)
    except ValueError as err:
        raise ConfigError(str(err).replace("SandboxLimits.", "sandbox.")) from None


def validate_config(cfg: DictConfig) -> None:
    """Checks what would otherwise fail late; raises ConfigError with one clear line."""
    sandbox_limits(cfg)
    search = cfg.search
    if search.name not in SEARCHES:
        raise ConfigError(f"search={search.name!r} is unknown; use one of {list(SEARCHES)}")
    if cfg.benchmark.name not in BENCHMARKS:
        raise ConfigError(
            f"benchmark={cfg.benchmark.name!r} is unknown; use one of {list(BENCHMARKS)}"
        )
    if cfg.benchmark.name == "nasbench201":
        datasets = ("cifar10", "cifar100", "imagenet16")
        if cfg.benchmark.dataset not in datasets:
            raise ConfigError(
                f"benchmark.dataset={cfg.benchmark.dataset!r} is unknown; use one of {datasets}"
            )
        if str(cfg.benchmark.fidelity) not in ("200", "12"):
            raise ConfigError(f"benchmark.fidelity must be 200 or 12, got {cfg.benchmark.fidelity}")
    if search.budget <= 0:
        raise ConfigError(f"search.budget must be > 0, got {search.budget}")
    if search.batch_size < 1:
        raise ConfigError(f"search.batch_size must be >= 1, got {search.batch_size}")
    if cfg.output.checkpoint_every < 1:
        raise ConfigError(
            f"output.checkpoint_every must be >= 1, got {cfg.output.checkpoint_every}"
        )
    after = (cfg.get("fail_fast") or {}).get("after", DEFAULT_AFTER)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ConfigError(f"fail_fast.after must be an integer >= 0 (0: off), got {after!r}")
    for name in ("width_to_depth_range", "log10_flops_range"):
        low, high = cfg.benchmark.archive[name]
        if not low < high:
            raise ConfigError(
                f"benchmark.archive.{name} must be [low, high] with low < high, got {[low, high]}"
            )
    space = build_space(cfg)
    if search.name != "llmatic" and not space.has_baseline_moves:
        raise ConfigError(
            f"search={search.name} needs a space with baseline moves; {space.name} has none yet"
        )
    if space.evaluates_code and cfg.benchmark.name != "digits":
        raise ConfigError(
            f"space={space.name} trains each candidate's own code: use benchmark=digits "
            f"(benchmark={cfg.benchmark.name} scores arch strings only)"
        )
    if search.name == "llmatic":
        try:
            space.stop(scope=cfg.llm.scope)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    # Device requests fail here, not after minutes of setup (or inside a sandboxed child).
    devices = [("benchmark.device", cfg.benchmark.get("device"))]
    if search.name == "llmatic" and cfg.llm.backend == "transformers":
        devices.append(("llm.device", cfg.llm.device))
        from llmatic.llm.transformers_backend import resolve_dtype

        try:
            resolve_dtype(cfg.llm.dtype, "cpu")
        except ValueError as err:
            raise ConfigError(f"llm.dtype: {err}") from None
    for key, device in devices:
        if device is not None:
            try:
                resolve_device(device)
            except ValueError as err:
                raise ConfigError(f"{key}: {err}") from None
    if search.name == "llmatic":
        if cfg.llm.backend not in LLM_BACKENDS:
            raise ConfigError(
                f"llm.backend={cfg.llm.backend!r} is unknown; use one of {list(LLM_BACKENDS)}"
            )
        if not 0.0 <= search.mutation_share <= 1.0:
            raise ConfigError(
                f"search.mutation_share must be in [0, 1], got {search.mutation_share}"
            )
        t = search.temperature
        if not 0 < t.low <= t.initial <= t.high:
            raise ConfigError(
                "search.temperature needs 0 < low <= initial <= high, "
                f"got {t.low}, {t.initial}, {t.high}"
            )
        if not cfg.prompts.mutation:
            raise ConfigError("prompts.mutation must list at least one instruction")


#: Config keys a resumed run may change on the command line: how it runs, not what it
#: searches (``output`` covers ``output.plots`` and the others).
RESUME_MAY_CHANGE = (
    "output",
    "sandbox",
    "fail_fast",
    "benchmark.table",
    "llm.cache_dir",
    "llm.num_threads",
    "llm.base_url",
    "llm.api_key_env",
    "llm.timeout_s",
    "llm.max_retries",
    "llm.max_concurrency",
)


def resume_config(run_dir: str | Path, cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The config that resumes the run in ``run_dir``: the run's own ``config.yaml``.

    The command line's values of :data:`RESUME_MAY_CHANGE` go on top of it; an override
    of anything else must repeat the run's value (re-running the run's own command line
    with ``resume=`` added is fine).

    Args:
        run_dir: The run directory.
        cfg: The config composed from the command line.
        overrides: The command line's overrides (``key=value``; ``resume=`` among them).

    Raises:
        ConfigError: ``run_dir`` has no ``config.yaml``, or an override changes the run.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"resume={run_dir}: no config.yaml there; give the directory of a run that "
            "experiments.run made"
        )
    saved = OmegaConf.load(path)
    ours = _flatten(OmegaConf.to_container(saved, resolve=True))
    theirs = _flatten(OmegaConf.to_container(cfg, resolve=True))
    changed: list[str] = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        if key == "resume" or _covers(("hydra",), key):
            continue
        if _covers(RESUME_MAY_CHANGE, key):
            value = OmegaConf.select(cfg, key)
            log.info("resume: %s=%s (the run had %s)", key, value, OmegaConf.select(saved, key))
            OmegaConf.update(saved, key, value, merge=False)
            continue
        # A key or a group compares its leaves; anything else (+exp=NAME) all of them.
        known = any(_covers((key,), k) for k in theirs)
        for name in sorted(set(ours) | set(theirs)):
            if name == "resume" or _covers(RESUME_MAY_CHANGE, name):
                continue
            if (not known or _covers((key,), name)) and ours.get(name) != theirs.get(name):
                changed.append(f"{name} ({ours.get(name)!r} -> {theirs.get(name)!r})")
    if changed:
        changed = list(dict.fromkeys(changed))
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        raise ConfigError(
            f"resume={run_dir}: the command line changes {shown} from the run's "
            f"config.yaml; a resumed run keeps its config (only {', '.join(RESUME_MAY_CHANGE)} "
            "may change): drop those overrides"
        )
    return saved


def _flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, object] = {}
    for name, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{name}" if prefix else str(name)))
    return flat


def _covers(prefixes: Sequence[str], key: str) -> bool:
    """Whether ``key`` is one of ``prefixes`` or lies under one."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def build_space(cfg: DictConfig) -> SearchSpace:
    """The search space that the ``space`` group names (its ``_target_``).

    Raises:
        ConfigError: The space refuses its settings, in one line.
    """
    try:
        return instantiate(cfg.space)
    except InstantiationException as err:
        raise ConfigError(f"space: {err.__cause__ or err}") from None


def build_llm(cfg: DictConfig, *, space: SearchSpace | None = None) -> LLMBackend:
    """The configured LLM backend (loaded once per process); ``space`` gives its stops."""
    stop = (space or build_space(cfg)).stop(scope=cfg.llm.scope)
    if cfg.llm.backend == "scripted":
        from llmatic.debug_llm import ScriptedDebugLLM

        return ScriptedDebugLLM(
            seed=cfg.seed,
            broken=cfg.llm.broken,
            delay_s=cfg.llm.delay_s,
            stop=stop,
        )
    if cfg.llm.backend == "openai":
        from llmatic.llm.openai_backend import OpenAICompatibleLLM

        return OpenAICompatibleLLM(
            base_url=cfg.llm.base_url,
            model=cfg.llm.model,
            api_key_env=cfg.llm.api_key_env,
            endpoint=cfg.llm.endpoint,
            max_new_tokens=cfg.llm.max_new_tokens,
            stop=stop,
            max_concurrency=cfg.llm.max_concurrency,
            timeout_s=cfg.llm.timeout_s,
            max_retries=cfg.llm.max_retries,
            seed=cfg.seed,
        )
    if cfg.llm.backend != "transformers":
        raise ConfigError(
            f"llm.backend={cfg.llm.backend!r} is unknown; use one of {list(LLM_BACKENDS)}"
        )
    from llmatic.llm.transformers_backend import TransformersLLM

    llm = TransformersLLM(
        model=cfg.llm.model,
        cache_dir=cfg.llm.cache_dir,
        device=cfg.llm.device,
        dtype=cfg.llm.dtype,
        max_new_tokens=cfg.llm.max_new_tokens,
        num_threads=cfg.llm.num_threads,
        stop=stop,
        batch_size=cfg.llm.batch_size,
        seed=cfg.seed,
        top_p=cfg.llm.top_p,
    )
    # `auto` resolves per machine: the log says what this run sampled with.
    dtype = str(llm.dtype).removeprefix("torch.")
    log.info("llm: %s on %s in %s", cfg.llm.model, llm.device, dtype)
    return llm


def build_benchmark(cfg: DictConfig, sandbox: Sandbox) -> Benchmark:
    """The benchmark that ``benchmark.name`` names."""
    bench = cfg.benchmark
    if bench.name == "digits":
        return DigitsBenchmark(
            sandbox=sandbox,
            channels=bench.channels,
            cells_per_stage=bench.cells_per_stage,
            epochs=bench.epochs,
            batch_size=bench.batch_size,
            lr=bench.lr,
            weight_decay=bench.weight_decay,
            seed=bench.train_seed,
            device=bench.device,
        )
    if bench.name == "nasbench201":
        from llmatic.benchmarks.nasbench201 import NasBench201Benchmark, NasBench201Table

        try:
            table = NasBench201Table.load(bench.table)
        except (FileNotFoundError, ValueError) as err:
            raise ConfigError(f"benchmark.table: {err}") from None
        return NasBench201Benchmark(
            table=table,
            dataset=bench.dataset,
            fidelity=str(bench.fidelity),
        )
    raise AssertionError(bench.name)  # validate_config checked the name


def build_fail_fast(cfg: DictConfig) -> FailFast | None:
    """The configured :class:`FailFast` (None when both its rules are off).

    A run's ``config.yaml`` from before ``fail_fast`` existed gets the defaults.
    """
    conf = cfg.get("fail_fast") or {}
    seed, after = bool(conf.get("seed", True)), int(conf.get("after", DEFAULT_AFTER))
    if not seed and after == 0:
        return None
    return FailFast(seed=seed, after=after, hint=lambda kind, seed: failure_hint(cfg, kind, seed))


def failure_hint(cfg: DictConfig, kind: str, seed: bool) -> str:
    """What to change when the setup fails with ``kind`` (``seed``: the seed failed)."""
    sandbox, bench = cfg.sandbox, cfg.benchmark
    if kind == "out_of_memory":
        return (
            f"sandbox.memory_mb={sandbox.memory_mb} is too small for one evaluation; raise it "
            "(e.g. sandbox.memory_mb=8192)"
        )
    if kind == "timeout":
        return (
            f"sandbox.wall_time_s={sandbox.wall_time_s} is too short for one evaluation; raise it"
        )
    if kind == "training_error":
        return (
            f"training fails on benchmark={bench.name}: see the error in candidates.jsonl and "
            f"check the benchmark's settings (benchmark.device={bench.get('device')})"
        )
    if kind in ENVIRONMENT_KINDS:
        return (
            "the sandbox or the benchmark is broken: see the error in candidates.jsonl and "
            f"check the sandbox limits (sandbox.memory_mb={sandbox.memory_mb}, "
            f"sandbox.wall_time_s={sandbox.wall_time_s}), benchmark.device="
            f"{bench.get('device')} and the benchmark's data"
        )
    # Only the seed's failure stops a run for a kind that blames the code (FailFast).
    seed_arch = cfg.get("space", {}).get("seed_arch")
    seed_network = (
        f"benchmark.seed_arch={seed_arch}"
        if seed_arch is not None
        else f"the seed network of {cfg.space.get('_target_', 'the space')}"
    )
    return (
        f"benchmark={bench.name} cannot map or score {seed_network}: check it and the "
        "benchmark's data"
    )


def build_phases(
    cfg: DictConfig,
    *,
    network_archive: GridArchive,
    store: CandidateStore,
    evaluator: Evaluator,
    llm: LLMBackend | None,
) -> tuple[
    list[tuple[str, Scheduler, Callable[[], bool]]], PromptArchive | None, LLMBackend | None
]:
    """The search's phases ``(name, scheduler, done)``, its prompt archive and its LLM.

    ``search.name`` picks LLMatic (initial phase, then mutation + crossover) or a
    baseline (random search, REA), which needs neither LLM nor prompt archive.
    """
    search, seed, space = cfg.search, cfg.seed, evaluator.space
    if search.name == "random":
        emitter = RandomSearchEmitter(
            network_archive, space=space, store=store, batch_size=search.batch_size, seed=seed
        )
        return (
            [("random", EvaluatedOnlyScheduler(network_archive, [emitter]), lambda: False)],
            None,
            None,
        )
    if search.name == "rea":
        emitter = RegularizedEvolutionEmitter(
            network_archive,
            space=space,
            store=store,
            batch_size=search.batch_size,
            population_size=search.population_size,
            tournament_size=search.tournament_size,
            seed=seed,
        )
        return (
            [("rea", EvaluatedOnlyScheduler(network_archive, [emitter]), lambda: False)],
            None,
            None,
        )
    llm = llm if llm is not None else build_llm(cfg, space=space)
    settings = PromptSettings(
        mutation_prompts=list(cfg.prompts.mutation),
        crossover_prompt=cfg.prompts.crossover,
        scope=cfg.llm.scope,
        prompt_format=cfg.llm.prompt_format,
        chat_template=getattr(llm, "format_chat", None),
        constrained=cfg.llm.constrained,
    )
    avoid = evaluator.evaluated_keys if search.avoid_evaluated else frozenset()
    prompter = space.prompter(settings, avoid=avoid)
    prompt_archive = PromptArchive(
        prompts=[*prompter.mutation_prompts, prompter.crossover_prompt],
        temperature_bins=search.temperature_bins,
        temperature_range=(search.temperature.low, search.temperature.high),
        seed=seed,
    )
    shared = {
        "prompt_archive": prompt_archive,
        "store": store,
        "llm": llm,
        "prompter": prompter,
        "curiosity": CuriosityRule(**search.curiosity),
        "temperature": TemperatureRule(**search.temperature),
    }
    initial = LLMInitialEmitter(
        network_archive,
        seed_code=space.seed_code(),
        batch_size=search.init_children,
        seed=seed,
        **shared,
    )
    num_mutation = round(search.batch_size * search.mutation_share)
    mutation = LLMMutationEmitter(
        network_archive,
        batch_size=num_mutation,
        parents_top_k=search.parents_top_k,
        prompts_top_k=search.prompts_top_k,
        explore=search.explore,
        seed=seed + 1,
        **shared,
    )
    crossover = LLMCrossoverEmitter(
        network_archive, batch_size=search.batch_size - num_mutation, seed=seed + 2, **shared
    )
    phases = [
        ("init", EvaluatedOnlyScheduler(network_archive, [initial]), lambda: initial.done),
        ("main", EvaluatedOnlyScheduler(network_archive, [mutation, crossover]), lambda: False),
    ]
    return phases, prompt_archive, llm


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
    start = time.perf_counter() - (state.run_seconds if state else 0.0)
    recorder = RunRecorder(run_dir)
    if state is None:
        (recorder.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        checkpoint_path.unlink(missing_ok=True)  # a stale one from an earlier run here
    store = CandidateStore(path=recorder.run_dir / "candidates.jsonl")
    search, bench = cfg.search, cfg.benchmark
    limits = sandbox_limits(cfg)
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
    with Sandbox(limits=limits, preload=(*space.sandbox_preload, *BENCHMARK_PRELOAD)) as sandbox:
        evaluator = Evaluator(space=space, sandbox=sandbox, benchmark=build_benchmark(cfg, sandbox))
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
            )
        finally:
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
            summary["checkpoint"] = checkpointer.report()
            recorder.write_summary(summary)
    if cfg.output.plots:
        from llmatic.plotting import plot_run

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
