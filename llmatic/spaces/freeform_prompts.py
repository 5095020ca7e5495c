"""Prompts that ask an LLM to rewrite a whole free-form network class (LLMatic's way).

The model sees the parent's code (two parents for crossover), then the instruction as a
docstring (``completion`` format, for base models) or the same content as a user message
through the model's chat template (``chat``); its answer is prefilled with the class line
of the class the prompt names, and that class is cut out of the output by parsing only
(:func:`llmatic.llm.extraction.extract_class_code`). There is no grammar yet: decoding is
free, and the code is checked in the sandbox like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmatic.llm.base import Generation, GenerationRequest
from llmatic.llm.extraction import CLASS_STOP, extract_class_code
from llmatic.prompting import check_prompt_settings

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
        # No grammar steers samples, so none is ever "proposed" before it is evaluated.
        self.proposed: set[str] = set()

    def mutation(self, parent_code: str, instruction: str, temperature: float) -> GenerationRequest:
        return self._request(parent_code.rstrip() + "\n", instruction, temperature)

    def crossover(
        self, code_a: str, code_b: str, instruction: str, temperature: float
    ) -> GenerationRequest:
        code = f"{code_a.rstrip()}\n\n\n{code_b.rstrip()}\n"
        return self._request(code, instruction, temperature)

    def can_vary(self, *codes: str) -> bool:
        """Always True: free text can always write something new."""
        return True

    def _request(self, code: str, instruction: str, temperature: float) -> GenerationRequest:
        prefill = f"class {self.class_name}(nn.Module):\n"
        if self.prompt_format == "completion":
            prompt = f'{PREAMBLE}\n{code}\n\n"""{instruction}"""\n'
        else:
            prompt = self.chat_template(
                f"{PREAMBLE}\n{code}\n\n{instruction} "
                f"Answer with the new {self.class_name} class only."
            )
        return GenerationRequest(prompt=prompt, temperature=temperature, prefill=prefill)

    def to_code(self, request: GenerationRequest, generation: Generation) -> str:
        """The network's source code.

        Raises:
            CandidateError: ``no_code`` or ``syntax_error``.
        """
        return extract_class_code(request.prefill + generation.text, class_name=self.class_name)
