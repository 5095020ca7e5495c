"""Shared-prefix, jump-forward sampling (llmatic.llm.decoding) on a tiny random Llama.

The model is built from a config (no weights to download) over a small vocabulary of
characters plus a few multi-character tokens, so that tokenization, forced text and the
grammar of NAS-Bench-201 edge lines are all exercised without the real model.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from llmatic.llm.constraints import VocabularyTrie
from llmatic.llm.decoding import Row, _Batch, group_by_prefix, sample
from llmatic.nb201.cell import EDGES, arch_to_code, parse_arch
from llmatic.nb201.prompts import CellPrompter, _edge_ops

# Characters, then tokens longer than one character (greedy longest-match tokenizer).
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]
WORDS = ["none", "skip", "_connect", "nor", "_conv_", "avg", "_pool_", "3x3", "1x1", "OPS"]
WORDS += ['["', '"](', "C)", "self", ".edge_", "        "]
VOCAB = ["<eos>", *CHARS, *WORDS]
EOS = 0


def tokenize(text: str) -> list[int]:
    ids, pos = [], 0
    by_length = sorted(range(1, len(VOCAB)), key=lambda i: -len(VOCAB[i]))
    while pos < len(text):
        token = next(i for i in by_length if text.startswith(VOCAB[i], pos))
        ids.append(token)
        pos += len(VOCAB[token])
    return ids


def decode(ids) -> str:
    return "".join(VOCAB[i] for i in ids if i != EOS)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    return LlamaForCausalLM(config).eval()


def _sample(model, rows, **kwargs):
    defaults = dict(
        tokenize=tokenize,
        decode=decode,
        trie=VocabularyTrie(["", *VOCAB[1:]]),
        eos_ids={EOS},
        pad_id=EOS,
        max_new_tokens=400,
        generator=torch.Generator().manual_seed(0),
    )
    sample(model, rows, **{**defaults, **kwargs})


def test_shared_prefix_and_padding_give_the_logits_of_each_row_alone(model):
    prompts = [
        tokenize("class Cell(nn.Module): none skip"),
        tokenize("class Cell(nn.Module): avg"),
        tokenize("class Cell(nn.Module): nor_conv_3x3 and more"),
        tokenize("x"),
    ]
    more = [tokenize(" a"), tokenize(" skip_connect"), tokenize("!"), tokenize("OPS[")]
    group_of, prefix_lengths = group_by_prefix(prompts)
    with torch.inference_mode():
        batch = _Batch(model, EOS, torch.device("cpu"))
        first = [group_of.index(g) for g in range(len(prefix_lengths))]
        batch.extend(
            [prompts[i][:n] for i, n in zip(first, prefix_lengths, strict=True)], left_pad=False
        )
        batch.select(group_of)
        after_prompt = batch.extend(
            [p[prefix_lengths[g] :] for p, g in zip(prompts, group_of, strict=True)],
            left_pad=True,
        )
        batch.select([2, 0, 3])  # drop row 1, reorder the rest
        after_more = batch.extend([more[2], more[0], more[3]], left_pad=True)
        for i, ids in enumerate(prompts):
            alone = model(input_ids=torch.tensor([ids])).logits[0, -1]
            assert torch.allclose(after_prompt[i], alone, atol=1e-4)
        for slot, i in enumerate([2, 0, 3]):
            alone = model(input_ids=torch.tensor([prompts[i] + more[i]])).logits[0, -1]
            assert torch.allclose(after_more[slot], alone, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=8), min_size=1, max_size=9))
def test_groups_share_a_true_prefix_and_leave_each_row_a_token(sequences):
    group_of, prefix_lengths = group_by_prefix(sequences)
    assert len(group_of) == len(sequences)
    assert sorted(set(group_of)) == list(range(len(prefix_lengths)))
    for g, length in enumerate(prefix_lengths):
        members = [s for s, k in zip(sequences, group_of, strict=True) if k == g]
        assert all(len(s) > length for s in members)
        assert all(s[:length] == members[0][:length] for s in members)


def test_rows_that_share_a_prompt_form_one_group():
    parent = list(range(100))
    rows = [parent + [200 + i, 7] for i in range(5)] + [[1, 2, 3]]
    group_of, prefix_lengths = group_by_prefix(rows)
    assert len(set(group_of[:5])) == 1 and group_of[5] != group_of[0]
    assert prefix_lengths[group_of[0]] == 100


PARENT = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


def test_constrained_rows_write_valid_local_edits_with_few_model_steps(model):
    prompter = CellPrompter(mutation_prompts=["Improve it."], crossover_prompt="Mix them.")
    requests = [prompter.mutation(arch_to_code(PARENT), "Improve it.", t) for t in (0.3, 1.0)]
    requests += [prompter.crossover(arch_to_code(PARENT), arch_to_code(PARENT), "Mix.", 0.7)]
    rows = [
        Row(
            prompt_ids=tokenize(r.prompt + r.prefill),
            temperature=r.temperature,
            constraint=r.constraint,
        )
        for r in requests
    ]
    calls = []
    hook = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        _sample(model, rows)
    finally:
        hook.remove()
    parent = parse_arch(PARENT)
    for request, row in zip(requests[:2], rows[:2], strict=True):
        ops = _edge_ops(prompter.to_code(request, _generation(row)))
        changed = sum(op != parent[e] for op, e in zip(ops, EDGES, strict=True))
        assert 1 <= changed <= 2
    # Crossing a cell with itself leaves nothing to choose: the whole text is forced.
    crossed = _edge_ops(prompter.to_code(requests[2], _generation(rows[2])))
    assert crossed == [parent[e] for e in EDGES]
    # Most tokens are forced text, appended without a model step each.
    assert len(calls) < max(len(row.generated) for row in rows) / 2


def test_unconstrained_rows_stop_at_stop_strings_eos_or_the_token_limit(model):
    rows = [Row(prompt_ids=tokenize("import torch"), temperature=1.0) for _ in range(4)]
    _sample(model, rows, max_new_tokens=25, stop=["e"])
    for row in rows:
        assert len(row.generated) <= 25
        ended = row.generated[-1] == EOS or "e" in row.text or len(row.generated) == 25
        assert ended
        assert "e" not in decode(row.generated[:-1])  # it stopped at the first one


def test_draws_never_leave_the_constraint_and_follow_the_seed(model):
    class AB:
        def continuations(self, text):
            return ["a", "b"] if len(text) < 6 else []

    def run(seed):
        rows = [Row(prompt_ids=tokenize("xy"), temperature=1.5, constraint=AB()) for _ in range(3)]
        _sample(model, rows, generator=torch.Generator().manual_seed(seed))
        return [row.text for row in rows]

    texts = run(1)
    assert all(len(t) == 6 and set(t) <= {"a", "b"} for t in texts)
    assert run(1) == texts and run(2) != texts


def _generation(row):
    from llmatic.llm.base import Generation

    return Generation(text=row.text, num_tokens=len(row.generated))
