"""Batched sampling with a shared-prefix KV cache and jump-forward constrained decoding.

A search asks for many samples whose prompts share most of their text (the same parent
cell under different instructions), and whose constrained completions are mostly fixed
text (the grammar of :class:`~llmatic.nb201.prompts.EdgeLinesConstraint` leaves the model
only the operation names to choose). :func:`sample` exploits both:

1. **Shared prefixes.** Rows are grouped by their common token prefix
   (:func:`group_by_prefix`); each group's prefix is run through the model once and its
   KV cache copied to the group's rows, which then run only their own suffix.
2. **Jump-forward.** Where a row's constraint allows only one continuation text, its
   tokens are appended in the same forward pass as the token sampled before them,
   instead of one model step per token. Forced text gets the tokenizer's own split where
   it continues the row's text cleanly; the last forced token is left to the model, so
   that the text after it can still merge into one token.

Every row of the batch is a sequence laid out as ``[prefix, pad] [pad, suffix]
[pad, chunk] [pad, chunk] ...``: padding sits wherever rows differ in length, the
attention mask hides it, and explicit position ids keep each row's positions contiguous.
Left-padding each new piece puts every row's newest token last, so one logit row per
sequence is computed. Sampling decides what the model decides in
``model.generate``: temperature per row, then top-k / top-p, then a multinomial draw
among the tokens the constraint allows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from llmatic.llm.base import TextConstraint
from llmatic.llm.constraints import VocabularyTrie, allowed_tokens


@dataclass
class Row:
    """One sequence being sampled.

    Args:
        prompt_ids: Token ids of the prompt and prefill.
        temperature: > 0.
        constraint: The row's grammar, or None.
    """

    prompt_ids: list[int]
    temperature: float
    constraint: TextConstraint | None = None
    generated: list[int] = field(default_factory=list)
    sampled: int = 0  # tokens of generated the model drew (the rest were forced)
    text: str = ""
    options: Sequence[str] | None = None
    done: bool = False


def group_by_prefix(sequences: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Partitions sequences into groups that share a token prefix, to run each prefix once.

    Sequences are sorted; a dynamic program over contiguous runs of the sorted order picks
    the partition that saves the most tokens, ``sum((rows - 1) * prefix_length)``. A
    prefix always leaves each sequence at least its last token.

    Returns:
        ``(group_of, prefix_lengths)``: ``group_of[i]`` is sequence ``i``'s group and
        ``prefix_lengths[g]`` the length of group ``g``'s shared prefix.
    """
    n = len(sequences)
    order = sorted(range(n), key=lambda i: list(sequences[i]))

    def lcp(a: Sequence[int], b: Sequence[int]) -> int:
        k, m = 0, min(len(a), len(b))
        while k < m and a[k] == b[k]:
            k += 1
        return k

    adjacent = [lcp(sequences[order[k]], sequences[order[k + 1]]) for k in range(n - 1)]
    # best[i]: the most tokens saved on the first i sorted sequences; cut[i]: its last start.
    best, cut = [0] * (n + 1), [0] * (n + 1)
    for end in range(1, n + 1):
        best[end], cut[end] = -1, end - 1
        shared = len(sequences[order[end - 1]]) - 1
        for start in range(end - 1, -1, -1):
            shared = min(shared, len(sequences[order[start]]) - 1)
            if start < end - 1:
                shared = min(shared, adjacent[start])
            saved = best[start] + (end - start - 1) * shared
            if saved > best[end]:
                best[end], cut[end] = saved, start
    group_of, prefix_lengths = [0] * n, []
    end = n
    runs = []
    while end > 0:
        runs.append((cut[end], end))
        end = cut[end]
    for start, end in reversed(runs):
        shared = min(len(sequences[order[k]]) - 1 for k in range(start, end))
        for k in range(start, end - 1):
            shared = min(shared, adjacent[k])
        for k in range(start, end):
            group_of[order[k]] = len(prefix_lengths)
        prefix_lengths.append(max(shared, 0))
    return group_of, prefix_lengths


class _Batch:
    """The KV cache, attention mask and positions of the rows still being sampled."""

    def __init__(self, model: torch.nn.Module, pad_id: int, device: torch.device) -> None:
        self.model = model
        self.pad_id = pad_id
        self.device = device
        self.cache = DynamicCache()
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=device)
        self.length = torch.zeros(0, dtype=torch.long, device=device)  # real tokens per row
        self.cache_argument = _cache_argument(model)  # looked up once, not per forward pass

    def extend(self, pieces: Sequence[Sequence[int]], *, left_pad: bool) -> torch.Tensor:
        """Appends one piece of tokens per row; returns the logits after each row's last.

        Returns:
            Logits of shape (rows, vocab), float32 on the CPU, at the last position. Only meaningful
            for rows whose piece is non-empty and ``left_pad`` (or equal lengths).
        """
        width = max(len(p) for p in pieces)
        ids = torch.full((len(pieces), width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros(len(pieces), width, dtype=torch.long)
        for row, piece in enumerate(pieces):
            if piece:
                span = slice(width - len(piece), width) if left_pad else slice(0, len(piece))
                ids[row, span] = torch.tensor(piece)
                new_mask[row, span] = 1
        ids, new_mask = ids.to(self.device), new_mask.to(self.device)
        if self.length.numel() == 0:
            self.length = torch.zeros(len(pieces), dtype=torch.long, device=self.device)
            self.mask = torch.zeros(len(pieces), 0, dtype=torch.long, device=self.device)
        positions = self.length[:, None] + new_mask.cumsum(dim=1) - 1
        positions = positions.clamp(min=0)
        self.mask = torch.cat([self.mask, new_mask], dim=1)
        self.length = self.length + new_mask.sum(dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_argument: self.cache},
        )
        return out.logits[:, -1, :].float().cpu()

    def select(self, rows: Sequence[int]) -> None:
        """Keeps only ``rows`` (indices into the current batch), in that order."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        self.cache.reorder_cache(index)
        self.mask = self.mask.index_select(0, index)
        self.length = self.length.index_select(0, index)


def sample(
    model: torch.nn.Module,
    rows: Sequence[Row],
    *,
    tokenize: Callable[[str], list[int]],
    decode: Callable[[Sequence[int]], str],
    trie: VocabularyTrie,
    eos_ids: set[int],
    pad_id: int,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    warpers: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = (),
    generator: torch.Generator | None = None,
) -> None:
    """Samples every row to completion, in place (``row.generated``, ``row.text``).

    A row ends at end-of-sequence, at a stop string, when its constraint is complete, or
    after ``max_new_tokens`` sampled tokens. Forced tokens do not count: the grammar
    bounds them, and cutting a constrained row short would leave its text incomplete.

    Args:
        model: A causal LM taking ``position_ids``, ``past_key_values`` and
            ``logits_to_keep`` (transformers >= 4.50).
        rows: The sequences; their ``prompt_ids`` must be non-empty.
        tokenize: Text -> token ids, without special tokens.
        decode: Token ids -> text, without special tokens.
        trie: The vocabulary trie the constraints are matched against.
        eos_ids: Tokens that end a row.
        pad_id: Any token id (padding is masked).
        stop: Stop strings (a row ends when its text contains one).
        warpers: ``(input_ids, scores) -> scores`` truncations applied after the
            temperature (top-k, top-p).
        generator: Random source of the draws.
    """
    device = next(model.parameters()).device
    for row in rows:
        row.generated, row.sampled, row.text, row.done = [], 0, "", False
        row.options = row.constraint.continuations("") if row.constraint else None
        # Text forced from the start (a crossover whose parents agree on the first edge)
        # joins the prompt's suffix.
        _forced_tokens(row, tokenize, decode, trie)
    inputs = [row.prompt_ids + row.generated for row in rows]
    group_of, prefix_lengths = group_by_prefix(inputs)
    if max(prefix_lengths) == 0:  # nothing shared: every row runs its whole input
        group_of, prefix_lengths = list(range(len(rows))), [0] * len(rows)
    first_of = {g: group_of.index(g) for g in range(len(prefix_lengths))}
    with torch.inference_mode():
        shared = _Batch(model, pad_id, device)
        if max(prefix_lengths) > 0:
            shared.extend(
                [inputs[first_of[g]][:length] for g, length in enumerate(prefix_lengths)],
                left_pad=False,
            )
            shared.select(group_of)
        logits = shared.extend(
            [ids[prefix_lengths[group_of[i]] :] for i, ids in enumerate(inputs)], left_pad=True
        )
        active = list(range(len(rows)))
        for row in rows:
            row.done = row.options == []
        while True:
            pieces = []
            for slot, index in enumerate(active):
                row = rows[index]
                if row.done:
                    pieces.append([])
                    continue
                if row.constraint is not None:
                    # Asked again: the rows drawn before this one may have changed what it
                    # may write (a grammar that steers siblings apart).
                    row.options = row.constraint.continuations(row.text)
                token = _draw(row, logits[slot], trie, eos_ids, warpers, generator)
                piece = [token]
                row.generated.append(token)
                row.sampled += 1
                if token in eos_ids:
                    row.done = True
                else:
                    row.text = decode(row.generated)
                    row.options = row.constraint.continuations(row.text) if row.constraint else None
                    forced = _forced_tokens(row, tokenize, decode, trie)
                    piece.extend(forced)
                    row.done = (
                        row.options == []
                        or row.sampled >= max_new_tokens
                        or any(s and s in row.text for s in stop)
                    )
                pieces.append(piece)
            keep = [slot for slot, index in enumerate(active) if not rows[index].done]
            if not keep:
                break
            if len(keep) < len(active):
                shared.select(keep)
                active = [active[slot] for slot in keep]
                pieces = [pieces[slot] for slot in keep]
            logits = shared.extend(pieces, left_pad=True)
    for row in rows:
        ended = bool(row.generated) and row.generated[-1] in eos_ids
        row.text = decode(row.generated[:-1] if ended else row.generated)


def _cache_argument(model: torch.nn.Module) -> str:
    """The KV-cache keyword of ``model.forward``: ``cache`` since transformers 5.2x."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _draw(
    row: Row,
    logits: torch.Tensor,
    trie: VocabularyTrie,
    eos_ids: set[int],
    warpers: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    generator: torch.Generator | None,
) -> int:
    """One token for ``row`` from its next-token ``logits`` (vocab,)."""
    scores = logits[None, :].clone()
    if row.options is not None:
        mask = torch.full_like(scores, float("-inf"))
        mask[0, allowed_tokens(row.options, trie, eos_id=min(eos_ids))] = 0.0
        scores = scores + mask
    scores = scores / row.temperature
    for warp in warpers:
        scores = warp(None, scores)
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator)[0, 0])


def _forced_tokens(
    row: Row,
    tokenize: Callable[[str], list[int]],
    decode: Callable[[Sequence[int]], str],
    trie: VocabularyTrie,
) -> list[int]:
    """Tokens of the text every allowed continuation of ``row`` starts with.

    The last of them is left to the model when a longer token could start at its place
    (one that runs on into the choice after the forced text).

    Appends them to ``row.generated``/``row.text`` and updates ``row.options``.
    """
    options = row.options
    if not options:
        return []
    forced = _common_prefix(options)
    if not forced:
        return []
    whole = tokenize(row.text + forced)
    if whole[: len(row.generated)] == row.generated:
        tokens = whole[len(row.generated) :]
    else:  # the forced text merges with the row's last token: split it on its own
        tokens = tokenize(forced)
    if tokens and _may_merge(decode(tokens[-1:]), forced, options, trie):
        tokens = tokens[:-1]
    if not tokens:
        return []
    row.generated.extend(tokens)
    row.text = decode(row.generated)
    row.options = row.constraint.continuations(row.text)
    if row.options is None:  # cannot happen for a prefix of every option; stay safe
        raise RuntimeError(f"forced text {forced!r} left the constraint")
    return tokens


def _may_merge(last: str, forced: str, options: Sequence[str], trie: VocabularyTrie) -> bool:
    """Whether a token longer than ``last`` (the forced text's last token) could also
    start there, running into what follows the forced text in some option."""
    tails = [last + option[len(forced) :] for option in options]
    return any(
        len(token) > len(last)
        for tail in tails
        for token in map(trie.text_of, trie.prefixes_of(tail))
    )


def _common_prefix(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    k = 0
    while k < len(first) and first[k] == last[k]:
        k += 1
    return first[:k]
