"""Constrained decoding: a request may restrict what the model can write.

A :class:`TextConstraint` says, for the text generated so far, which strings may come
next; :class:`ConstrainedLogitsProcessor` turns that into a token mask per row, using a
trie of the vocabulary's token strings. Sampling, temperature and the model's own
preferences still decide *among* the allowed continuations: the model still writes the
code, it just cannot write it outside the grammar. This is what makes a 135M-parameter
model's edits of NAS-Bench-201 cells valid (see ``docs/llm.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmatic.llm.base import TextConstraint


class VocabularyTrie:
    """Token ids by their decoded strings, for prefix queries.

    Args:
        token_strings: ``token_strings[i]`` is the text of token id ``i`` ("" for special
            tokens, which are never allowed by a constraint).
    """

    def __init__(self, token_strings: Sequence[str]) -> None:
        self.root: dict = {}
        for token_id, text in enumerate(token_strings):
            if not text:
                continue
            node = self.root
            for char in text:
                node = node.setdefault(char, {})
            node.setdefault(None, []).append(token_id)

    def prefixes_of(self, text: str) -> list[int]:
        """Ids of the tokens whose string is a non-empty prefix of ``text``."""
        found: list[int] = []
        node = self.root
        for char in text:
            node = node.get(char)
            if node is None:
                break
            found.extend(node.get(None, ()))
        return found


class ConstrainedLogitsProcessor:
    """Masks, per row, every token that would leave that row's constraint.

    Args:
        constraints: One per row (None: unconstrained row).
        trie: The vocabulary trie.
        decode: Turns a row's generated token ids into text.
        prompt_length: Tokens before generation starts (padded batch width).
        eos_id: The token that ends a finished row.
    """

    def __init__(
        self,
        constraints: Sequence[TextConstraint | None],
        *,
        trie: VocabularyTrie,
        decode,
        prompt_length: int,
        eos_id: int,
    ) -> None:
        self.constraints = list(constraints)
        self.trie = trie
        self.decode = decode
        self.prompt_length = prompt_length
        self.eos_id = eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, constraint in enumerate(self.constraints):
            if constraint is None:
                continue
            text = self.decode(input_ids[row, self.prompt_length :].tolist())
            options = constraint.continuations(text)
            if options is None:
                continue
            allowed = {token for option in options for token in self.trie.prefixes_of(option)}
            if not allowed:
                allowed = {self.eos_id}
            mask = torch.full_like(scores[row], float("-inf"))
            mask[list(allowed)] = 0.0
            scores[row] = scores[row] + mask
        return scores
