"""The run's config: its checks, and the config that resumes a run.

:func:`validate_config` turns every wrong value into a :class:`ConfigError` whose message
says which key and how to fix it, before anything slow starts; :func:`resume_config`
checks a resuming command line against the run's own ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmatic.devices import resolve_device
from llmatic.emitters import FEEDBACK_SOURCES, PARENT_POOLS, TEMPERATURE_SCHEDULES
from llmatic.errors import ConfigError
from llmatic.run.build import (
    BENCHMARKS,
    LLM_BACKENDS,
    SEARCHES,
    TRAINING_BENCHMARKS,
    build_space,
    llm_batch_split,
)
from llmatic.sandbox import SandboxLimits
from llmatic.search.fail_fast import DEFAULT_AFTER
from llmatic.search.scheduler import BANDIT_REWARDS

log = logging.getLogger(__name__)


def sandbox_limits(cfg: DictConfig) -> SandboxLimits:
    """``SandboxLimits`` from the ``sandbox`` group (each key a field of it).

    ``cuda`` follows ``benchmark.device`` unless the group sets it: children that train on
    CUDA get their host memory capped by a cgroup instead of ``RLIMIT_AS``.

    Raises:
        ConfigError: An unknown key or a bad value, in one line.
    """
    settings = OmegaConf.to_container(cfg.sandbox, resolve=True)
    known = {field.name for field in dataclasses.fields(SandboxLimits)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"sandbox.{unknown[0]} is unknown; use one of {sorted(known)}")
    if "cuda" not in settings:  # children train on CUDA: no RLIMIT_AS, a cgroup instead
        try:
            device = resolve_device(str(OmegaConf.select(cfg, "benchmark.device", default="cpu")))
        except ValueError:  # validate_config says what is wrong with it
            device = "cpu"
        settings["cuda"] = device.startswith("cuda")
    try:
        return SandboxLimits(**settings)
    except ValueError as err:
        raise ConfigError(str(err).replace("SandboxLimits.", "sandbox.")) from None


#: The ``llm`` group's prices: USD per million prompt (input) / generated (output) tokens.
PRICE_KEYS = ("price_per_million_input", "price_per_million_output")


def llm_prices(cfg: DictConfig) -> tuple[float, float]:
    """``(input, output)``: the configured USD per million prompt and generated tokens.

    A config without them (a run made before they existed, a search without an ``llm``
    group) costs 0.

    Raises:
        ConfigError: A price that is not a number >= 0.
    """
    prices = []
    for key in PRICE_KEYS:
        value = OmegaConf.select(cfg, f"llm.{key}", default=0.0)
        value = 0.0 if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigError(f"llm.{key} must be a number >= 0 (USD per 1M tokens), got {value!r}")
        prices.append(float(value))
    return prices[0], prices[1]


#: Where candidates are evaluated (``evaluator=NAME``; :mod:`llmatic.workers`).
EVALUATORS = ("local", "ray")


def evaluator_settings(cfg: DictConfig) -> dict:
    """The ``evaluator`` group, checked; a run from before it existed gets one local worker.

    Raises:
        ConfigError: An unknown evaluator, a worker count below 1, an empty device list.
    """
    settings = OmegaConf.select(cfg, "evaluator", default=None)
    settings = {"name": "local", "workers": 1} | (
        OmegaConf.to_container(settings, resolve=True) if settings is not None else {}
    )
    if settings["name"] not in EVALUATORS:
        raise ConfigError(
            f"evaluator={settings['name']!r} is unknown; use one of {list(EVALUATORS)}"
        )
    workers = settings["workers"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"evaluator.workers must be an integer >= 1, got {workers!r}")
    devices = settings.get("devices")
    if devices is not None and (not isinstance(devices, list) or not devices):
        raise ConfigError(
            f"evaluator.devices must be a list of devices (e.g. [cuda:0, cuda:1]) or null, "
            f"got {devices!r}"
        )
    return settings


def validate_config(cfg: DictConfig) -> None:
    """Checks what would otherwise fail late; raises ConfigError with one clear line."""
    sandbox_limits(cfg)
    llm_prices(cfg)
    evaluator = evaluator_settings(cfg)
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
    stop = search.get("stop_objective")
    if stop is not None and (isinstance(stop, bool) or not isinstance(stop, (int, float))):
        raise ConfigError(f"search.stop_objective must be a number (%) or null, got {stop!r}")
    # LLMatic may leave the LLM out of its main phase (a classic pool: ablations).
    smallest = 0 if search.name == "llmatic" and search.get("classic_batch_size", 0) else 1
    if search.batch_size < smallest:
        raise ConfigError(f"search.batch_size must be >= {smallest}, got {search.batch_size}")
    if cfg.output.checkpoint_every < 1:
        raise ConfigError(
            f"output.checkpoint_every must be >= 1, got {cfg.output.checkpoint_every}"
        )
    if search.get("overlap", False) is True and cfg.output.checkpoint_every == 1:
        # The LLM runs ahead only between checkpoints (a checkpoint needs nothing in
        # flight): with one every iteration, overlap would silently change nothing.
        raise ConfigError(
            "search.overlap=true needs output.checkpoint_every > 1 (the LLM can only run "
            "ahead between checkpoints): set output.checkpoint_every=10, for example"
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
    if (search.name == "local" or search.get("classic_batch_size", 0)) and not (
        space.has_baseline_moves and (search.name != "local" or space.has_neighbours)
    ):
        raise ConfigError(
            f"search={search.name} needs a space with classic moves and neighbourhoods; "
            f"{space.name} has none yet (use space=nb201)"
        )
    if search.get("feedback_elites", 0) and not space.shows_examples:
        raise ConfigError(
            f"search.feedback_elites needs a space whose prompts show examples; {space.name} "
            "does not (use space=nb201, or search.feedback_elites=0)"
        )
    if cfg.benchmark.get("inherit_weights", False) and not (
        space.evaluates_code and cfg.benchmark.name == "cifar"
    ):
        raise ConfigError(
            "benchmark.inherit_weights needs networks trained from their own code on CIFAR "
            "(+exp=cifar10 or cifar100, space=freeform)"
        )
    if space.evaluates_code and cfg.benchmark.name not in TRAINING_BENCHMARKS:
        raise ConfigError(
            f"space={space.name} trains each candidate's own code: use benchmark=digits or "
            f"cifar (benchmark={cfg.benchmark.name} scores arch strings only)"
        )
    if cfg.benchmark.name == "cifar":
        check_cifar_config(cfg)
    if search.name == "llmatic":
        try:
            space.stop(scope=cfg.llm.scope)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    # Device requests fail here, not after minutes of setup (or inside a sandboxed child).
    devices = [("benchmark.device", cfg.benchmark.get("device"))]
    if evaluator["name"] == "local":  # a Ray worker's devices are its node's
        devices += [("evaluator.devices", device) for device in evaluator.get("devices") or []]
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
        check_llmatic_search(search)
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
        if t.get("schedule", "adaptive") not in TEMPERATURE_SCHEDULES:
            raise ConfigError(
                f"search.temperature.schedule must be one of {TEMPERATURE_SCHEDULES}, "
                f"got {t.schedule!r}"
            )
        if not cfg.prompts.mutation:
            raise ConfigError("prompts.mutation must list at least one instruction")


def check_llmatic_search(search: DictConfig) -> None:
    """The keys of LLMatic's operator pool (``conf/search/llmatic.yaml``)."""
    classic = search.get("classic_batch_size", 0)
    if not isinstance(classic, int) or classic < 0:
        raise ConfigError(f"search.classic_batch_size must be an integer >= 0, got {classic!r}")
    for key in ("parents_top_k", "classic_parents_top_k"):
        value = search.get(key, 1)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"search.{key} must be an integer >= 1 or null (all), got {value!r}")
    for key in ("mutation_parents", "classic_parents"):
        if search.get(key, "archive") not in PARENT_POOLS:
            raise ConfigError(
                f"search.{key} must be one of {PARENT_POOLS}, got {search.get(key)!r}"
            )
    random_seeds = search.get("random_seeds", 0)
    if not isinstance(random_seeds, int) or random_seeds < 0:
        raise ConfigError(f"search.random_seeds must be an integer >= 0, got {random_seeds!r}")
    feedback = search.get("feedback_elites", 0)
    if not isinstance(feedback, int) or feedback < 0:
        raise ConfigError(f"search.feedback_elites must be an integer >= 0, got {feedback!r}")
    if search.get("feedback_from", "elites") not in FEEDBACK_SOURCES:
        raise ConfigError(
            f"search.feedback_from must be one of {FEEDBACK_SOURCES}, got {search.feedback_from!r}"
        )
    if not isinstance(search.get("overlap", False), bool):
        raise ConfigError(f"search.overlap must be true or false, got {search.overlap!r}")
    scheduler = search.get("scheduler", "fixed")
    if scheduler not in ("fixed", "bandit"):
        raise ConfigError(f"search.scheduler must be fixed or bandit, got {scheduler!r}")
    if scheduler == "bandit":
        sizes = {
            **dict(zip(("mutation", "crossover"), llm_batch_split(search), strict=True)),
            "classic": classic,
        }
        pool = [name for name, size in sizes.items() if size > 0]
        reward = search.bandit.get("reward", "archive")
        if reward not in BANDIT_REWARDS:
            raise ConfigError(
                f"search.bandit.reward must be one of {BANDIT_REWARDS}, got {reward!r}"
            )
        if not 1 <= search.bandit.num_active <= len(pool):
            raise ConfigError(
                f"search.bandit.num_active must be in [1, {len(pool)}] (the pool: "
                f"{', '.join(pool)}), got {search.bandit.num_active}"
            )


#: Config keys a resumed run may change on the command line: how it runs, not what it
#: searches (``output`` covers ``output.plots`` and the others).
RESUME_MAY_CHANGE = (
    "output",
    "sandbox",
    "evaluator",  # results do not depend on where or on how many workers they ran
    "fail_fast",
    "benchmark.table",
    "llm.cache_dir",
    "llm.num_threads",
    "llm.base_url",
    "llm.api_key_env",
    "llm.timeout_s",
    "llm.max_retries",
    "llm.max_concurrency",
    # Prices only change summary.json's cost, which is worked out from the token counts.
    *(f"llm.{key}" for key in PRICE_KEYS),
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


def check_cifar_config(cfg: DictConfig) -> None:
    """The CIFAR benchmark's settings, and its data where it must be (or fetched).

    The folder is looked for here, so that a missing data set is one line before
    anything starts (``data.download`` fetches it when the sandbox is built); the zygote
    reads and checks the files themselves.

    Raises:
        ConfigError: A bad recipe or data setting, or the data set is not in ``data.root``
            (and ``data.download`` is off).
    """
    from llmatic.benchmarks._cifar_data import NUM_CLASSES, RELEASES
    from llmatic.fast_training import TrainSettings

    bench = cfg.benchmark
    if OmegaConf.select(cfg, "data") is None:
        raise ConfigError("benchmark=cifar needs a data group: use +exp=cifar10 or +exp=cifar100")
    if bench.dataset not in NUM_CLASSES:
        raise ConfigError(f"benchmark.dataset must be one of {sorted(NUM_CLASSES)}")
    if bench.num_classes != NUM_CLASSES[bench.dataset]:
        raise ConfigError(
            f"benchmark.num_classes={bench.num_classes} but {bench.dataset} has "
            f"{NUM_CLASSES[bench.dataset]} classes"
        )
    try:
        TrainSettings(**OmegaConf.to_container(bench.train, resolve=True))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"benchmark.train: {err}") from None
    release = RELEASES[bench.dataset]
    root = Path(str(cfg.data.root))
    if not (root / release.folder).is_dir() and not cfg.data.download:
        raise ConfigError(
            f"data.root={root}: no {release.folder}/ there; put the official python "
            f"version of {bench.dataset} there ({release.url}), or set "
            "data.download=true on a machine that is online"
        )
