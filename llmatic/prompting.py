"""The interface between emitters and a search space's prompt format."""

from __future__ import annotations

from typing import Protocol

from llmatic.llm.base import Generation, GenerationRequest


class Prompter(Protocol):
    """Builds LLM requests for one search space and turns completions into code.

    Attributes:
        mutation_prompts: The mutation instructions; prompt id ``i`` is entry ``i``.
        crossover_prompt: The crossover instruction (prompt id ``len(mutation_prompts)``).
        proposed: Keys of the networks its samples have spelled so far (empty for a
            space without a grammar). The checkpoint saves it and refills it in place,
            because a grammar's steering may hold a live view of it.
    """

    mutation_prompts: list[str]
    crossover_prompt: str
    proposed: set[str]

    def mutation(self, parent_code: str, instruction: str, temperature: float) -> GenerationRequest:
        """The request that asks the LLM to rewrite ``parent_code`` as ``instruction`` says."""
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
