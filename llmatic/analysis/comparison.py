"""Compare finished runs (methods x seeds x datasets) the honest NAS way.

For a run and a budget ``b`` (charged evaluations), the reported architecture is the one
with the best *validation* accuracy among the run's first ``b`` charged evaluations (ties:
the earliest), and the reported number is *its test* accuracy. Test accuracy never selects.
A run that made fewer than ``b`` evaluations has no value at ``b``; tables say how many
runs fell short instead of dropping them silently. The one exception, on request
(``settled=True``): a NAS-Bench-201 run that had already evaluated the table's
best-validation architecture reports that architecture at every larger budget, since
no later evaluation can displace it; such values are marked *settled* (derived, not run).

``python -m experiments.compare MULTIRUN_DIR ...`` is the command line; :func:`compare`
does the work and writes ``comparison.md``, ``comparison.csv``,
``best_so_far_<dataset>.png`` and ``archives_<dataset>.png``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; runs on headless machines and clusters

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402  (PyYAML: a dependency of omegaconf / hydra-core)
from matplotlib.ticker import MaxNLocator  # noqa: E402
from scipy.stats import mannwhitneyu  # noqa: E402

from llmatic.analysis.prompt_stats import prompt_markdown, prompt_stats  # noqa: E402

DEFAULT_BUDGETS = (100, 500, 2000)
DEFAULT_BASELINES = ("random", "rea", "local")
RUN_FILES = ("summary.json", "candidates.jsonl")
#: A run's LLM cost over the whole run (summary.json's ``cost``; NaN in older runs).
COST_COLUMNS = ("prompt_tokens", "completion_tokens", "llm_seconds", "usd")
CSV_COLUMNS = (
    "dataset",
    "method",
    "seed",
    "budget",
    "val",
    "test",
    "found_at_evaluation",
    "evaluations",
    "settled",
    *COST_COLUMNS,
    "run_dir",
)


class NoRunsError(RuntimeError):
    """No usable run directory under the given paths."""


class RunLoadError(ValueError):
    """A run directory with a missing or corrupt file."""


@dataclass(frozen=True)
class Published:
    """A published NAS-Bench-201 result (test accuracy, %), not produced by these runs.

    Attributes:
        source: Who reported it, and under which budget.
        test: Test accuracy (%) on CIFAR-10, CIFAR-100 and ImageNet16-120.
    """

    source: str
    test: tuple[float, float, float]


#: Dataset names of the runs, in the order of :attr:`Published.test`.
NB201_DATASETS = ("cifar10", "cifar100", "imagenet16")
_NB201_ALIASES = {"imagenet16-120": "imagenet16", "imagenet16_120": "imagenet16"}
PUBLISHED_NB201 = (
    Published("optimum of the search space", (94.37, 73.51, 47.31)),
    Published("best reachable by validation", (94.37, 73.51, 46.20)),
    Published("LLMatic paper (2,000 evaluations)", (94.26, 71.62, 45.87)),
    Published("GENIUS", (93.79, 71.30, 44.96)),
    Published("REA (NAS-Bench-201 paper)", (93.92, 71.84, 45.54)),
    Published("random search, 2,000 samples (approx.)", (94.12, 72.83, 46.32)),
)


@dataclass
class Run:
    """One finished run, reduced to what the comparison needs.

    Attributes:
        run_dir: The run's directory.
        method: ``search.label`` (``search.name`` in runs from before labels):
            ``llmatic``, ``llmatic_bandit``, ``random``, ``rea``, ``local``, ...
        seed: The run's seed.
        benchmark: ``benchmark.name`` (``nasbench201``, ``digits``).
        dataset: ``benchmark.dataset``, or the benchmark name when there is none.
        budget: ``search.budget``: charged evaluations the run was asked for.
        stop_objective: ``search.stop_objective``: the run was to stop once an evaluation
            reached it (None: run to the budget).
        val: Validation accuracy (%) of each charged evaluation, in order (NaN: none).
        test: Test accuracy (%) of the same evaluations (NaN: none).
        cost: The run's LLM cost, :data:`COST_COLUMNS` -> value (NaN: not recorded).
    """

    run_dir: Path
    method: str
    seed: int
    benchmark: str
    dataset: str
    budget: int | None
    val: np.ndarray
    test: np.ndarray
    cost: dict[str, float] = field(default_factory=lambda: read_cost({}))
    operators: dict[str, dict] = field(default_factory=dict)
    stop_objective: float | None = None
    best_index: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.best_index = best_so_far_index(self.val)

    @property
    def evaluations(self) -> int:
        """Charged evaluations the run made."""
        return len(self.val)

    @property
    def complete(self) -> bool:
        """Whether the run made all the evaluations it was asked for, or stopped where
        it was asked to (``search.stop_objective``)."""
        if self.budget is None or self.evaluations >= self.budget:
            return True
        return self.stop_objective is not None and bool(np.any(self.val >= self.stop_objective))

    def best_so_far_test(self) -> np.ndarray:
        """Test accuracy (%) of the best-by-validation architecture after 1, 2, ... evaluations."""
        return _take(self.test, self.best_index)

    def select(self, budget: int, *, target: float | None = None) -> Selection | None:
        """The best-by-validation architecture of the first ``budget`` evaluations.

        Args:
            budget: Charged evaluations.
            target: The benchmark's best validation accuracy (%), where it is known. A run
                shorter than ``budget`` that had reached it is *settled*: a later tie does
                not replace the earlier architecture and nothing beats it, so at
                ``budget`` it would report what it reports at its end.

        Returns:
            None when the run made fewer than ``budget`` evaluations and is not settled.
        """
        if budget < 1:
            return None
        if self.evaluations < budget:
            if target is None or evaluations_to_reach(self, target) is None:
                return None
            return replace(self.select(self.evaluations), settled=True)
        index = int(self.best_index[budget - 1])
        if index < 0:  # none of the first ``budget`` evaluations has a validation accuracy
            return Selection(val=math.nan, test=math.nan, evaluation=None)
        return Selection(
            val=float(self.val[index]), test=float(self.test[index]), evaluation=index + 1
        )


@dataclass(frozen=True)
class Selection:
    """What a run reports at one budget.

    Attributes:
        val: Validation accuracy (%) of the selected architecture.
        test: Its test accuracy (%); NaN when the run did not record one.
        evaluation: Its evaluation number (1-based), None when nothing could be selected.
        settled: Derived for a budget beyond the run's end (see :meth:`Run.select`).
    """

    val: float
    test: float
    evaluation: int | None
    settled: bool = False


@dataclass(frozen=True)
class RankTest:
    """Two-sided Mann-Whitney U test of one method against one baseline at one budget.

    Attributes:
        p_value: None when a side has fewer than 2 seeds with a value.
        better: The side with the higher median test accuracy, ``tie``, or None.
    """

    dataset: str
    method: str
    baseline: str
    budget: int
    n_method: int
    n_baseline: int
    median_method: float
    median_baseline: float
    p_value: float | None
    better: str | None


@dataclass
class Comparison:
    """What :func:`compare` produced.

    Attributes:
        markdown: The report (also written to ``comparison.md``).
        files: Every file written.
        warnings: Skipped runs and other problems, one line each.
    """

    markdown: str
    files: list[Path]
    warnings: list[str]


# -------------------------------------------------------------------------- loading runs


def find_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every folder at or under ``paths`` holding both ``summary.json`` and ``candidates.jsonl``."""
    found: set[Path] = set()
    for root in paths:
        for summary in root.rglob("summary.json"):  # rglob includes root itself
            if summary.is_file() and (summary.parent / "candidates.jsonl").is_file():
                found.add(summary.parent)
    return sorted(found)


def find_unfinished_dirs(paths: Iterable[Path]) -> list[Path]:
    """Folders with ``candidates.jsonl`` but no ``summary.json``: runs still going, or killed."""
    found = {
        c.parent
        for root in paths
        for c in root.rglob("candidates.jsonl")
        if c.is_file() and not (c.parent / "summary.json").exists()
    }
    return sorted(found)


def load_run(run_dir: Path) -> Run:
    """Reads one run directory.

    Raises:
        RunLoadError: A file is missing or corrupt; the message names it.
    """
    cfg = _read_config(run_dir / "config.yaml")
    val, test = _read_evaluations(run_dir / "candidates.jsonl")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as err:
        raise RunLoadError(f"{run_dir / 'summary.json'}: {err}") from None
    try:
        benchmark = str(cfg["benchmark"]["name"])
        budget = cfg["search"].get("budget")
        return Run(
            run_dir=run_dir,
            method=str(cfg["search"].get("label") or cfg["search"]["name"]),
            seed=int(cfg["seed"]),
            benchmark=benchmark,
            dataset=str(cfg["benchmark"].get("dataset") or benchmark),
            budget=None if budget is None else int(budget),
            val=val,
            test=test,
            cost=read_cost(summary),
            operators=(summary.get("operators") or {}) if isinstance(summary, dict) else {},
            stop_objective=cfg["search"].get("stop_objective"),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise RunLoadError(f"{run_dir / 'config.yaml'}: missing or bad key {err}") from None


def load_runs(paths: Sequence[Path]) -> tuple[list[Run], list[str]]:
    """Loads every run under ``paths``, skipping broken ones.

    Returns:
        The runs, and one warning per skipped directory or other problem.

    Raises:
        NoRunsError: No run directory, or none that could be read.
    """
    warnings = [f"{p}: does not exist" for p in paths if not p.exists()]
    run_dirs = find_run_dirs(p for p in paths if p.exists())
    warnings += [
        f"{d}: skipped, candidates.jsonl but no summary.json (unfinished run?)"
        for d in find_unfinished_dirs(p for p in paths if p.exists())
    ]
    if not run_dirs:
        where = ", ".join(str(p) for p in paths)
        raise NoRunsError(
            f"no run directories (folders with summary.json and candidates.jsonl) under {where}"
        )
    runs = []
    for run_dir in run_dirs:
        try:
            runs.append(load_run(run_dir))
        except RunLoadError as err:
            warnings.append(f"{run_dir}: skipped, {err}")
    if not runs:
        raise NoRunsError(
            f"all {len(run_dirs)} run directories are corrupt: " + "; ".join(warnings)
        )
    warnings += _duplicate_seed_warnings(runs)
    return runs, warnings


def _read_config(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RunLoadError(f"{path}: {_one_line(err)}") from None
    if not isinstance(cfg, dict):
        raise RunLoadError(f"{path}: not a mapping")
    return cfg


def _read_evaluations(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test accuracy (%) of the charged candidates, in file (= creation) order."""
    val, test = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise RunLoadError(f"{path}: {err}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            candidate = json.loads(line)
            if candidate["charged"]:
                val.append(_float_or_nan(candidate["objective"]))
                test.append(_float_or_nan(candidate["test_objective"]))
        except (ValueError, KeyError, TypeError) as err:
            raise RunLoadError(f"{path} line {number}: {type(err).__name__}: {err}") from None
    return np.array(val, dtype=float), np.array(test, dtype=float)


def _one_line(err: Exception) -> str:
    """The error's message on one line (YAML errors span several)."""
    return " ".join(str(err).split())


def _float_or_nan(value: object) -> float:
    return math.nan if value is None else float(value)


def _duplicate_seed_warnings(runs: Sequence[Run]) -> list[str]:
    by_key: dict[tuple[str, str, int], list[Path]] = {}
    for run in runs:
        by_key.setdefault((run.dataset, run.method, run.seed), []).append(run.run_dir)
    return [
        f"{dataset}/{method} seed {seed} has {len(dirs)} runs, all counted: "
        + ", ".join(map(str, dirs))
        for (dataset, method, seed), dirs in by_key.items()
        if len(dirs) > 1
    ]


# ----------------------------------------------------------------------------- selection


def best_so_far_index(val: np.ndarray) -> np.ndarray:
    """Index of the best validation accuracy among the first 1, 2, ... evaluations.

    Ties go to the earliest evaluation; NaN (no validation accuracy) is never selected.

    Returns:
        An int array as long as ``val``; -1 while no evaluation has a validation accuracy.
    """
    index = np.full(len(val), -1, dtype=int)
    best, best_value = -1, -math.inf
    for i, value in enumerate(val):
        if value > best_value:  # strict: a later tie does not replace the earlier one
            best, best_value = i, value
        index[i] = best
    return index


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]``, with NaN where ``index`` is -1."""
    out = np.full(len(index), math.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def results_frame(
    runs: Sequence[Run], budgets: Sequence[int], targets: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """One row per run and budget (long format, the columns of :data:`CSV_COLUMNS`).

    Args:
        targets: Dataset -> the table's best validation accuracy (%), to carry settled
            runs beyond their end (:meth:`Run.select`); None: no run is carried.

    ``val`` and ``test`` (%) are NaN where the run made fewer than ``budget`` evaluations
    and is not settled.
    """
    rows = []
    for run in runs:
        target = (targets or {}).get(run.dataset)
        for budget in budgets:
            selection = run.select(budget, target=target)
            rows.append(
                {
                    "dataset": run.dataset,
                    "method": run.method,
                    "seed": run.seed,
                    "budget": budget,
                    "val": selection.val if selection else math.nan,
                    "test": selection.test if selection else math.nan,
                    "found_at_evaluation": selection.evaluation if selection else None,
                    "evaluations": run.evaluations,
                    "settled": bool(selection and selection.settled),
                    **run.cost,
                    "run_dir": str(run.run_dir),
                }
            )
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    frame = frame.sort_values(["dataset", "method", "seed", "budget"], ignore_index=True)
    frame["found_at_evaluation"] = frame["found_at_evaluation"].astype("Int64")
    return frame


def method_order(methods: Iterable[str], baselines: Sequence[str]) -> list[str]:
    """Methods under study first (alphabetically), then the baselines in the given order."""
    methods = set(methods)
    return sorted(methods - set(baselines)) + [b for b in baselines if b in methods]


# ------------------------------------------------------------------------------ statistics


def format_cell(values: pd.Series, short: int, settled: int = 0) -> str:
    """``mean ± std (n=k)`` of the finite ``values`` (sample std, ddof=1).

    Args:
        values: One value per seed that reached the budget (NaN: nothing recorded).
        short: How many runs made fewer evaluations than the budget, left out.
        settled: How many of ``values`` are settled runs carried beyond their end.
    """
    finite = values.dropna()
    notes = []
    if short:
        notes.append(f"{short} run{'s' if short > 1 else ''} short")
    if settled:
        notes.append(f"{settled} settled")
    missing = len(values) - len(finite)
    if missing:
        notes.append(f"{missing} without value")
    if finite.empty:
        return f"n/a ({'; '.join(notes)})" if notes else "n/a"
    n = len(finite)
    text = f"{finite.mean():.2f}" + (f" ± {finite.std(ddof=1):.2f}" if n > 1 else "")
    return f"{text} ({'; '.join([f'n={n}', *notes])})"


def rank_tests(
    frame: pd.DataFrame, baselines: Sequence[str], budgets: Sequence[int]
) -> list[RankTest]:
    """Mann-Whitney U tests (two-sided) of every other method against every baseline."""
    tests = []
    for dataset, data in frame.groupby("dataset", sort=True):
        methods = method_order(data["method"].unique(), baselines)
        present = [b for b in baselines if b in methods]
        for method in (m for m in methods if m not in baselines):
            for baseline in present:
                for budget in budgets:
                    tests.append(_rank_test(data, str(dataset), method, baseline, budget))
    return tests


def _rank_test(
    data: pd.DataFrame, dataset: str, method: str, baseline: str, budget: int
) -> RankTest:
    at_budget = data[data["budget"] == budget]
    x = at_budget.loc[at_budget["method"] == method, "test"].dropna().to_numpy()
    y = at_budget.loc[at_budget["method"] == baseline, "test"].dropna().to_numpy()
    med_x = float(np.median(x)) if len(x) else math.nan
    med_y = float(np.median(y)) if len(y) else math.nan
    p_value = better = None
    if len(x) >= 2 and len(y) >= 2:  # one seed per side says nothing about spread
        p_value = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
        better = method if med_x > med_y else baseline if med_y > med_x else "tie"
    return RankTest(
        dataset, method, baseline, budget, len(x), len(y), med_x, med_y, p_value, better
    )


def published_for(benchmark: str, dataset: str) -> list[tuple[str, float]]:
    """Published NB201 test accuracies (%) for ``dataset``; empty for other benchmarks."""
    name = _NB201_ALIASES.get(dataset.lower(), dataset.lower())
    if benchmark != "nasbench201" or name not in NB201_DATASETS:
        return []
    column = NB201_DATASETS.index(name)
    return [(p.source, p.test[column]) for p in PUBLISHED_NB201]


# -------------------------------------------------------------------------------- markdown


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def accuracy_table(
    data: pd.DataFrame, column: str, methods: Sequence[str], budgets: Sequence[int]
) -> str:
    """Methods x budgets table of ``column`` (``val`` or ``test``) over seeds."""
    rows = []
    for method in methods:
        cells = []
        for budget in budgets:
            at = data[(data["method"] == method) & (data["budget"] == budget)]
            counted = (at["evaluations"] >= budget) | at["settled"]
            cells.append(
                format_cell(
                    at.loc[counted, column], int((~counted).sum()), int(at["settled"].sum())
                )
            )
        rows.append([method, *cells])
    return markdown_table(["method", *(f"{b} evals" for b in budgets)], rows)


def runs_table(runs: Sequence[Run], methods: Sequence[str]) -> str:
    """How many runs each method has, their evaluations, and which fell short of the
    budget: cut short (listed), or stopped at ``search.stop_objective`` (counted)."""
    rows = []
    for method in methods:
        mine = sorted((r for r in runs if r.method == method), key=lambda r: r.seed)
        evals = [r.evaluations for r in mine]
        incomplete = [
            f"seed {r.seed}: {r.evaluations}/{r.budget} ({r.run_dir})"
            for r in mine
            if not r.complete
        ]
        stopped = sum(r.complete and r.evaluations < (r.budget or 0) for r in mine)
        if stopped:  # ended where search.stop_objective asked them to: not cut short
            incomplete.insert(0, f"{stopped} stopped at search.stop_objective")
        rows.append(
            [
                method,
                len(mine),
                ", ".join(str(r.seed) for r in mine),
                f"{min(evals)}–{max(evals)}" if min(evals) != max(evals) else str(evals[0]),
                "; ".join(incomplete) or "none",
            ]
        )
    return markdown_table(["method", "runs", "seeds", "evaluations", "short of the budget"], rows)


def rank_table(tests: Sequence[RankTest]) -> str:
    rows = [
        [
            t.method,
            t.baseline,
            t.budget,
            f"{t.n_method} vs {t.n_baseline}",
            _fmt(t.median_method),
            _fmt(t.median_baseline),
            _p_text(t.p_value),
            t.better or "n/a (< 2 seeds a side)",
        ]
        for t in tests
    ]
    header = [
        "method",
        "baseline",
        "budget",
        "seeds",
        "median test (method)",
        "median test (baseline)",
        "p (two-sided)",
        "higher median",
    ]
    return markdown_table(header, rows)


def _p_text(p_value: float | None) -> str:
    return "n/a" if p_value is None else f"{p_value:.3g}"


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def render_markdown(
    runs: Sequence[Run],
    frame: pd.DataFrame,
    *,
    budgets: Sequence[int],
    baselines: Sequence[str],
    anchors: bool,
    warnings: Sequence[str],
    images: dict[str, list[str]],
    targets: dict[str, float] | None = None,
) -> str:
    """The whole report; ``images`` maps a dataset to its image file names; ``targets``
    a dataset to the validation accuracy of its best-by-validation architecture."""
    tests = rank_tests(frame, baselines, budgets)
    out = [
        "# Comparison of NAS runs",
        "",
        f"{len(runs)} runs. At each budget (charged evaluations), every run reports the "
        "architecture with the best **validation** accuracy among its first *budget* "
        "evaluations (ties: the earliest); the tables give **its test accuracy** (%). "
        "Cells: mean ± sample std (ddof=1) over seeds, n = seeds; *short*: runs with fewer "
        "evaluations than the budget, left out of that cell.",
    ]
    if frame["settled"].any():
        out[-1] += (
            " *settled*: runs shorter than the budget that had already evaluated the "
            "table's best-validation architecture; no later evaluation can displace it, "
            "so their value there is the one they end with (derived, not run; counted in "
            "n and in the tests)."
        )
    for dataset, data in frame.groupby("dataset", sort=True):
        mine = [r for r in runs if r.dataset == dataset]
        methods = method_order(data["method"].unique(), baselines)
        out += [
            "",
            f"## {dataset} ({mine[0].benchmark})",
            "",
            "### Runs",
            "",
            runs_table(mine, methods),
            "",
            "### Test accuracy (%) of the best-by-validation architecture",
            "",
            accuracy_table(data, "test", methods, budgets),
            "",
            "### Validation accuracy (%) of the same architecture",
            "",
            accuracy_table(data, "val", methods, budgets),
            "",
            "### Mann-Whitney U test on per-seed test accuracy",
            "",
        ]
        ours = [t for t in tests if t.dataset == dataset]
        if ours:
            out.append(rank_table(ours))
        else:
            out.append(f"No test: needs a baseline ({', '.join(baselines)}) and another method.")
        target = (targets or {}).get(str(dataset))
        if target is not None:
            out += [
                "",
                "### Evaluations to reach the best-by-validation architecture",
                "",
                f"The target: validation accuracy {target:.2f} %, the best of the whole "
                "table (the architecture a search by validation ends with). Median over "
                "seeds of the first evaluation that reached it (a run that never did counts "
                "as more than it made); *reached by B*: seeds that had it within B; *p vs "
                "X*: two-sided Mann-Whitney U test of the evaluations needed against method "
                "X, both censored at the shorter of the two methods' runs.",
                "",
                reach_table(mine, methods, target, budgets, baselines),
            ]
        published = published_for(mine[0].benchmark, str(dataset)) if anchors else []
        if published:
            out += [
                "",
                "### Published numbers (test %, from the literature, not these runs)",
                "",
                markdown_table(
                    ["source", "test accuracy (%)"], ((s, f"{v:.2f}") for s, v in published)
                ),
            ]
        out += ["", "### Cost (LLM)", "", cost_table(mine, methods)]
        if any(r.operators for r in mine):
            out += ["", "### Operators", "", operators_table(mine, methods)]
        out += [""] + [f"![{name}]({name})" for name in images.get(str(dataset), [])]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ cost


def read_cost(summary: object) -> dict[str, float]:
    """A run's LLM cost, :data:`COST_COLUMNS` -> value, from its ``summary.json``.

    NaN for what the summary does not hold (runs made before cost accounting).
    """
    cost = summary.get("cost") if isinstance(summary, dict) else None
    cost = cost if isinstance(cost, dict) else {}
    return {key: _number_or_nan(cost.get(key)) for key in COST_COLUMNS}


def _number_or_nan(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def cost_table(runs: Sequence[Run], methods: Sequence[str]) -> str:
    """Per method, mean ± std over seeds of what the LLM cost a run, with a note above."""
    columns = (
        ("completion tokens", lambda r: r.cost["completion_tokens"], "{:,.0f}"),
        ("prompt tokens", lambda r: r.cost["prompt_tokens"], "{:,.0f}"),
        ("LLM seconds", lambda r: r.cost["llm_seconds"], "{:,.1f}"),
        ("USD per run", lambda r: r.cost["usd"], None),
        (
            "USD per evaluation",
            lambda r: r.cost["usd"] / r.evaluations if r.evaluations else math.nan,
            None,
        ),
    )
    rows = []
    for method in methods:
        mine = [r for r in runs if r.method == method]
        recorded = sum(not math.isnan(r.cost["usd"]) for r in mine)
        cells = [_mean_std([value(r) for r in mine], fmt) for _, value, fmt in columns]
        rows.append([method, f"{recorded}/{len(mine)}", *cells])
    note = (
        "Per run: mean ± sample std over seeds (runs recorded without cost left out). "
        "Tokens as the backend counted them (its tokenizer, a server's usage, else about 4 "
        "characters per token); USD from the prices per million tokens in each run's `llm` "
        "config (0 for local models)."
    )
    header = ["method", "runs with cost", *(name for name, _, _ in columns)]
    return note + "\n\n" + markdown_table(header, rows)


def _mean_std(values: Sequence[float], fmt: str | None) -> str:
    """``mean ± std`` (ddof=1) of the finite ``values``; ``fmt`` None: USD amounts."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"

    def show(x: float) -> str:
        if fmt is not None:
            return fmt.format(x)
        return f"{x:,.2f}" if x == 0 or abs(x) >= 1 else f"{x:.3g}"  # USD: cents or 3 digits

    text = show(float(np.mean(finite)))
    return text + (f" ± {show(float(np.std(finite, ddof=1)))}" if len(finite) > 1 else "")


def operators_table(runs: Sequence[Run], methods: Sequence[str]) -> str:
    """Per method and operator, means over seeds of ``summary.json``'s ``operators``."""
    rows = []
    for method in methods:
        mine = [r for r in runs if r.method == method and r.operators]
        for operator in sorted({op for r in mine for op in r.operators}):
            stats = [r.operators[operator] for r in mine if operator in r.operators]

            def mean(key: str, stats=stats) -> float:
                values = [s[key] for s in stats if isinstance(s.get(key), int | float)]
                return float(np.mean(values)) if values else math.nan

            better = mean("better_than_parent")
            rows.append(
                [
                    method,
                    operator,
                    len(stats),
                    f"{mean('evaluations'):.1f}",
                    f"{100 * mean('share_of_evaluations'):.0f} %",
                    "n/a" if math.isnan(better) else f"{100 * better:.0f} %",
                    f"{mean('new_best'):.1f}",
                    f"{mean('duplicates'):.1f}",
                    f"{mean('failed'):.1f}",
                ]
            )
    note = (
        "Means over the runs of each method: charged evaluations of the operator, their "
        "share of the run's, the share of its evaluated children that beat their best "
        "parent, how many of its evaluations set a new best of the run, and its uncharged "
        "duplicates and failures."
    )
    header = [
        "method",
        "operator",
        "runs",
        "evaluations",
        "share",
        "better than parent",
        "new bests",
        "duplicates",
        "failed",
    ]
    return note + "\n\n" + markdown_table(header, rows)


# ------------------------------------------------------------- evaluations to the target


def reach_targets(runs: Sequence[Run], table: str | Path | None = None) -> dict[str, float]:
    """Per dataset of NAS-Bench-201 runs: the validation accuracy (%) of the best
    architecture a search by validation can find (the table's oracle).

    Args:
        runs: The runs; others than NAS-Bench-201's are passed over.
        table: The table (default: each run's ``benchmark.table``, where it exists).

    Returns:
        ``{dataset: oracle validation accuracy}`` for the datasets whose table was found.
    """
    from llmatic.benchmarks.nasbench201 import NasBench201Table

    targets, tables = {}, {}
    for run in runs:
        if run.benchmark != "nasbench201" or run.dataset in targets:
            continue
        bench = _read_config(run.run_dir / "config.yaml")["benchmark"]
        path = Path(table if table is not None else bench.get("table", ""))
        if not path.is_file():
            continue
        if path not in tables:
            tables[path] = NasBench201Table.load(path)
        _, val, _ = tables[path].oracle(run.dataset, str(bench.get("fidelity", "200")))
        targets[run.dataset] = val
    return targets


def evaluations_to_reach(run: Run, target: float) -> int | None:
    """The first charged evaluation (1-based) whose validation accuracy reaches ``target``."""
    hits = np.flatnonzero(run.val >= target - 1e-9)
    return int(hits[0]) + 1 if len(hits) else None


def reach_rank_test(runs: Sequence[Run], target: float, method: str, baseline: str) -> float | None:
    """Two-sided Mann-Whitney U p-value of the evaluations two methods needed to reach
    ``target``, or None when a side has fewer than 2 runs.

    Runs may have made different numbers of evaluations: both sides are censored at the
    smaller of their largest budgets (a run that had not reached the target by then ties
    with every other such run), so a longer run gains nothing from its extra evaluations.
    """
    sides = [[r for r in runs if r.method == m] for m in (method, baseline)]
    if min(len(s) for s in sides) < 2:
        return None
    limit = min(max(r.evaluations for r in side) for side in sides)
    needed = [[evaluations_to_reach(r, target) for r in side] for side in sides]
    x, y = ([limit + 1 if n is None else min(n, limit + 1) for n in ns] for ns in needed)
    if len(set(x) | set(y)) == 1:  # every run alike: no evidence either way
        return 1.0
    return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)


def reach_table(
    runs: Sequence[Run],
    methods: Sequence[str],
    target: float,
    budgets: Sequence[int],
    baselines: Sequence[str] = (),
) -> str:
    """Per method: evaluations until the best-by-validation architecture was found, and
    the rank test of those evaluations against each baseline present."""
    present = [b for b in baselines if b in methods]
    rows = []
    for method in methods:
        mine = [r for r in runs if r.method == method]
        needed = [evaluations_to_reach(r, target) for r in mine]
        # A run that never reached the target needed more than it made: its value is
        # +inf for the median, so a median above the evaluations made reads "> N".
        values = np.array([math.inf if n is None else n for n in needed], dtype=float)
        median = float(np.median(values))
        made = max(r.evaluations for r in mine)
        text = f"> {made}" if math.isinf(median) else f"{median:g}"
        reached = [f"{sum(n is not None and n <= b for n in needed)}/{len(mine)}" for b in budgets]
        tests = [
            "" if method == baseline else _p_text(reach_rank_test(runs, target, method, baseline))
            for baseline in present
        ]
        rows.append([method, len(mine), text, *reached, *tests])
    header = [
        "method",
        "seeds",
        "median evaluations",
        *(f"reached by {b}" for b in budgets),
        *(f"p vs {b}" for b in present),
    ]
    return markdown_table(header, rows)


# ----------------------------------------------------------------------------------- plots


def plot_best_so_far(
    runs: Sequence[Run], methods: Sequence[str], path: Path, *, title: str
) -> None:
    """Mean ± std over seeds of the best-so-far test accuracy (%) versus evaluations."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in methods:
        curves = {
            r.run_dir: pd.Series(r.best_so_far_test(), index=np.arange(1, r.evaluations + 1))
            for r in runs
            if r.method == method
        }
        # Seeds that stopped early drop out of the mean from their last evaluation on.
        table = pd.DataFrame(curves)
        mean, std = table.mean(axis=1), table.std(axis=1, ddof=1)
        (line,) = ax.plot(mean.index, mean, label=f"{method} (n={len(curves)})")
        ax.fill_between(mean.index, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluations")
    ax.set_ylabel("test accuracy (%) of best-by-validation arch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def median_run(runs: Sequence[Run]) -> Run:
    """The run whose final reported test accuracy is the (lower) median of ``runs``."""

    def final_test(run: Run) -> float:
        selection = run.select(run.evaluations)
        test = selection.test if selection else math.nan
        return -math.inf if math.isnan(test) else test

    ordered = sorted(runs, key=lambda r: (final_test(r), r.seed))
    return ordered[(len(ordered) - 1) // 2]


def plot_archives(
    runs: Sequence[Run], methods: Sequence[str], path: Path, *, title: str
) -> list[str]:
    """One heatmap of the final network archive per method (its median-result seed).

    Returns:
        Warnings about archives that could not be read.
    """
    # ribs imports torch (seconds): only pay for it when drawing archives.
    from ribs.visualize import grid_archive_heatmap

    from llmatic.archives import NETWORK_MEASURE_LABELS
    from llmatic.recording import NETWORK_ARCHIVE, load_archive

    warnings, panels = [], []
    for method in methods:
        mine = [r for r in runs if r.method == method]
        chosen = median_run(mine)
        archive, archive_path = None, chosen.run_dir / NETWORK_ARCHIVE
        try:
            archive = load_archive(archive_path)
        except Exception as err:  # any unpickling failure means: no panel, not no report
            warnings.append(f"{archive_path}: not drawn, {type(err).__name__}: {_one_line(err)}")
        panels.append((method, chosen, len(mine), archive))
    objectives = np.concatenate(
        [a.data("objective") for *_, a in panels if a is not None and len(a)] or [np.array([])]
    )
    # One colour scale for every panel, so that colours compare across methods.
    vmin = float(objectives.min()) if len(objectives) else None
    vmax = float(objectives.max()) if len(objectives) else None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    for ax, (method, run, n, archive) in zip(axes[0], panels, strict=True):
        which = "the only run" if n == 1 else f"median of {n} by final test"
        subtitle = f"{method}: seed {run.seed} ({which})"
        if archive is None:
            ax.text(0.5, 0.5, "no archive", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        else:
            grid_archive_heatmap(
                archive,
                ax=ax,
                cmap="viridis",
                vmin=vmin,
                vmax=vmax,
                cbar_kwargs={"label": "validation accuracy (%)"},
            )
            ax.set_xlabel(NETWORK_MEASURE_LABELS[0])
            ax.set_ylabel(NETWORK_MEASURE_LABELS[1])
            subtitle += f"\n{len(archive)}/{archive.cells} cells filled"
        ax.set_title(subtitle, fontsize=10)
    fig.suptitle(title)
    _save(fig, path)
    return warnings


def _save(fig: plt.Figure, path: Path) -> None:
    # Imported here: llmatic.analysis.plotting pulls in ribs and torch, which the text
    # report and the error paths do not need.
    from llmatic.analysis.plotting import save_figure

    save_figure(fig, path, dpi=110)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ------------------------------------------------------------------------------ entry point


def compare(
    paths: Sequence[str | Path],
    *,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    out: str | Path | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    anchors: bool = False,
    table: str | Path | None = None,
    settled: bool = False,
) -> Comparison:
    """Compares every run under ``paths`` and writes the report into ``out``.

    Args:
        paths: Multirun (or run) directories, searched recursively.
        budgets: Charged-evaluation budgets at which to report.
        out: Output folder (default: ``paths[0]/comparison``).
        baselines: Methods every other method is tested against.
        anchors: Whether to add published NAS-Bench-201 numbers to the report.
        table: The NAS-Bench-201 table for the evaluations-to-target section (default:
            each run's ``benchmark.table`` where it exists; none found: no section).
        settled: Whether runs shorter than a budget that had found the table's
            best-validation architecture count there (:meth:`Run.select`).

    Raises:
        NoRunsError: Nothing to compare.
        ValueError: A budget below 1.
    """
    if not paths:
        raise NoRunsError("no directories given")
    if any(b < 1 for b in budgets):
        raise ValueError(f"budgets must be >= 1, got {list(budgets)}")
    budgets = sorted(set(budgets))
    paths = [Path(p) for p in paths]
    out = Path(out) if out is not None else paths[0] / "comparison"
    runs, warnings = load_runs(paths)
    targets = reach_targets(runs, table)
    frame = results_frame(runs, budgets, targets if settled else None)

    files, images = [], {}
    for dataset in sorted({r.dataset for r in runs}):
        mine = [r for r in runs if r.dataset == dataset]
        methods = method_order({r.method for r in mine}, baselines)
        curve = out / f"best_so_far_{_safe_name(dataset)}.png"
        plot_best_so_far(
            mine, methods, curve, title=f"{dataset}: best so far (mean ± std over seeds)"
        )
        grid = out / f"archives_{_safe_name(dataset)}.png"
        warnings += plot_archives(mine, methods, grid, title=f"{dataset}: final network archives")
        files += [curve, grid]
        images[dataset] = [curve.name, grid.name]

    markdown = render_markdown(
        runs,
        frame,
        budgets=budgets,
        baselines=baselines,
        anchors=anchors,
        warnings=warnings,
        images=images,
        targets=targets,
    )
    prompts = prompt_markdown(prompt_stats((r.dataset, r.run_dir) for r in runs))
    if prompts:
        markdown += f"\n## Prompts (LLM runs, all seeds)\n\n{prompts}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(markdown)
    frame.to_csv(out / "comparison.csv", index=False, float_format="%.4f")
    files = [out / "comparison.md", out / "comparison.csv", *files]
    return Comparison(markdown=markdown, files=files, warnings=warnings)
