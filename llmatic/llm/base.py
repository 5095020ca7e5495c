"""What every LLM backend takes and returns.

A backend turns a batch of :class:`GenerationRequest` into one :class:`Generation` each.
Requests carry their own temperature because the search jitters temperatures per
offspring; a backend must honour them per request, not per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class TextConstraint(Protocol):
    """A prefix-closed language of completions."""

    def continuations(self, text: str) -> Sequence[str] | None:
        """What may follow ``text`` (the generated text so far, without prompt and prefill).

        Returns:
            Strings, one of which every valid completion of ``text`` continues with
            (they may be cut short, e.g. after the next choice); ``[]`` when ``text`` is
            complete (only end-of-sequence may follow); None when ``text`` has left the
            language (the row is then left unconstrained and fails later, which cannot
            happen when the processor has masked every step).
        """
        ...


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
        prompt_tokens: Tokens of the prompt as the model saw it (with the prefill), where
            the backend knows them (a server's ``usage``, our tokenizer); else an estimate,
            0 when nothing is known.
    """

    text: str
    num_tokens: int
    prompt_tokens: int = 0


@runtime_checkable
class LLMBackend(Protocol):
    """Anything that samples continuations for a batch of requests."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Returns one :class:`Generation` per request, in the order of ``requests``."""
        ...


class CounterState:
    """``state_dict`` / ``load_state_dict`` over a backend's counters (for checkpoints).

    A backend lists in ``_STATE_FIELDS`` the attributes a resumed search must get back: the
    counter from which it seeds its sampling first, then its statistics. A statistic that
    a state lacks (a checkpoint written before the statistic existed) keeps its value.
    """

    _STATE_FIELDS: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        """The values of ``_STATE_FIELDS``."""
        return {name: getattr(self, name) for name in self._STATE_FIELDS}

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`'s values (e.g. from a checkpoint)."""
        for i, name in enumerate(self._STATE_FIELDS):
            if i == 0 or name in state:  # the seeding counter is always needed
                setattr(self, name, state[name])


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            index = text.find(s)
            if 0 <= index < cut:
                cut = index
    return text[:cut]
