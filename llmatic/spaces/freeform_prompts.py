"""Prompts that ask an LLM to rewrite a whole free-form network class (LLMatic's way).

The model sees the parent's code (two parents for crossover), then the instruction as a
docstring (``completion`` format, for base models) or the same content as a user message
through the model's chat template (``chat``); its answer is prefilled with the class line
of the class the prompt names, and that class is cut out of the output by parsing only
(:func:`llmatic.llm.extraction.extract_class_code`). With a grammar
(:mod:`llmatic.spaces.freeform_grammar`) decoding is constrained to network code that
builds; without one it is free. Either way the code is checked in the sandbox.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence

from llmatic.llm.base import Generation, GenerationRequest
from llmatic.llm.constraints import ContainerUnion
from llmatic.llm.extraction import CLASS_STOP, extract_class_code
from llmatic.llm.grammar import ProgramConstraint
from llmatic.prompting import check_prompt_settings
from llmatic.spaces.freeform_grammar import NetworkGrammar, parse_spec

#: What the prompt shows above the parents: the names the code may use without imports.
PREAMBLE = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
#: Stop sequences of a whole-class completion.
STOP = CLASS_STOP


class FreeformPrompter:
    """Builds whole-class requests and turns completions into network code.

    Args:
        mutation_prompts: Instructions for mutation (prompt id = position).
        crossover_prompt: Instruction for crossover.
        class_name: The class the model writes (the one taken from its output).
        prompt_format: ``completion`` or ``chat``.
        chat_template: Wraps a user message into the model's chat format; needed for
            ``chat``.
        grammar: Constrains decoding to the grammar's network code (the model decides
            every layer and size, the grammar keeps them consistent); None for free text.
            A constrained sample never writes its parents' text or a text another sample
            wrote before it, unless the grammar leaves nothing else.
        max_changes: With a grammar: a mutation stays within this many changes of its
            parent (:class:`~llmatic.spaces.freeform_grammar.TrustRegion`), where the
            parent is in the grammar's language; None for no limit. Crossover is free.

    Raises:
        ValueError: An unknown format, ``chat`` without a template, or no mutation prompt.
    """

    def __init__(
        self,
        *,
        mutation_prompts: Sequence[str],
        crossover_prompt: str,
        class_name: str,
        prompt_format: str = "completion",
        chat_template: Callable[[str], str] | None = None,
        grammar: NetworkGrammar | None = None,
        max_changes: int | None = None,
    ) -> None:
        check_prompt_settings(
            mutation_prompts=mutation_prompts,
            prompt_format=prompt_format,
            chat_template=chat_template,
        )
        self.mutation_prompts = list(mutation_prompts)
        self.crossover_prompt = crossover_prompt
        self.class_name = class_name
        self.prompt_format = prompt_format
        self.chat_template = chat_template
        self.grammar = grammar
        self.max_changes = max_changes
        self.prefill = f"class {class_name}(nn.Module):\n"
        # The class bodies constrained samples have written: later samples steer away.
        self.proposed: set[str] = set()
        # The text each unfinished constrained sample has written (weak: a sample cut
        # short leaves none).
        self.claims: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def mutation(
        self,
        parent_code: str,
        instruction: str,
        temperature: float,
        examples: Sequence[tuple[str, float]] = (),
    ) -> GenerationRequest:
        if examples:  # whole networks are long: several would crowd a small model's context
            raise ValueError("in-context examples (search.feedback_elites) need space=nb201")
        code = parent_code.rstrip() + "\n"
        return self._request(
            code, instruction, temperature, parents=(parent_code,), reference=parent_code
        )

    def crossover(
        self, code_a: str, code_b: str, instruction: str, temperature: float
    ) -> GenerationRequest:
        code = f"{code_a.rstrip()}\n\n\n{code_b.rstrip()}\n"
        return self._request(code, instruction, temperature, parents=(code_a, code_b))

    def can_vary(self, *codes: str) -> bool:
        """Always True: free text can always write something new."""
        return True

    def _request(
        self,
        code: str,
        instruction: str,
        temperature: float,
        *,
        parents: Sequence[str],
        reference: str | None = None,
    ) -> GenerationRequest:
        prefill = self.prefill
        if self.prompt_format == "completion":
            prompt = f'{PREAMBLE}\n{code}\n\n"""{instruction}"""\n'
        else:
            prompt = self.chat_template(
                f"{PREAMBLE}\n{code}\n\n{instruction} "
                f"Answer with the new {self.class_name} class only."
            )
        constraint = None
        if self.grammar is not None:
            bodies = {p.rstrip() + "\n" for p in parents}
            bodies = {b[len(prefill) :] for b in bodies if b.startswith(prefill)}
            constraint = ProgramConstraint(
                self._program(reference),
                avoid=ContainerUnion(bodies, self.proposed),
                record=self.proposed,
                claims=self.claims,
            )
        return GenerationRequest(
            prompt=prompt, temperature=temperature, prefill=prefill, constraint=constraint
        )

    def _program(self, reference: str | None) -> Callable:
        """The grammar, within the trust region around ``reference`` where it applies."""
        if reference is None or self.max_changes is None:
            return self.grammar.program
        body = reference.rstrip() + "\n"
        try:
            spec = parse_spec(self.grammar, body[len(self.prefill) :])
        except ValueError:  # a parent the grammar did not write (a free model's): no region
            return self.grammar.program
        return functools.partial(self.grammar.program, reference=spec, max_changes=self.max_changes)

    def to_code(self, request: GenerationRequest, generation: Generation) -> str:
        """The network's source code.

        Raises:
            CandidateError: ``no_code`` or ``syntax_error``.
        """
        return extract_class_code(request.prefill + generation.text, class_name=self.class_name)
