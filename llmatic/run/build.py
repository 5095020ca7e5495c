"""The parts of a run, built from its config: space, LLM, benchmark, emitters, schedulers.

Each ``build_*`` takes the composed config (``conf/config.yaml``) and returns one part;
:func:`build_phases` wires the emitters and schedulers of the configured search.
:func:`failure_hint` says what to change when the setup fails (see
:mod:`llmatic.search.fail_fast`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from ribs.archives import GridArchive
from ribs.schedulers import Scheduler

from llmatic.archives import PromptArchive
from llmatic.benchmarks.base import Benchmark
from llmatic.benchmarks.digits import DigitsBenchmark
from llmatic.candidate import CandidateStore
from llmatic.emitters import (
    ClassicMutationEmitter,
    CuriosityRule,
    LLMCrossoverEmitter,
    LLMInitialEmitter,
    LLMMutationEmitter,
    LocalSearchEmitter,
    RandomSearchEmitter,
    RegularizedEvolutionEmitter,
    TemperatureRule,
)
from llmatic.errors import ENVIRONMENT_KINDS, ConfigError
from llmatic.evaluation import Evaluator
from llmatic.llm.base import LLMBackend
from llmatic.prompting import PromptSettings
from llmatic.sandbox import Sandbox
from llmatic.search.fail_fast import DEFAULT_AFTER, FailFast
from llmatic.search.scheduler import EvaluatedOnlyBanditScheduler, EvaluatedOnlyScheduler
from llmatic.spaces import SearchSpace
from llmatic.workers import LocalWorkers, Workers

log = logging.getLogger(__name__)

#: What a config may name (``search``, ``benchmark``, ``llm.backend``).
SEARCHES = ("llmatic", "random", "rea", "local")
#: Searches of classic operators only: no LLM, no prompt archive.
BASELINE_SEARCHES = ("random", "rea", "local")
BENCHMARKS = ("digits", "cifar", "nasbench201")
#: Benchmarks that train networks (and so can train a candidate's own code).
TRAINING_BENCHMARKS = ("digits", "cifar")
#: ``scripted`` is a fake for tests and benchmarks (:mod:`llmatic.debug_llm`).
LLM_BACKENDS = ("transformers", "openai", "scripted")

#: Modules the sandbox's zygote imports once, so that no evaluation imports them again
#: (the search space adds its own: ``SearchSpace.sandbox_preload``).
BENCHMARK_PRELOAD = (
    "llmatic.benchmarks.digits",
    "llmatic.benchmarks._digits_data",
    "llmatic.measures",
    "llmatic.training",
)
_CIFAR_PRELOAD = (
    "llmatic.benchmarks.cifar",
    "llmatic.benchmarks._cifar_data",
    "llmatic.fast_training",
    "llmatic.measures",
    "safetensors.torch",  # weight inheritance: a parent's trained weights, without pickle
)


def benchmark_sandbox(cfg: DictConfig) -> tuple[tuple[str, ...], list[tuple[str, dict]]]:
    """What the benchmark needs of the zygote: modules to preload, set-up calls to make.

    CIFAR's zygote loads the data set once (``data.*``), for every child to inherit; with
    ``data.download`` a missing data set is fetched into ``data.root`` first.

    Raises:
        ConfigError: The download failed (the message says how to get the data by hand).
    """
    if cfg.benchmark.name != "cifar":
        return BENCHMARK_PRELOAD, []
    from llmatic.benchmarks._cifar_data import RELEASES, DataError, download_release
    from llmatic.benchmarks.cifar import CifarBenchmark

    release = RELEASES[str(cfg.benchmark.dataset)]
    root = Path(str(cfg.data.root))
    if cfg.data.download and not (root / release.folder).is_dir():
        try:
            download_release(root, release=release)
        except DataError as err:
            raise ConfigError(str(err)) from None

    setup = CifarBenchmark.sandbox_setup(
        root=str(cfg.data.root),
        dataset=str(cfg.benchmark.dataset),
        val_size=int(cfg.data.val_size),
        split_seed=int(cfg.data.split_seed),
    )
    return _CIFAR_PRELOAD, setup


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
            structured_output=cfg.llm.get("structured_output", "none"),
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


def build_prompt_settings(cfg: DictConfig, llm: LLMBackend) -> PromptSettings:
    """How ``llm`` is asked: the ``prompts`` group and the ``llm`` group's prompt keys."""
    return PromptSettings(
        mutation_prompts=list(cfg.prompts.mutation),
        crossover_prompt=cfg.prompts.crossover,
        scope=cfg.llm.scope,
        prompt_format=cfg.llm.prompt_format,
        chat_template=getattr(llm, "format_chat", None),
        constrained=cfg.llm.constrained,
    )


def build_benchmark(
    cfg: DictConfig,
    sandbox: Sandbox,
    *,
    device: str | None = None,
    weights_dir: str | Path | None = None,
) -> Benchmark:
    """The benchmark that ``benchmark.name`` names; ``device`` overrides ``benchmark.device``.

    ``weights_dir``: where CIFAR keeps trained weights for inheritance
    (``benchmark.inherit_weights``; :func:`weights_dir`).
    """
    bench = cfg.benchmark
    device = device or bench.get("device")
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
            device=device,
        )
    if bench.name == "cifar":
        from llmatic.benchmarks.cifar import CifarBenchmark

        return CifarBenchmark(
            sandbox=sandbox,
            dataset=bench.dataset,
            train=OmegaConf.to_container(bench.train, resolve=True),
            seed=bench.train_seed,
            device=device,
            weights_dir=weights_dir,
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
            simulated_train_s=float(bench.get("simulated_train_s", 0.0)),
        )
    raise AssertionError(bench.name)  # validate_config checked the name


def weights_dir(cfg: DictConfig, run_dir: str | Path) -> Path | None:
    """``RUN_DIR/weights`` when ``benchmark.inherit_weights`` is on, else None."""
    return Path(run_dir) / "weights" if cfg.benchmark.get("inherit_weights", False) else None


@contextlib.contextmanager
def build_workers(
    cfg: DictConfig, space: SearchSpace, *, weights: str | Path | None = None
) -> Iterator[Workers]:
    """The workers that identify and score candidates (``evaluator``), closed on exit.

    ``evaluator=local``: one sandbox on this machine (its zygote loads the benchmark's
    data once) and a benchmark per worker, on ``evaluator.devices[i]`` cycled.
    ``evaluator=ray``: one Ray actor per worker, each building its own sandbox and
    benchmark from this config (:mod:`llmatic.workers.ray_pool`). ``weights``: the
    benchmark's folder of trained weights (:func:`weights_dir`); Ray workers on other
    machines need it on a shared file system.

    Raises:
        ConfigError: Ray cannot start, or a worker cannot build its parts.
    """
    from llmatic.run.config import evaluator_settings, sandbox_limits  # config imports us

    settings = evaluator_settings(cfg)
    count, devices = settings["workers"], settings.get("devices") or [None]
    worker_devices = [devices[i % len(devices)] for i in range(count)]
    if settings["name"] == "ray":
        from llmatic.workers.ray_pool import RayWorkers, WorkerFactory

        config = OmegaConf.to_container(cfg, resolve=True)
        workers = RayWorkers(
            factories=[
                WorkerFactory(config, device, None if weights is None else str(weights))
                for device in worker_devices
            ],
            address=settings.get("address"),
            num_cpus=float(settings.get("num_cpus", 1)),
            num_gpus=float(settings.get("num_gpus", 0)),
            init_kwargs=settings.get("init_kwargs") or None,
        )
        try:
            yield workers
        finally:
            workers.close()
        return
    preload, setup = benchmark_sandbox(cfg)
    with Sandbox(
        limits=sandbox_limits(cfg), preload=(*space.sandbox_preload, *preload), setup=setup
    ) as sandbox:
        benchmarks = [
            build_benchmark(cfg, sandbox, device=device, weights_dir=weights)
            for device in worker_devices
        ]
        workers = LocalWorkers(space=space, sandbox=sandbox, benchmarks=benchmarks)
        try:
            yield workers
        finally:
            workers.close()


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

    ``search.name`` picks LLMatic (initial phase, then its emitters: LLM mutation and
    crossover, and a classic mutation with ``search.classic_batch_size`` > 0, all asked
    every iteration or, with ``search.scheduler=bandit``, the ones UCB1 picks) or a
    baseline (random search, REA, local search), which needs neither LLM nor prompt archive.
    """
    search, seed, space = cfg.search, cfg.seed, evaluator.space
    if search.name in BASELINE_SEARCHES:
        emitter = build_baseline(cfg, network_archive, space=space, store=store)
        return (
            [(search.name, EvaluatedOnlyScheduler(network_archive, [emitter]), lambda: False)],
            None,
            None,
        )
    # A pool without LLM children (the classic-only ablation) loads no model.
    if llm is None and (search.batch_size > 0 or search.init_children > 0):
        llm = build_llm(cfg, space=space)
    settings = build_prompt_settings(cfg, llm)
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
        "temperature": TemperatureRule(**search.temperature, horizon=search.budget),
    }
    initial = LLMInitialEmitter(
        network_archive,
        seed_code=space.seed_code(),
        space=space,
        random_seeds=int(search.get("random_seeds", 0)),
        batch_size=search.init_children,
        seed=seed,
        **shared,
    )
    num_mutation, num_crossover = llm_batch_split(search)
    mutation = LLMMutationEmitter(
        network_archive,
        batch_size=num_mutation,
        parents_top_k=search.parents_top_k,
        parents=search.get("mutation_parents", "archive"),
        prompts_top_k=search.prompts_top_k,
        explore=search.explore,
        feedback_elites=int(search.get("feedback_elites", 0)),
        feedback_from=search.get("feedback_from", "elites"),
        seed_only=bool(search.get("seed_only", False)),
        seed=seed + 1,
        **shared,
    )
    crossover = LLMCrossoverEmitter(
        network_archive, batch_size=num_crossover, seed=seed + 2, **shared
    )
    emitters = [mutation, crossover]
    classic_batch_size = int(search.get("classic_batch_size", 0))
    if classic_batch_size:
        emitters.append(
            ClassicMutationEmitter(
                network_archive,
                space=space,
                store=store,
                batch_size=classic_batch_size,
                parents_top_k=search.get("classic_parents_top_k", search.parents_top_k),
                parents=search.get("classic_parents", "archive"),
                avoid=evaluator.evaluated_keys,
                seed=seed + 3,
            )
        )
    if search.get("scheduler", "fixed") == "bandit":
        pool = [emitter for emitter in emitters if emitter.batch_size > 0]
        main = EvaluatedOnlyBanditScheduler(
            network_archive,
            pool,
            num_active=search.bandit.num_active,
            reselect="all",
            zeta=search.bandit.zeta,
            reward=search.bandit.get("reward", "archive"),
        )
    else:
        main = EvaluatedOnlyScheduler(network_archive, emitters)
    phases = [
        ("init", EvaluatedOnlyScheduler(network_archive, [initial]), lambda: initial.done),
        ("main", main, lambda: False),
    ]
    return phases, prompt_archive, llm


def llm_batch_split(search: DictConfig) -> tuple[int, int]:
    """LLM children per iteration: ``(mutation, crossover)`` of ``search.batch_size``."""
    num_mutation = round(search.batch_size * search.mutation_share)
    return num_mutation, search.batch_size - num_mutation


def build_baseline(
    cfg: DictConfig, archive: GridArchive, *, space: SearchSpace, store: CandidateStore
):
    """The emitter of a classic search (``search=random``, ``rea`` or ``local``)."""
    search, seed = cfg.search, cfg.seed
    common = {"space": space, "store": store, "batch_size": search.batch_size, "seed": seed}
    if search.name == "random":
        return RandomSearchEmitter(archive, **common)
    if search.name == "rea":
        return RegularizedEvolutionEmitter(
            archive,
            population_size=search.population_size,
            tournament_size=search.tournament_size,
            **common,
        )
    return LocalSearchEmitter(archive, **common)
