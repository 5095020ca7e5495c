"""Issue 13's search parts: local search, the classic mutation emitter, the bandit pool,
the operator report and the evaluations-to-target section of the comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ribs.emitters import EmitterBase
from test_baselines import TINY_OPS, tiny_table  # noqa: F401  (a fixture)
from test_experiment import compose_cfg
from test_nasbench201 import SHARED_CSV

from experiments.compare import main as compare_main
from llmatic.analysis.comparison import Run, evaluations_to_reach, load_run, reach_rank_test
from llmatic.archives import make_network_archive
from llmatic.candidate import CandidateStore
from llmatic.emitters import ClassicMutationEmitter, LocalSearchEmitter
from llmatic.errors import ConfigError
from llmatic.nb201.cell import EDGES, parse_arch
from llmatic.nb201.ops import OP_NAMES
from llmatic.recording import summarize_operators
from llmatic.run import run_experiment
from llmatic.run.config import validate_config
from llmatic.search.loop import tell_fields
from llmatic.search.scheduler import EvaluatedOnlyBanditScheduler, new_best
from llmatic.spaces.nb201 import Nb201Space, neighbour_archs, random_arch

SEED_ARCH = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def edges_changed(a: str, b: str) -> int:
    x, y = parse_arch(a), parse_arch(b)
    return sum(x[e] != y[e] for e in EDGES)


def test_neighbours_are_every_one_edge_change():
    arch = random_arch(np.random.default_rng(3))
    neighbours = neighbour_archs(arch)
    assert len(neighbours) == len(set(neighbours)) == 6 * (len(OP_NAMES) - 1)
    assert all(edges_changed(arch, n) == 1 for n in neighbours)
    tiny = random_arch(np.random.default_rng(3), TINY_OPS)
    assert len(neighbour_archs(tiny, TINY_OPS)) == 6  # one other op per edge


def score_of(arch: str) -> float:
    """A made-up landscape: one point per 3x3 convolution."""
    return float(sum(op == "nor_conv_3x3" for op in parse_arch(arch).values()))


def settle(store: CandidateStore, ids, evaluated: set[str]) -> None:
    """What the evaluator does: score new archs, mark repeats as duplicates."""
    for i in ids:
        c = store[i]
        c.status = "duplicate" if c.arch in evaluated else "evaluated"
        c.charged = c.status == "evaluated"
        c.objective = score_of(c.arch)
        evaluated.add(c.arch)


def test_local_search_climbs_to_the_best_neighbour_then_restarts():
    store, evaluated = CandidateStore(), set()
    archive = make_network_archive(
        dims=(2, 2), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    space = Nb201Space(seed_arch=SEED_ARCH, ops=TINY_OPS)
    local = LocalSearchEmitter(archive, space=space, store=store, batch_size=4, seed=0)
    centres = []
    for _ in range(60):
        ids = local.ask()
        settle(store, ids, evaluated)
        before = local.current
        local.tell(ids, None, None, {"status": np.zeros(len(ids))})
        if local.current is not None and local.current != before:
            centres.append(local.current)
    assert local.restarts >= 1  # the all-3x3 cell is a local (global) optimum: it restarts
    # Every move goes to a neighbour that scores higher than the centre it leaves.
    for a, b in zip(centres, centres[1:], strict=False):
        if edges_changed(a[1], b[1]) == 1:
            assert b[2] > a[2]
    assert max(c[2] for c in centres) == 6.0
    # Neighbourhoods come in batches of at most 4, each child of the current centre.
    children = [c for c in store if c.parent_ids]
    assert all(edges_changed(store[c.parent_ids[0]].arch, c.arch) == 1 for c in children)


def test_local_search_needs_neighbourhoods():
    class NoNeighbours(Nb201Space):
        has_neighbours = False

    space = NoNeighbours(seed_arch=SEED_ARCH)
    archive = make_network_archive(
        dims=(2, 2), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    with pytest.raises(ValueError, match="neighbourhoods"):
        LocalSearchEmitter(archive, space=space, store=CandidateStore(), batch_size=4, seed=0)


def put_elites(store, archive, archs):
    candidates = []
    for k, arch in enumerate(archs):
        c = store.new("seed", code=arch, arch=arch)
        c.status, c.objective, c.charged = "evaluated", score_of(arch) + k / 100, True
        c.measures = {"width_to_depth": k / len(archs), "log10_flops": k / len(archs)}
        candidates.append(c)
    add_to_archive(archive, candidates)
    return candidates


def add_to_archive(archive, candidates) -> None:
    fields = tell_fields(candidates)
    del fields["evaluated"]
    archive.add(solution=np.array([c.id for c in candidates], dtype=object), **fields)


def classic_setting(seed: int, n: int):
    """A store, a 4x4 archive, the two-op NB201 space and ``n`` distinct random cells."""
    archive = make_network_archive(
        dims=(4, 4), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    space = Nb201Space(seed_arch=SEED_ARCH, ops=TINY_OPS)
    rng = np.random.default_rng(seed)
    archs = list({random_arch(rng, TINY_OPS) for _ in range(12)})[:n]
    return CandidateStore(), archive, space, archs


def test_classic_mutation_takes_open_elites_and_avoids_evaluated_children():
    store, archive, space, archs = classic_setting(1, 4)
    elites = put_elites(store, archive, archs)
    best = max(elites, key=lambda c: c.objective)
    # The best elite's whole neighbourhood is evaluated: it has nothing new to give.
    avoid = {c.arch for c in elites} | set(neighbour_archs(best.arch, TINY_OPS))
    emitter = ClassicMutationEmitter(
        archive, space=space, store=store, batch_size=6, parents_top_k=2, avoid=avoid, seed=0
    )
    ids = emitter.ask()
    children = [store[i] for i in ids]
    assert len(children) == 6
    top_open = sorted((c for c in elites if c is not best), key=lambda c: -c.objective)[:2]
    assert {c.parent_ids[0] for c in children} <= {c.id for c in top_open}
    for child in children:
        assert (
            child.operator == "classic"
            and edges_changed(store[child.parent_ids[0]].arch, child.arch) == 1
        )
        assert child.arch not in avoid
    assert len({c.arch for c in children}) == 6  # siblings differ


def test_classic_mutation_over_evaluated_keeps_a_cells_runner_up_as_parent():
    store, archive, space, archs = classic_setting(2, 3)
    (weak,) = put_elites(store, archive, archs[:1])
    # Two more networks land in the same cell as ``weak``: the archive keeps only the
    # best of the three, so a cell's runner-up is no elite.
    for k, arch in enumerate(archs[1:]):
        c = store.new("seed", code=arch, arch=arch)
        c.status, c.charged, c.measures = "evaluated", True, dict(weak.measures)
        c.objective = weak.objective + 10 + k
        add_to_archive(archive, [c])
    runner_up, best = store[weak.id + 1], store[weak.id + 2]
    assert len(archive) == 1 and elite_ids_of(archive) == [best.id]
    avoid = set(archs)
    for pool, expected in (("archive", {best.id}), ("evaluated", {best.id, runner_up.id})):
        emitter = ClassicMutationEmitter(
            archive, space=space, store=store, batch_size=6, parents_top_k=2,
            parents=pool, avoid=avoid, seed=0,
        )  # fmt: skip
        parents = {store[i].parent_ids[0] for i in emitter.ask()}
        assert parents == expected, pool
    with pytest.raises(ValueError, match="parents must be one of"):
        ClassicMutationEmitter(
            archive, space=space, store=store, batch_size=1, parents="all", seed=0
        )


def elite_ids_of(archive) -> list[int]:
    return [int(s) for s in archive.data("solution")]


class FixedEmitter(EmitterBase):
    """A pool member whose every child enters the archive (``good``) or none does."""

    def __init__(self, archive, store, *, good: bool, size: int = 2) -> None:
        super().__init__(
            archive, solution_dim=(), bounds=None, lower_bounds=None, upper_bounds=None
        )
        self.store, self.good, self.size = store, good, size
        self.asked = 0
        self.operator = "good" if good else "bad"

    def ask(self):
        self.asked += 1
        ids = [self.store.new(self.operator, code="x").id for _ in range(self.size)]
        return np.array(ids, dtype=object)

    def tell(self, solution, objective, measures, add_info, **fields):
        pass


def test_bandit_gives_the_budget_to_the_operator_that_improves_the_archive():
    store = CandidateStore()
    archive = make_network_archive(
        dims=(50, 50), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    good = FixedEmitter(archive, store, good=True)
    bad = FixedEmitter(archive, store, good=False)
    scheduler = EvaluatedOnlyBanditScheduler(archive, [bad, good], num_active=1, reselect="all")
    rng = np.random.default_rng(0)
    for _ in range(40):
        ids = scheduler.ask()
        candidates = [store[i] for i in ids]
        for c in candidates:
            c.status = "evaluated" if c.operator == "good" else "failed"
            c.objective = float(rng.uniform(0, 100))
            c.measures = {"width_to_depth": rng.uniform(0, 1), "log10_flops": rng.uniform(0, 1)}
        scheduler.tell(**tell_fields(candidates))
    assert good.asked >= 30 and bad.asked >= 1
    report = {row["operator"]: row for row in scheduler.selection_report()}
    assert report["good"]["selected"] == 2 * good.asked
    assert report["bad"]["successes"] == 0 and report["good"]["success_rate"] > 0.3
    assert len(archive) > 0 and scheduler.emitters == [bad, good]


def test_new_best_counts_rows_that_beat_everything_before_them():
    objective = np.array([5.0, 7.0, 6.0, 9.0, 8.0, 9.5])
    evaluated = np.array([True, True, True, False, True, True])
    assert new_best(objective, evaluated, 6.0).tolist() == [False, True, False, False, True, True]
    assert new_best(objective, evaluated, 9.6).tolist() == [False] * 6
    assert new_best(objective[:1], evaluated[:1], -np.inf).tolist() == [True]


@pytest.mark.parametrize("reward", ["archive", "best"])
def test_bandit_reward_best_prefers_the_emitter_that_raises_the_best(reward):
    """``filler`` fills new cells with poor networks, ``climber`` beats the best in a cell
    that is already full: the archive rates both as successes, ``best`` only the climber."""
    store = CandidateStore()
    archive = make_network_archive(
        dims=(50, 50), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    filler = FixedEmitter(archive, store, good=True)
    climber = FixedEmitter(archive, store, good=True)
    filler.operator, climber.operator = "filler", "climber"
    scheduler = EvaluatedOnlyBanditScheduler(
        archive, [filler, climber], num_active=1, reselect="all", reward=reward
    )
    cells = iter(((k % 50 + 0.5) / 50, (k // 50 + 0.5) / 50) for k in range(1000))
    best = 10.0
    for _ in range(60):
        candidates = [store[i] for i in scheduler.ask()]
        for c in candidates:
            c.status = "evaluated"
            if c.operator == "climber":
                best += 1.0
                c.objective, (x, y) = best, (0.5, 0.5)
            else:
                c.objective, (x, y) = 1.0, next(cells)  # a new cell every time
            c.measures = {"width_to_depth": x, "log10_flops": y}
        scheduler.tell(**tell_fields(candidates))
    report = {row["operator"]: row for row in scheduler.selection_report()}
    if reward == "best":
        # Only the filler's first child, the first network of all, was a new best.
        assert report["filler"]["successes"] == 1 and climber.asked >= 50
    else:  # every child of either enters or improves the archive: a tie UCB1 splits
        assert report["filler"]["success_rate"] == report["climber"]["success_rate"] == 1.0
        assert filler.asked >= 20 and climber.asked >= 20
    with pytest.raises(ValueError, match="reward must be one of"):
        EvaluatedOnlyBanditScheduler(archive, [filler], num_active=1, reward="parent")


def test_bandit_chooses_again_when_the_chosen_emitter_has_nothing():
    store = CandidateStore()
    archive = make_network_archive(
        dims=(5, 5), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    empty = FixedEmitter(archive, store, good=False, size=0)
    full = FixedEmitter(archive, store, good=True)
    scheduler = EvaluatedOnlyBanditScheduler(archive, [empty, full], num_active=1, reselect="all")
    ids = scheduler.ask()
    assert len(ids) == 2 and empty.asked == 1 and full.asked == 1


class SpentEmitter(FixedEmitter):
    """Children that each beat the best, ``rounds`` times; then nothing to propose."""

    def __init__(self, archive, store, *, rounds: int) -> None:
        super().__init__(archive, store, good=True)
        self.rounds = rounds

    def ask(self):
        if self.asked >= self.rounds:
            self.asked += 1
            return np.empty(0, dtype=object)
        return super().ask()


def test_bandit_asks_the_next_emitter_when_the_favourite_has_nothing_left():
    """The best-rated emitter runs dry (crossover whose elites' children are all
    evaluated): each ``ask`` falls back to the others instead of choosing it again and
    ending the run (a CIFAR-10 pool run stopped at 59 of 500 evaluations that way)."""
    store = CandidateStore()
    archive = make_network_archive(
        dims=(50, 50), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
    )
    spent = SpentEmitter(archive, store, rounds=4)
    poor = FixedEmitter(archive, store, good=False)
    other = FixedEmitter(archive, store, good=False)
    scheduler = EvaluatedOnlyBanditScheduler(
        archive, [spent, poor, other], num_active=1, reselect="all", reward="best"
    )
    best = 0.0
    for _ in range(20):
        ids = scheduler.ask()
        assert len(ids) == 2
        for c in (store[i] for i in ids):
            c.status = "evaluated"
            best += 1.0 if c.operator == "good" else 0.0
            c.objective = best if c.operator == "good" else -1.0
            c.measures = {"width_to_depth": 0.5, "log10_flops": 0.5}
        scheduler.tell(**tell_fields([store[i] for i in ids]))
    assert spent.asked > spent.rounds  # still the favourite, asked and found dry
    assert poor.asked + other.asked >= 15


def test_operator_report_counts_shares_and_better_than_parent():
    store = CandidateStore()
    parent = store.new("seed", code="a")
    parent.status, parent.objective, parent.charged = "evaluated", 50.0, True
    for operator, objective, status in [
        ("classic", 60.0, "evaluated"),
        ("classic", 40.0, "evaluated"),
        ("mutation", 70.0, "evaluated"),
        ("mutation", None, "failed"),
        ("mutation", 60.0, "duplicate"),
    ]:
        c = store.new(operator, code="b", parent_ids=(parent.id,))
        c.status, c.objective, c.charged = status, objective, status == "evaluated"
    report = summarize_operators(store)
    assert report["classic"]["evaluations"] == 2 and report["classic"]["better_than_parent"] == 0.5
    assert report["mutation"]["failed"] == 1 and report["mutation"]["duplicates"] == 1
    assert report["mutation"]["new_best"] == 1 and report["classic"]["new_best"] == 1
    assert report["seed"]["better_than_parent"] is None
    assert sum(r["share_of_evaluations"] for r in report.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("space=freeform", "benchmark=digits", "search=local"), "neighbourhoods"),
        (("search=llmatic_bandit", "search.bandit.num_active=4"), "num_active"),
        (("search.scheduler=greedy",), "fixed or bandit"),
        (("search.classic_batch_size=-1",), "classic_batch_size"),
        (("search.parents_top_k=0",), "parents_top_k"),
        (("search.classic_parents=population",), "classic_parents"),
        (("search.mutation_parents=population",), "mutation_parents"),
        (("search=llmatic_bandit", "search.bandit.reward=parent"), "bandit.reward"),
        (("search.feedback_from=parents",), "feedback_from"),
        (("search.overlap=true",), "checkpoint_every > 1"),
        (("+exp=freeform_digits", "search.feedback_elites=2"), "feedback_elites"),
        (("search.stop_objective=best",), "stop_objective"),
        (("search=rea", "search.stop_objective=true"), "stop_objective"),
    ],
)
def test_bad_pool_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(*overrides))


def test_pool_runs_report_operators_and_the_comparison_counts_evaluations_to_target(
    tiny_table,  # noqa: F811
    tmp_path,
):
    table, optimum = tiny_table
    common = (
        "+exp=nasbench201",
        f"benchmark.table={table}",
        "search.budget=30",
        "search.ops=[none,nor_conv_3x3]",
        # A seed inside the tiny table (two ops only).
        "benchmark.seed_arch='|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'",
        "output.plots=false",
    )
    multirun = tmp_path / "multirun"
    for search, seed in [("local", 0), ("local", 1), ("llmatic_bandit", 0), ("classic_pool", 0)]:
        extra = ("llm=scripted",) if search != "local" else ()
        cfg = compose_cfg(*common, f"search={search}", f"seed={seed}", *extra)
        summary = run_experiment(cfg, multirun / f"{search}_{seed}")
        assert summary["evaluations"] == 30
        if search == "llmatic_bandit":
            chosen = {row["operator"]: row["selected"] for row in summary["bandit"]}
            assert set(chosen) == {"mutation", "crossover", "classic"}
            # A choice of an operator with nothing new to ask (crossover, once the tiny
            # space's pairs are spent) counts as one selection without a candidate.
            asked = {op: summary["operators"].get(op, {}).get("candidates", 0) for op in chosen}
            assert all(asked[op] <= chosen[op] for op in chosen) and asked["classic"] > 0
        if search == "classic_pool":
            assert set(summary["operators"]) == {"seed", "classic"}
            assert summary["cost"]["completion_tokens"] == 0
    out = tmp_path / "comparison"
    assert compare_main([str(multirun), "--budgets", "10", "30", "--out", str(out)]) == 0
    report = (out / "comparison.md").read_text()
    assert "Evaluations to reach the best-by-validation architecture" in report
    assert "| p vs local |" in report  # the rank test of evaluations to the target
    local = load_run(multirun / "local_0")
    needed = evaluations_to_reach(local, 95.0)
    charged = [json.loads(line) for line in (multirun / "local_0/candidates.jsonl").open()]
    charged = [c for c in charged if c["charged"]]
    if needed is not None:
        assert charged[needed - 1]["arch"] == optimum
    else:
        assert optimum not in {c["arch"] for c in charged}
    for method in ("local", "llmatic_bandit", "classic_pool"):
        assert f"| {method} |" in report
    assert "### Operators" in report and "| classic_pool | classic | 1 |" in report


def test_random_seeds_join_the_seed_network_in_the_initial_phase(tiny_table, tmp_path):  # noqa: F811
    table, _ = tiny_table
    seed_arch = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    cfg = compose_cfg(
        "+exp=nasbench201",
        f"benchmark.table={table}",
        "search=classic_elitist",
        "search.budget=12",
        "search.random_seeds=5",
        "search.ops=[none,nor_conv_3x3]",
        f"benchmark.seed_arch='{seed_arch}'",
        "output.plots=false",
    )
    summary = run_experiment(cfg, tmp_path / "run")
    assert summary["evaluations"] == 12
    rows = [json.loads(line) for line in (tmp_path / "run/candidates.jsonl").open()]
    seeds = [r for r in rows if r["operator"] == "seed"]
    assert len(seeds) == 6 and {r["iteration"] for r in seeds} == {1}
    assert seeds[0]["arch"] == seed_arch
    assert all(set(parse_arch(r["arch"]).values()) <= {"none", "nor_conv_3x3"} for r in seeds)
    assert len({r["arch"] for r in seeds}) > 1  # random cells, not six copies of the seed
    with pytest.raises(ConfigError, match="random_seeds"):
        validate_config(compose_cfg("search.random_seeds=-1"))


def test_a_search_with_nothing_new_to_propose_stops_with_what_it_found(
    tiny_table,  # noqa: F811
    tmp_path,
    caplog,
):
    """Crossover alone, when the initial phase leaves one elite (the scripted LLM's
    children fall outside the two-op table): the main phase has nothing to ask, and the
    run ends with its results instead of an error (unit test of the spent pairs:
    ``test_emitters.py``)."""
    table, _ = tiny_table
    cfg = compose_cfg(
        "+exp=nasbench201",
        f"benchmark.table={table}",
        "search=crossover_only",
        "llm=scripted",
        "search.budget=64",
        "search.ops=[none,nor_conv_3x3]",
        "benchmark.seed_arch='|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'",
        "output.plots=false",
    )
    summary = run_experiment(cfg, tmp_path / "run")
    assert 1 <= summary["evaluations"] < 64 and summary["best"]["val_accuracy"] is not None
    assert "nothing new to propose" in caplog.text
    assert (tmp_path / "run/summary.json").is_file()


def fake_run(method: str, seed: int, needed: int | None, evaluations: int) -> Run:
    """A run whose validation accuracy first reaches 90 % at evaluation ``needed``."""
    val = np.full(evaluations, 50.0)
    if needed is not None:
        val[needed - 1 :] = 90.0
    return Run(Path(f"{method}_{seed}"), method, seed, "nasbench201", "c", evaluations, val, val)


def test_rank_test_of_evaluations_to_target_censors_at_the_shorter_runs():
    fast = [fake_run("fast", s, n, 500) for s, n in enumerate([10, 20, 30, 40, 50, 60])]
    slow = [fake_run("slow", s, n, 2000) for s, n in enumerate([400, 700, 900, 1500, 1800, None])]
    p_value = reach_rank_test(fast + slow, 90.0, "fast", "slow")
    assert p_value is not None and p_value < 0.01
    # Past 500 evaluations the 2,000-evaluation runs differ, but a 500-evaluation run
    # cannot tell them apart: censored at 501, the two sides tie.
    late = [fake_run("late", s, None, 500) for s in range(6)]
    slower = [
        fake_run("slower", s, n, 2000) for s, n in enumerate([600, 700, 800, 900, 1000, 1100])
    ]
    assert reach_rank_test(late + slower, 90.0, "late", "slower") == 1.0
    assert reach_rank_test(fast[:1] + slow, 90.0, "fast", "slow") is None


@pytest.mark.parametrize(
    "search, label, sizes",
    [
        ("llmatic", "llmatic", {"mutation": 14, "crossover": 2}),
        ("mutation_only", "mutation_only", {"mutation": 16, "crossover": 0}),
        ("crossover_only", "crossover_only", {"mutation": 0, "crossover": 16}),
        ("no_prompt_archive", "no_prompt_archive", {"mutation": 14, "crossover": 2}),
        ("best_of_n", "best_of_n", {"mutation": 16}),
        ("classic_pool", "classic_pool", {"mutation": 0, "crossover": 0, "classic": 4}),
        ("classic_elitist", "classic_elitist", {"mutation": 0, "crossover": 0, "classic": 4}),
        ("llmatic_bandit", "llmatic_bandit", {"mutation": 6, "crossover": 2, "classic": 4}),
        (
            "llmatic_bandit_best",
            "llmatic_bandit_best",
            {"mutation": 6, "crossover": 2, "classic": 4},
        ),
        (
            "llmatic_bandit_best_1edge",
            "llmatic_bandit_best_1edge",
            {"mutation": 6, "crossover": 2, "classic": 4},
        ),
        (
            "llmatic_bandit_elitist_1edge",
            "llmatic_bandit_elitist_1edge",
            {"mutation": 6, "crossover": 2, "classic": 4},
        ),
    ],
)
def test_ablation_configs_build_their_pools(search, label, sizes, table):
    from llmatic.archives import make_network_archive as archive_of
    from llmatic.evaluation import Evaluator
    from llmatic.run.build import build_phases, build_space

    cfg = compose_cfg(
        "benchmark=nasbench201", f"benchmark.table={table}", f"search={search}", "llm=scripted"
    )
    validate_config(cfg)
    assert cfg.search.label == label and cfg.run_name.endswith(f"_{label}_seed0")
    space = build_space(cfg)
    assert space.max_changes == (
        1 if search.endswith("_1edge") else 6 if search == "best_of_n" else 2
    )
    evaluator = Evaluator(space=space, sandbox=None, benchmark=None)
    phases, _, _ = build_phases(
        cfg,
        network_archive=archive_of(
            dims=(2, 2), width_to_depth_range=(0, 1), log10_flops_range=(0, 1)
        ),
        store=CandidateStore(),
        evaluator=evaluator,
        llm=None,
    )
    (_, main, _) = phases[-1]
    assert {e.operator: e.batch_size for e in main.emitters if e.batch_size} == {
        op: size for op, size in sizes.items() if size
    }
    mutation_parents = {e.parents for e in main.emitters if e.operator == "mutation"}
    assert mutation_parents == ({"evaluated"} if "elitist_1edge" in search else {"archive"})
    pools = {e.parents for e in main.emitters if e.operator == "classic"}
    assert pools == (
        {"evaluated"}
        if search in ("classic_elitist", "llmatic_bandit_best") or search.endswith("_1edge")
        else {"archive"}
        if "classic" in sizes
        else set()
    )


def test_classic_pool_goes_on_when_every_elite_is_explored(tiny_table, tmp_path):  # noqa: F811
    """The archive fills early on a small space: the classic mutation then takes the
    fittest evaluated networks with unexplored neighbours, and the whole space is searched
    without a run of duplicates."""
    table, optimum = tiny_table
    cfg = compose_cfg(
        "+exp=nasbench201",
        f"benchmark.table={table}",
        "search=classic_pool",
        "search.budget=64",
        "search.max_candidates=200",
        "search.ops=[none,nor_conv_3x3]",
        "benchmark.seed_arch='|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'",
        "output.plots=false",
    )
    summary = run_experiment(cfg, tmp_path)
    assert summary["evaluations"] == 64  # every arch of the space
    assert summary["candidates"] < 200 and summary["best"]["arch"] == optimum


def test_annealed_temperature_cools_over_the_budget(tmp_path):
    """Each iteration's temperature is ``high - (high - low) * charged / budget``, with the
    evaluations charged before it (on the real table, where every child is in the space)."""
    if not SHARED_CSV.is_file():
        pytest.skip(f"shared NB201 table absent at {SHARED_CSV}")
    cfg = compose_cfg(
        "+exp=nasbench201",
        f"benchmark.table={SHARED_CSV}",
        "search=mutation_only",
        "llm=scripted",
        "search.budget=40",
        "search.temperature.schedule=anneal",
        "search.temperature.jitter=0.0",
        "output.plots=false",
    )
    run_experiment(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run/candidates.jsonl").open()]
    iterations = sorted({r["iteration"] for r in rows if r["temperature"] is not None})
    assert len(iterations) >= 3
    for iteration in iterations:
        charged = sum(r["charged"] for r in rows if r["iteration"] < iteration)
        expected = 1.0 - 0.9 * charged / 40
        got = [r["temperature"] for r in rows if r["iteration"] == iteration]
        assert got == pytest.approx([expected] * len(got)), iteration
    assert min(r["temperature"] for r in rows if r["temperature"] is not None) < 0.6
