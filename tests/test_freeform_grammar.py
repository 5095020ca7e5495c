"""The grammar of network code (llmatic.spaces.freeform_grammar) and its use in prompts."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from llmatic.llm.base import Generation
from llmatic.llm.grammar import write
from llmatic.prompting import PromptSettings
from llmatic.spaces.freeform import FreeformSpace
from llmatic.spaces.freeform_grammar import (
    ConvBlock,
    HiddenLayer,
    NetworkGrammar,
    NetworkSpec,
    mutate_spec,
    parse_spec,
    write_spec,
)
from llmatic.spaces.freeform_inspect import build_network, identify_network

SHAPE, CLASSES = (1, 8, 8), 10
GRAMMAR = NetworkGrammar(input_shape=SHAPE, num_classes=CLASSES)
PREFILL = "class Net(nn.Module):\n"


def random_text(rng: np.random.Generator, grammar: NetworkGrammar = GRAMMAR) -> str:
    return write(grammar.program, lambda choice: int(rng.integers(len(choice.options))))[0]


def test_llmatics_seed_is_in_the_language_as_written():
    seed = FreeformSpace(input_shape=SHAPE, num_classes=CLASSES).seed_code()
    spec = parse_spec(GRAMMAR, seed[len(PREFILL) :])
    assert spec == NetworkSpec(convs=(ConvBlock(channels=1, kernel=1),))
    assert PREFILL + write_spec(GRAMMAR, spec) == seed


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 5, 7)])
def test_every_text_builds_passes_the_static_check_and_returns_the_logits(shape):
    grammar = NetworkGrammar(input_shape=shape, num_classes=7)
    rng = np.random.default_rng(sum(shape))
    for _ in range(25):
        body = random_text(rng, grammar)
        network = build_network(PREFILL + body, input_shape=shape, num_classes=7)
        assert network is not None  # build_network checked the (2, 7) output
        assert write_spec(grammar, parse_spec(grammar, body)) == body


def test_the_spec_is_what_the_code_does():
    spec = NetworkSpec(
        convs=(
            ConvBlock(channels=16, kernel=3, norm=True, pool="max"),
            ConvBlock(channels=16, kernel=5, activation="gelu", residual=True),
        ),
        global_pool=True,
        hidden=(HiddenLayer(features=64, dropout=0.25),),
    )
    body = write_spec(GRAMMAR, spec)
    assert parse_spec(GRAMMAR, body) == spec
    assert "self.conv1 = nn.Conv2d(1, 16, 3, padding=1)" in body
    assert "self.conv2 = nn.Conv2d(16, 16, 5, padding=2)" in body
    assert "self.fc1 = nn.Linear(16, 64)" in body  # after global pooling
    assert "x = self.pool1(F.relu(self.bn1(self.conv1(x))))" in body
    assert "x = x + F.gelu(self.conv2(x))" in body
    assert "x = self.drop1(F.relu(self.fc1(x)))" in body
    measures = identify_network(
        {"code": PREFILL + body, "input_shape": list(SHAPE), "num_classes": CLASSES}
    )["measures"]
    assert (measures["depth"], measures["width"]) == (4, 64)


def test_a_spec_the_grammar_cannot_write_is_written_as_the_nearest_network_that_builds():
    spec = NetworkSpec(
        convs=(
            ConvBlock(channels=24, residual=True),  # 1 -> 24 channels: no residual; 24 -> 16 or 32
            *[ConvBlock(channels=8, pool="avg")] * 4,  # 8x8 pools three times at most
        ),
        hidden=(HiddenLayer(features=10),),  # 10 would read as the last layer
    )
    written = parse_spec(GRAMMAR, write_spec(GRAMMAR, spec))
    assert written.convs[0].residual is False and written.convs[0].channels in (16, 32)
    assert [block.pool for block in written.convs] == [None, "avg", "avg", "avg", None]
    assert all(layer.features != CLASSES for layer in written.hidden)
    build_network(PREFILL + write_spec(GRAMMAR, written), input_shape=SHAPE, num_classes=CLASSES)


def test_the_classic_mutation_makes_one_real_change_inside_the_language():
    rng = np.random.default_rng(0)
    spec = parse_spec(GRAMMAR, random_text(rng))
    for _ in range(40):
        child = mutate_spec(GRAMMAR, spec, rng=rng)
        assert write_spec(GRAMMAR, child) != write_spec(GRAMMAR, spec)
        build_network(PREFILL + write_spec(GRAMMAR, child), input_shape=SHAPE, num_classes=CLASSES)
        spec = child


def prompter(constrained: bool = True):
    space = FreeformSpace(input_shape=SHAPE, num_classes=CLASSES)
    settings = PromptSettings(
        mutation_prompts=["Add a layer"],
        crossover_prompt="Combine",
        scope="class",
        prompt_format="completion",
        chat_template=None,
        constrained=constrained,
    )
    return space, space.prompter(settings, avoid=set())


def copy_as_far_as_allowed(constraint, target: str) -> str:
    """Writes ``target`` one character at a time while the grammar allows it, then the
    first option it offers: a model that only ever copies its parent."""
    text = ""
    while True:
        options = constraint.continuations(text)
        assert options is not None, f"left the language at {text!r}"
        if not options:
            return text
        following = [o for o in options if target[len(text) :].startswith(o[:1])]
        text += (following or sorted(options))[0][:1]


def test_a_sample_that_copies_its_parent_is_steered_to_a_new_network():
    space, prompts = prompter()
    seed = space.seed_code()
    written = set()
    for _ in range(3):
        request = prompts.mutation(seed, "Add a layer", 0.6)
        assert request.constraint is not None and request.prefill == PREFILL
        body = copy_as_far_as_allowed(request.constraint, seed[len(PREFILL) :])
        code = prompts.to_code(request, Generation(text=body, num_tokens=1))
        assert code != seed.rstrip() and body not in written
        build_network(code, input_shape=SHAPE, num_classes=CLASSES)
        written.add(body)
    assert prompts.proposed == written  # the checkpoint saves these


def test_without_constrained_decoding_the_model_writes_freely():
    _, prompts = prompter(constrained=False)
    assert prompts.mutation("class Net(nn.Module): ...", "Add a layer", 0.6).constraint is None


TWO_CONVS = NetworkSpec(
    convs=(ConvBlock(channels=16, pool="max"), ConvBlock(channels=16)),
    hidden=(HiddenLayer(features=64),),
)


def sample_within(max_changes: int, seed: int) -> list[NetworkSpec]:
    rng = np.random.default_rng(seed)
    program = functools.partial(GRAMMAR.program, reference=TWO_CONVS, max_changes=max_changes)
    return [
        write(program, lambda choice: int(rng.integers(len(choice.options))))[1] for _ in range(200)
    ]


def test_the_trust_region_keeps_a_sample_near_its_parent():
    assert set(sample_within(0, seed=1)) == {parse_spec(GRAMMAR, write_spec(GRAMMAR, TWO_CONVS))}
    near = sample_within(1, seed=2)
    # One change: never both convolutions dropped (that is two), never two layers changed.
    assert all(len(spec.convs) >= 1 for spec in near)
    assert all(len(spec.convs) + len(spec.hidden) >= 2 for spec in near)
    assert len(set(near)) > 10  # yet it can change any one thing
    changed_blocks = [
        sum(a != b for a, b in zip(spec.convs, TWO_CONVS.convs, strict=False)) for spec in near
    ]
    assert max(changed_blocks) <= 1
    # With room enough, the whole language is open: some sample drops every convolution.
    assert any(not spec.convs for spec in sample_within(10, seed=3))


def test_a_mutation_request_carries_the_trust_region_of_its_parent():
    space, prompts = prompter()
    parent = PREFILL + write_spec(GRAMMAR, TWO_CONVS)
    request = prompts.mutation(parent, "Add a layer", 0.6)
    head = "    def __init__(self):\n        super().__init__()\n"
    # Dropping both convolutions costs two changes: within the default region of two ...
    assert any("fc1" in option for option in request.constraint.continuations(head))
    prompts.max_changes = 1  # ... but not within one
    strict = prompts.mutation(parent, "Add a layer", 0.6).constraint
    assert all("fc1" not in option for option in strict.continuations(head))


def test_narrow_widths_are_kept_from_the_parent_but_never_chosen_anew():
    seed = parse_spec(
        GRAMMAR, FreeformSpace(input_shape=SHAPE, num_classes=CLASSES).seed_code()[len(PREFILL) :]
    )
    rng = np.random.default_rng(4)
    program = functools.partial(GRAMMAR.program, reference=seed)
    children = [write(program, lambda c: int(rng.integers(len(c.options))))[1] for _ in range(200)]
    narrow = [
        (k, b.channels) for child in children for k, b in enumerate(child.convs) if b.channels < 4
    ]
    assert narrow and set(narrow) == {(0, 1)}  # the seed's own 1-channel convolution only
    space = FreeformSpace(input_shape=SHAPE, num_classes=CLASSES)
    for _ in range(50):
        spec = parse_spec(GRAMMAR, space.random_network(rng=rng).code[len(PREFILL) :])
        assert all(block.channels >= 4 for block in spec.convs)
