"""Shared test helpers: a scripted LLM double and cell-code completions."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from llmatic.llm.base import Generation, GenerationRequest
from llmatic.nb201.cell import CELL_FORWARD, arch_to_code

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def edges_completion(arch: str) -> str:
    """What a perfect model writes after the ``edges`` prefill for ``arch``."""
    code = arch_to_code(arch)
    body = code[: code.index(CELL_FORWARD)]
    return body.split('self.edge_0_1 = OPS["', 1)[1] + "\n"


class ScriptedLLM:
    """A deterministic LLM double: returns its script in order, cycling.

    Attributes:
        calls: The requests of every ``generate`` call, one list per call.
    """

    def __init__(self, script: Sequence[str]) -> None:
        self.script = list(script)
        self.calls: list[list[GenerationRequest]] = []
        self._next = 0
        self.total_seconds = 0.0
        self.total_tokens = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.calls.append(list(requests))
        out = []
        for _ in requests:
            text = self.script[self._next % len(self.script)]
            self._next += 1
            out.append(Generation(text=text, num_tokens=len(text.split())))
            self.total_tokens += len(text.split())
        return out


@pytest.fixture
def scripted_llm():
    return ScriptedLLM
