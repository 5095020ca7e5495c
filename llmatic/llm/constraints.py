"""Constrained decoding: a request may restrict what the model can write.

A :class:`TextConstraint` says, for the text generated so far, which strings may come
next; :func:`allowed_tokens` turns that into the tokens a row may sample, using a trie of
the vocabulary's token strings (:mod:`llmatic.llm.decoding` samples under it). Sampling,
temperature and the model's own preferences still decide *among* the allowed
continuations: the model still writes the code, it just cannot write it outside the
grammar. This is what makes a 135M-parameter model's edits of NAS-Bench-201 cells valid
(see ``docs/llm.md``).
"""

from __future__ import annotations

from collections.abc import Container, Sequence


class VocabularyTrie:
    """Token ids by their decoded strings, for prefix queries.

    Args:
        token_strings: ``token_strings[i]`` is the text of token id ``i`` ("" for special
            tokens, which are never allowed by a constraint).
    """

    def __init__(self, token_strings: Sequence[str]) -> None:
        self.token_strings = list(token_strings)
        self.root: dict = {}
        for token_id, text in enumerate(token_strings):
            if not text:
                continue
            node = self.root
            for char in text:
                node = node.setdefault(char, {})
            node.setdefault(None, []).append(token_id)

    def text_of(self, token_id: int) -> str:
        """The string of token ``token_id``."""
        return self.token_strings[token_id]

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


def allowed_tokens(options: Sequence[str], trie: VocabularyTrie, *, eos_id: int) -> list[int]:
    """The tokens that start one of ``options`` (what a constraint allows next).

    Args:
        options: :meth:`TextConstraint.continuations` of the text so far (not None).
        trie: The vocabulary trie.
        eos_id: Returned alone when nothing else is allowed (the text is complete).
    """
    allowed = {token for option in options for token in trie.prefixes_of(option)}
    return sorted(allowed) if allowed else [eos_id]


class ContainerUnion:
    """``x in ContainerUnion(a, b)`` is ``x in a or x in b`` (live views of both).

    Grammars take what to avoid as one container; this joins, say, the evaluated keys
    and the ones sampled since, without copying either.
    """

    def __init__(self, *containers: Container[str]) -> None:
        self.containers = containers

    def __contains__(self, item: object) -> bool:
        return any(item in c for c in self.containers)

    def __bool__(self) -> bool:
        return True
