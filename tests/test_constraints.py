"""Constrained decoding of cell edits: the grammar, the token mask, the real model."""

from __future__ import annotations

import random

import pytest
from conftest import edges_completion

from llmatic.llm.base import Generation
from llmatic.llm.constraints import VocabularyTrie, allowed_tokens
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch, parse_arch
from llmatic.nb201.inspect import inspect_cell
from llmatic.nb201.ops import OP_NAMES
from llmatic.nb201.prompts import CellPrompter, EdgeLinesConstraint, _edge_ops

PARENT = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)


def complete(constraint: EdgeLinesConstraint, rng: random.Random) -> str:
    """Samples a completion character-run by character-run, as a decoder would."""
    text = ""
    for _ in range(1000):
        options = constraint.continuations(text)
        assert options is not None, f"left the grammar at {text!r}"
        if not options:
            return text
        option = rng.choice(options)
        text += option[: rng.randint(1, len(option))]
    raise AssertionError("no end")


def arch_of_completion(text: str) -> str:
    ops = {}
    first, *rest = text.split("\n")
    ops[EDGES[0]] = first.split('"')[0]
    for line, edge in zip(rest, EDGES[1:], strict=False):
        ops[edge] = line.split('OPS["')[1].split('"')[0]
    return format_arch(ops)


def test_every_completion_of_the_grammar_is_a_valid_cell():
    prompter = CellPrompter(mutation_prompts=["m"], crossover_prompt="x")
    request = prompter.mutation(arch_to_code(PARENT), "m", 0.5)
    rng = random.Random(0)
    for _ in range(30):
        text = complete(EdgeLinesConstraint(), rng)
        code = prompter.to_code(request, Generation(text=text, num_tokens=1))
        assert inspect_cell({"code": code, "channels": 4, "size": 8})["arch"] == arch_of_completion(
            text
        )


def test_the_trust_region_bounds_the_edges_changed():
    rng = random.Random(1)
    reference = _edge_ops(arch_to_code(PARENT))
    parent = parse_arch(PARENT)
    for _ in range(40):
        constraint = EdgeLinesConstraint(reference=reference, min_changes=1, max_changes=2)
        child = parse_arch(arch_of_completion(complete(constraint, rng)))
        assert 1 <= sum(child[e] != parent[e] for e in EDGES) <= 2


def test_the_grammar_steers_away_from_evaluated_archs():
    reference = _edge_ops(arch_to_code(PARENT))
    # Every one-edge change of the last edge but one is already evaluated.
    ops = parse_arch(PARENT)
    seen = set()
    for op in OP_NAMES:
        if op not in (ops[(2, 3)], "none"):
            seen.add(format_arch({**ops, (2, 3): op}))
    prefix = edges_completion(PARENT).rsplit('OPS["', 1)[0] + 'OPS["'
    constraint = EdgeLinesConstraint(reference=reference, min_changes=1, max_changes=1, avoid=seen)
    assert constraint.continuations(prefix) == ['none"](C)\n']
    # With everything evaluated, it still completes (the loop records a duplicate).
    seen.add(format_arch({**ops, (2, 3): "none"}))
    assert constraint.continuations(prefix)


def test_steering_works_at_every_edge_not_only_the_last():
    reference = _edge_ops(arch_to_code(PARENT))
    ops = parse_arch(PARENT)
    # Every one-edge change of the first edge is evaluated: the first choice must keep it.
    seen = {format_arch({**ops, (0, 1): op}) for op in OP_NAMES if op != ops[(0, 1)]}
    constraint = EdgeLinesConstraint(reference=reference, min_changes=1, max_changes=1, avoid=seen)
    assert [o.split('"')[0] for o in constraint.continuations("")] == [ops[(0, 1)]]
    assert constraint.has_new()


def test_exhausted_parents_are_reported_and_passed_over():
    ops = parse_arch(PARENT)
    region = {
        format_arch({**ops, edge: op}) for edge in EDGES for op in OP_NAMES if op != ops[edge]
    }
    prompter = CellPrompter(
        mutation_prompts=["m"], crossover_prompt="x", min_changes=1, max_changes=1, avoid=region
    )
    assert not prompter.can_vary(arch_to_code(PARENT))  # all 24 one-edge changes are taken
    other = format_arch({**ops, (0, 1): "none", (1, 2): "none"})
    assert prompter.can_vary(arch_to_code(other))
    # A crossover of a cell with itself can only give that cell back.
    assert prompter.can_vary(arch_to_code(PARENT), arch_to_code(PARENT))
    region.add(PARENT)
    assert not prompter.can_vary(arch_to_code(PARENT), arch_to_code(PARENT))
    unconstrained = CellPrompter(mutation_prompts=["m"], crossover_prompt="x", constrained=False)
    assert unconstrained.can_vary(arch_to_code(PARENT))


def test_crossover_grammar_takes_each_edge_from_a_parent():
    a, b = parse_arch(PARENT), {e: "none" for e in EDGES}
    constraint = EdgeLinesConstraint(allowed=[sorted({a[e], b[e]}) for e in EDGES])
    rng = random.Random(2)
    for _ in range(20):
        child = parse_arch(arch_of_completion(complete(constraint, rng)))
        assert all(child[e] in (a[e], b[e]) for e in EDGES)


def test_text_outside_the_grammar_is_detected():
    assert EdgeLinesConstraint().continuations("conv_9x9") is None
    assert EdgeLinesConstraint().continuations('none"](C)\n        self.edge_9') is None


def test_trie_finds_tokens_that_are_prefixes():
    trie = VocabularyTrie(["a", "ab", "abc", "b", "", "abd"])
    assert sorted(trie.prefixes_of("abcx")) == [0, 1, 2]
    assert trie.prefixes_of("x") == []


def test_allowed_tokens_are_those_that_start_an_option():
    trie = VocabularyTrie(["n", "one", "none", "skip", '"', "x"])
    assert allowed_tokens(["none"], trie, eos_id=5) == [0, 2]
    assert allowed_tokens(["one", "skip_connect"], trie, eos_id=5) == [1, 3]
    assert allowed_tokens([], trie, eos_id=5) == [5]  # complete: only end-of-sequence


@pytest.mark.slow
def test_real_model_writes_valid_local_edits_under_the_grammar():
    from llmatic.llm.transformers_backend import TransformersLLM
    from llmatic.nb201.prompts import STOP

    llm = TransformersLLM(
        max_new_tokens=150, stop=STOP["edges"], batch_size=8, seed=0, num_threads=1
    )
    prompter = CellPrompter(mutation_prompts=["Improve the above cell."], crossover_prompt="x")
    requests = [
        prompter.mutation(arch_to_code(PARENT), "Improve the above cell.", 0.7) for _ in range(8)
    ]
    parent = parse_arch(PARENT)
    for request, generation in zip(requests, llm.generate(requests), strict=True):
        arch = inspect_cell({"code": prompter.to_code(request, generation), "channels": 4})["arch"]
        assert 1 <= sum(parse_arch(arch)[e] != parent[e] for e in EDGES) <= 2


def test_siblings_in_a_batch_steer_apart():
    reference = _edge_ops(arch_to_code(PARENT))
    proposed: set[str] = set()
    prefix = edges_completion(PARENT).rsplit('OPS["', 1)[0] + 'OPS["'
    first = EdgeLinesConstraint(
        reference=reference, min_changes=1, max_changes=1, avoid=proposed, record=proposed
    )
    second = EdgeLinesConstraint(
        reference=reference, min_changes=1, max_changes=1, avoid=proposed, record=proposed
    )
    assert first.continuations(prefix + "none") == ['"](C)\n']
    assert proposed == {format_arch({**parse_arch(PARENT), (2, 3): "none"})}
    # The sibling may no longer end on the same arch ...
    assert all(not option.startswith("none") for option in second.continuations(prefix))
    # ... while the first row, already written, stays valid and completes.
    assert first.continuations(prefix + 'none"](C)\n') == []


def test_a_row_is_recorded_as_soon_as_the_trust_region_decides_its_arch():
    """Two changes made by the second edge leave one completion: siblings sampled in the
    same step must see that arch at once, not when the row writes its last edge."""
    reference = _edge_ops(arch_to_code(PARENT))
    proposed: set[str] = set()
    first, second = (
        EdgeLinesConstraint(
            reference=reference, min_changes=1, max_changes=1, avoid=proposed, record=proposed
        )
        for _ in range(2)
    )
    assert first.continuations("none") is not None  # edge 0 changed: the rest is forced
    decided = format_arch({**parse_arch(PARENT), EDGES[0]: "none"})
    assert proposed == {decided}
    # The sibling, still at the first edge, is steered off the decided arch.
    assert "none" not in [option.split('"')[0] for option in second.continuations("")]
    # An undecided prefix records nothing.
    third = EdgeLinesConstraint(
        reference=reference, min_changes=1, max_changes=2, avoid=proposed, record=proposed
    )
    third.continuations("avg_pool_3x3")
    assert proposed == {decided}


def test_siblings_do_not_crowd_into_a_subtree_with_too_few_new_archs():
    """A row that has committed to a first edge claims that subtree; a sibling is steered
    elsewhere when the subtree has no new arch left for it besides the claimed one."""
    allowed = [["none", "skip_connect"]] + [["none"]] * 4 + [["nor_conv_1x1", "nor_conv_3x3"]]

    def arch(first: str, last: str) -> str:
        return format_arch(
            dict(zip(EDGES, [first, "none", "none", "none", "none", last], strict=True))
        )

    proposed = {arch("none", "nor_conv_1x1")}  # "none" first leaves one new arch
    claims: dict = {}

    def row() -> EdgeLinesConstraint:
        return EdgeLinesConstraint(allowed=allowed, avoid=proposed, record=proposed, claims=claims)

    first, second = row(), row()
    assert [o.split('"')[0] for o in second.continuations("")] == ["none", "skip_connect"]
    first.continuations("none")
    assert claims[first] == ["none"]
    assert [o.split('"')[0] for o in second.continuations("")] == ["skip_connect"]
    # Once the first row's arch is decided its claim is gone, and the sibling may enter a
    # subtree that still has room.
    ops = ["none", "none", "none", "none", "none", "nor_conv_3x3"]
    assert first.continuations("".join(o + f for o, f in zip(ops, first.fixed, strict=True))) == []
    assert first not in claims and arch("none", "nor_conv_3x3") in proposed
