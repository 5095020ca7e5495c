"""What every LLM backend takes and returns.

A backend turns a batch of :class:`GenerationRequest` into one :class:`Generation` each.
Requests carry their own temperature because the search jitters temperatures per
offspring; a backend must honour them per request, not per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from llmatic.llm.constraints import TextConstraint


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to draw.

    Args:
        prompt: The text the model continues, already formatted (e.g. through a chat
            template).
        temperature: Sampling temperature for this one sample; must be > 0.
        prefill: Text appended after ``prompt`` that the model must continue from. It is
            part of what the model sees but not of :attr:`Generation.text`.
        constraint: Restricts what the model may write (constrained decoding, see
            :mod:`llmatic.llm.constraints`); None for free generation. Backends that
            cannot constrain ignore it, and the candidate's code is checked either way.
    """

    prompt: str
    temperature: float
    prefill: str = ""
    constraint: TextConstraint | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class Generation:
    """One sampled continuation.

    Args:
        text: The continuation only (without prompt and prefill), cut before the first stop
            sequence.
        num_tokens: Tokens generated for this sample, counted before cutting.
    """

    text: str
    num_tokens: int


@runtime_checkable
class LLMBackend(Protocol):
    """Anything that samples continuations for a batch of requests."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Returns one :class:`Generation` per request, in the order of ``requests``."""
        ...
