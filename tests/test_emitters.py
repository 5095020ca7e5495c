"""LLM emitters with a scripted LLM: parents, prompts, temperatures, curiosity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import ScriptedLLM, edges_completion

from llmatic.archives import PromptArchive, make_network_archive
from llmatic.candidate import CandidateStore
from llmatic.emitters import (
    LLMCrossoverEmitter,
    LLMInitialEmitter,
    LLMMutationEmitter,
    TemperatureRule,
)
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch, parse_arch
from llmatic.nb201.prompts import CellPrompter
from llmatic.search.loop import tell_fields
from llmatic.search.scheduler import EvaluatedOnlyScheduler

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",
]
PROMPTS = ["p0", "p1", "p2", "p3"]


@pytest.fixture
def setup():
    store = CandidateStore()
    network = make_network_archive(
        dims=(5, 5), width_to_depth_range=(0, 5), log10_flops_range=(0, 5)
    )
    prompts = PromptArchive(
        prompts=[*PROMPTS, "cross"], temperature_bins=9, temperature_range=(0.1, 1.0)
    )
    prompter = CellPrompter(mutation_prompts=PROMPTS, crossover_prompt="cross")
    return store, network, prompts, prompter


def add_elites(store, network, scores):
    """Puts one evaluated candidate per score into distinct cells of the archive."""
    candidates = []
    for k, score in enumerate(scores):
        c = store.new("seed", code=arch_to_code(ARCHS[k % len(ARCHS)]))
        c.status, c.objective, c.arch = "evaluated", score, ARCHS[k % len(ARCHS)]
        c.measures = {"width_to_depth": 0.5 + k, "log10_flops": 0.5 + k}
        candidates.append(c)
    fields = tell_fields(candidates)
    del fields["evaluated"]
    network.add(solution=np.array([c.id for c in candidates], dtype=object), **fields)
    return candidates


def make(cls, setup, llm, **kwargs):
    store, network, prompts, prompter = setup
    return cls(
        network, prompt_archive=prompts, store=store, llm=llm, prompter=prompter, seed=0, **kwargs
    )


def test_mutation_uses_top_k_parents_and_one_llm_call(setup):
    store, network, prompts, _ = setup
    elites = add_elites(store, network, [10.0, 90.0, 80.0, 70.0])
    llm = ScriptedLLM([edges_completion(ARCHS[0])])
    emitter = make(LLMMutationEmitter, setup, llm, batch_size=12, parents_top_k=2)
    ids = emitter.ask()
    assert len(ids) == 12 and len(llm.calls) == 1 and len(llm.calls[0]) == 12
    parents = {store[i].parent_ids[0] for i in ids}
    assert parents <= {elites[1].id, elites[2].id}  # the two fittest only
    assert all(
        store[i].operator == "mutation" and store[i].code.startswith("class Cell") for i in ids
    )
    # The parent's code is in the prompt, followed by the instruction.
    request = llm.calls[0][0]
    assert store[store[ids[0]].parent_ids[0]].code.strip() in request.prompt
    assert store[ids[0]].prompt in request.prompt


def test_mutation_over_evaluated_networks_takes_a_cells_runner_up_as_parent(setup):
    store, network, prompts, _ = setup
    elites = add_elites(store, network, [10.0, 90.0, 80.0])
    # The fittest network lost its cell to nobody: it is evaluated but no elite (as a
    # runner-up whose cell holds a better network would be, for the archive's parents).
    runner_up = store.new("mutation", code=arch_to_code(ARCHS[3]))
    runner_up.status, runner_up.objective, runner_up.arch = "evaluated", 95.0, ARCHS[3]

    def parents_of(pool: str) -> set[int]:
        llm = ScriptedLLM([edges_completion(ARCHS[0])])
        emitter = make(LLMMutationEmitter, setup, llm, batch_size=8, parents_top_k=1, parents=pool)
        return {store[i].parent_ids[0] for i in emitter.ask()}

    assert parents_of("archive") == {elites[1].id}
    assert parents_of("evaluated") == {runner_up.id}
    with pytest.raises(ValueError, match="parents must be one of"):
        parents_of("population")


def test_mutation_with_feedback_shows_other_elites_worst_first(setup):
    store, network, prompts, _ = setup
    elites = add_elites(store, network, [10.0, 90.0, 80.0, 70.0])
    llm = ScriptedLLM([edges_completion(ARCHS[0])])
    emitter = make(LLMMutationEmitter, setup, llm, batch_size=6, parents_top_k=1, feedback_elites=2)
    emitter.ask()
    prompt = llm.calls[0][0].prompt
    # The parent is the best elite (90 %): the next two are shown, worst first, then it.
    assert prompt.index("accuracy 70.0 %") < prompt.index("accuracy 80.0 %")
    assert "accuracy 90.0 %" not in prompt and "accuracy 10.0 %" not in prompt
    shown_then_parent = prompt.split("# The cell to edit:\n")
    assert len(shown_then_parent) == 2
    assert shown_then_parent[1].startswith(elites[1].code.strip())
    assert elites[2].code.strip() in shown_then_parent[0]
    plain = make(LLMMutationEmitter, setup, ScriptedLLM(["x"]), batch_size=1)
    plain.ask()
    assert "accuracy" not in plain.llm.calls[0][0].prompt


def test_mutation_with_the_parents_history_shows_its_best_children_then_it(setup):
    store, network, _, _ = setup
    (parent,) = add_elites(store, network, [60.0])
    for k, score in enumerate([55.0, 70.0, 65.0]):  # children of the parent, evaluated
        child = store.new("mutation", code=arch_to_code(ARCHS[k + 1]), parent_ids=(parent.id,))
        child.status, child.objective = "evaluated", score
    failed = store.new("mutation", code="broken", parent_ids=(parent.id,))
    failed.status = "failed"
    llm = ScriptedLLM([edges_completion(ARCHS[0])])
    emitter = make(
        LLMMutationEmitter, setup, llm, batch_size=1, feedback_elites=2, feedback_from="children"
    )
    emitter.ask()
    prompt = llm.calls[0][0].prompt
    # The two best children, worst first, then the parent with its accuracy, then the cell.
    order = [prompt.index(f"accuracy {a} %") for a in ("65.0", "70.0", "60.0")]
    assert order == sorted(order) and "accuracy 55.0 %" not in prompt and "broken" not in prompt
    assert prompt.split("# The cell to edit:\n")[1].startswith(parent.code.strip())
    with pytest.raises(ValueError, match="feedback_from"):
        make(LLMMutationEmitter, setup, llm, batch_size=1, feedback_from="parents")


def test_seed_only_mutation_always_edits_the_seed(setup):
    store, network, _, _ = setup
    add_elites(store, network, [10.0, 90.0, 80.0])  # candidate 0 is the first: the seed
    llm = ScriptedLLM([edges_completion(ARCHS[3])])
    ids = make(LLMMutationEmitter, setup, llm, batch_size=8, seed_only=True).ask()
    assert {store[i].parent_ids for i in ids} == {(0,)}


def test_mutation_asks_nothing_from_an_empty_archive(setup):
    llm = ScriptedLLM(["x"])
    assert len(make(LLMMutationEmitter, setup, llm, batch_size=4).ask()) == 0
    assert llm.calls == []


def test_mutation_prefers_curious_prompt_cells_and_moves_temperature(setup):
    store, network, prompts, _ = setup
    add_elites(store, network, [50.0])
    prompts.credit([2, 0], [0.5, 0.8], [3.0, -1.0], [True, False])
    emitter = make(
        LLMMutationEmitter,
        setup,
        ScriptedLLM(["x"]),
        batch_size=40,
        prompts_top_k=1,
        explore=0.0,
        temperature=TemperatureRule(step=0.05, jitter=0.0),
    )
    ids = emitter.ask()
    assert {store[i].prompt_id for i in ids} == {2}
    # The cell's last child improved: temperature goes up by one step.
    assert {round(store[i].temperature, 3) for i in ids} == {0.55}


def test_temperature_rule_clips_and_steps():
    rule = TemperatureRule(step=0.05, jitter=0.0, low=0.1, high=1.0)
    rng = np.random.default_rng(0)
    assert rule.next(0.5, False, rng) == pytest.approx(0.45)
    assert rule.next(0.99, True, rng) == 1.0
    assert rule.next(0.12, False, rng) == 0.1


def test_temperature_schedules_constant_and_anneal():
    rng = np.random.default_rng(0)
    constant = TemperatureRule(schedule="constant", initial=0.4, jitter=0.3)
    assert constant.next(0.9, True, rng, evaluations=50) == 0.4
    assert constant.fresh(50, rng) == 0.4
    anneal = TemperatureRule(schedule="anneal", low=0.2, high=1.0, jitter=0.0, horizon=100)
    # high at the start, low from the horizon on, linear between; the cell is ignored
    assert anneal.fresh(0, rng) == pytest.approx(1.0)
    assert anneal.next(0.3, False, rng, evaluations=50) == pytest.approx(0.6)
    assert anneal.next(0.3, True, rng, evaluations=100) == pytest.approx(0.2)
    assert anneal.next(0.9, True, rng, evaluations=500) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="horizon"):
        TemperatureRule(schedule="anneal")
    with pytest.raises(ValueError, match="schedule"):
        TemperatureRule(schedule="cosine")


def test_annealed_mutation_cools_with_charged_evaluations(setup):
    store, network, prompts, _ = setup
    add_elites(store, network, [50.0, 40.0])
    prompts.credit([2], [0.5], [3.0], [True])
    rule = TemperatureRule(schedule="anneal", low=0.1, high=1.0, jitter=0.0, horizon=4)
    emitter = make(
        LLMMutationEmitter, setup, ScriptedLLM(["x"]), batch_size=6, explore=0.5, temperature=rule
    )
    hot = emitter.ask()  # no evaluation charged yet: curious cell or not, T = high
    assert {round(store[i].temperature, 3) for i in hot} == {1.0}
    for c in list(store)[:2]:
        c.charged = True
    warm = emitter.ask()  # 2 of 4 charged: half way down
    assert {round(store[i].temperature, 3) for i in warm} == {0.55}


def test_tell_credits_curiosity_by_outcome(setup):
    store, network, prompts, _ = setup
    add_elites(store, network, [50.0])
    emitter = make(
        LLMMutationEmitter,
        setup,
        ScriptedLLM(["x"]),
        batch_size=4,
        explore=1.0,
        temperature=TemperatureRule(jitter=0.0),
    )
    ids = emitter.ask()  # explore=1: random prompts at the initial temperature 0.6
    outcomes = ["evaluated", "evaluated", "failed", "skipped"]
    for i, status in zip(ids, outcomes, strict=True):
        store[i].status = status
    add_info = {"status": np.array([2, 0, 0, 0]), "value": np.zeros(4)}
    emitter.tell(ids, np.zeros(4), np.zeros((4, 2)), add_info)
    expected: dict[int, float] = {}
    for i, delta in zip(ids[:3], [1.0, -0.5, -1.0], strict=True):
        expected[store[i].prompt_id] = expected.get(store[i].prompt_id, 0.0) + delta
    got = {
        int(round(m[0])): o
        for m, o in zip(
            prompts.archive.data("measures"), prompts.archive.data("objective"), strict=True
        )
    }
    assert got == expected  # the skipped child is not credited
    assert prompts.archive.data("uses").sum() == 3


def test_broken_completions_become_failed_candidates(setup):
    store, network, _, _ = setup
    add_elites(store, network, [50.0])
    emitter = make(LLMMutationEmitter, setup, ScriptedLLM(["", "nor_conv_3x3'](C\n"]), batch_size=2)
    ids = emitter.ask()
    kinds = {store[i].error_kind for i in ids}
    assert all(store[i].status == "failed" for i in ids)
    assert kinds <= {"syntax_error", "no_code"}


def test_crossover_needs_two_elites_and_uses_two_distinct_parents(setup):
    store, network, _, _ = setup
    llm = ScriptedLLM([edges_completion(ARCHS[1])])
    emitter = make(LLMCrossoverEmitter, setup, llm, batch_size=6)
    add_elites(store, network, [50.0])
    assert len(emitter.ask()) == 0
    add_elites(store, network, [60.0, 70.0])
    ids = emitter.ask()
    assert len(ids) == 6 and len(llm.calls) == 1
    for i in ids:
        a, b = store[i].parent_ids
        assert a != b
        assert store[i].prompt_id == len(PROMPTS)  # the crossover row of the prompt archive
        request = llm.calls[0][list(ids).index(i)]
        assert store[a].code.strip() in request.prompt and store[b].code.strip() in request.prompt


def recombinations(a: str, b: str) -> set[str]:
    """Every cell a crossover of ``a`` and ``b`` can write under the grammar."""
    ops_a, ops_b = parse_arch(a), parse_arch(b)
    choices = [sorted({ops_a[e], ops_b[e]}) for e in EDGES]
    return {format_arch(dict(zip(EDGES, ops, strict=True))) for ops in itertools.product(*choices)}


def test_crossover_finds_the_one_pair_left_and_asks_nothing_once_all_are_spent(setup):
    store, network, _, _ = setup
    add_elites(store, network, [50.0, 60.0, 70.0, 80.0])
    pairs = list(itertools.combinations(range(4), 2))
    children = {pair: recombinations(ARCHS[pair[0]], ARCHS[pair[1]]) for pair in pairs}
    # One cell only the pair (2, 3) can write; every other recombination is evaluated.
    (left,) = [
        x for x in sorted(children[(2, 3)])
        if not any(x in children[p] for p in pairs if p != (2, 3))
    ][:1]  # fmt: skip
    evaluated = set().union(*children.values()) - {left}
    prompter = CellPrompter(mutation_prompts=PROMPTS, crossover_prompt="cross", avoid=evaluated)
    llm = ScriptedLLM([edges_completion(left)])
    emitter = make(LLMCrossoverEmitter, (*setup[:3], prompter), llm, batch_size=4)
    ids = emitter.ask()
    assert len(ids) >= 1 and {tuple(sorted(store[i].parent_ids)) for i in ids} == {(2, 3)}
    evaluated.add(left)
    calls = len(llm.calls)
    assert len(emitter.ask()) == 0 and len(llm.calls) == calls  # no LLM call for duplicates


def test_initial_emitter_seeds_then_children_then_done(setup):
    store, *_ = setup
    llm = ScriptedLLM([edges_completion(ARCHS[2])])
    emitter = make(LLMInitialEmitter, setup, llm, seed_code=arch_to_code(ARCHS[1]), batch_size=5)
    (seed_id,) = emitter.ask()
    assert store[seed_id].operator == "seed" and llm.calls == []
    children = emitter.ask()
    assert len(children) == 5
    assert all(store[i].parent_ids == (seed_id,) and store[i].temperature == 0.6 for i in children)
    assert emitter.done and len(emitter.ask()) == 0


def test_scheduler_adds_only_evaluated_candidates(setup):
    store, network, _, _ = setup
    llm = ScriptedLLM([edges_completion(ARCHS[0])])
    initial = make(LLMInitialEmitter, setup, llm, seed_code=arch_to_code(ARCHS[1]), batch_size=3)
    scheduler = EvaluatedOnlyScheduler(network, [initial])
    scheduler.ask()
    scheduler.tell(**tell_fields([store[0]]))  # pending: not evaluated
    assert len(network) == 0
    ids = scheduler.ask()
    for k, i in enumerate(ids):
        c = store[i]
        c.status = "evaluated" if k == 0 else "failed"
        c.objective, c.measures = 70.0, {"width_to_depth": 1.0 + k, "log10_flops": 1.0 + k}
    scheduler.tell(**tell_fields([store[i] for i in ids]))
    assert len(network) == 1 and network.data("solution")[0] == ids[0]
