"""The interface between emitters and a search space's prompt format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from llmatic.llm.base import Generation, GenerationRequest


@dataclass(frozen=True)
class PromptSettings:
    """How the LLM is asked, whatever the space (``prompts`` and ``llm`` config groups).

    Attributes:
        mutation_prompts: Mutation instructions (prompt id = position).
        crossover_prompt: The crossover instruction.
        scope: What the LLM writes (``llm.scope``; the space says which it knows).
        prompt_format: ``completion`` or ``chat``.
        chat_template: Wraps a user message in the model's chat format (``chat``).
        constrained: Whether decoding follows the space's grammar, if it has one.
    """

    mutation_prompts: Sequence[str]
    crossover_prompt: str
    scope: str
    prompt_format: str
    chat_template: Callable[[str], str] | None
    constrained: bool


class Prompter(Protocol):
    """Builds LLM requests for one search space and turns completions into code.

    Attributes:
        mutation_prompts: The mutation instructions; prompt id ``i`` is entry ``i``.
        crossover_prompt: The crossover instruction (prompt id ``len(mutation_prompts)``).
        proposed: What its constrained samples have spelled so far, for the grammar to
            steer away from (NB201: arch strings; free form: class bodies; empty without
            a grammar). The checkpoint saves it and refills it in place, because a
            grammar's steering may hold a live view of it.
    """

    mutation_prompts: list[str]
    crossover_prompt: str
    proposed: set[str]

    def mutation(
        self,
        parent_code: str,
        instruction: str,
        temperature: float,
        examples: Sequence[tuple[str, float]] = (),
    ) -> GenerationRequest:
        """The request that asks the LLM to rewrite ``parent_code`` as ``instruction`` says.

        ``examples``: ``(code, validation accuracy %)`` of other networks, shown before the
        parent (in-context feedback); a prompter that cannot show them raises ValueError.
        """
        ...

    def crossover(
        self, code_a: str, code_b: str, instruction: str, temperature: float
    ) -> GenerationRequest:
        """The request that asks the LLM to combine two parents."""
        ...

    def can_vary(self, *codes: str) -> bool:
        """Whether mutating one parent (or crossing two) can still yield a new candidate."""
        ...

    def to_code(self, request: GenerationRequest, generation: Generation) -> str:
        """The candidate's source code; raises ``CandidateError`` if there is none."""
        ...


#: How a prompt is written: the instruction as a docstring after the code (``completion``,
#: for base models), or the same content as a user message in the model's chat template.
FORMATS = ("completion", "chat")


def check_prompt_settings(
    *,
    mutation_prompts: Sequence[str],
    prompt_format: str,
    chat_template: Callable[[str], str] | None,
) -> None:
    """The checks every prompter makes of its settings.

    Raises:
        ValueError: An unknown format, ``chat`` without a template, or no mutation prompt.
    """
    if prompt_format not in FORMATS:
        raise ValueError(f"prompt_format must be one of {FORMATS}, got {prompt_format!r}")
    if prompt_format == "chat" and chat_template is None:
        raise ValueError("prompt_format='chat' needs a chat_template (the model has none?)")
    if not mutation_prompts:
        raise ValueError("mutation_prompts must not be empty")
