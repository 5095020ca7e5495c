"""Prompt formats of CellPrompter: LLMatic's completion format and the chat format."""

from __future__ import annotations

import pytest

from llmatic.nb201.cell import CELL_PREAMBLE, arch_to_code, parse_arch
from llmatic.nb201.inspect import inspect_cell
from llmatic.nb201.prompts import CellPrompter

PARENT = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
INSTRUCTION = "Add a skip connection to the above cell."


def template(user: str) -> str:
    return f"<|user|>\n{user}<|end|>\n<|assistant|>\n"


def test_completion_format_is_code_then_the_instruction_as_a_docstring():
    prompter = CellPrompter(mutation_prompts=[INSTRUCTION], crossover_prompt="x")
    request = prompter.mutation(arch_to_code(PARENT), INSTRUCTION, 0.7)
    assert request.prompt.startswith(CELL_PREAMBLE)
    code_at = request.prompt.index("class Cell(nn.Module)")
    assert code_at < request.prompt.index(f'"""{INSTRUCTION}"""')
    assert request.prompt.rstrip().endswith(f'"""{INSTRUCTION}"""')
    assert request.prefill.endswith('self.edge_0_1 = OPS["')


def test_chat_format_wraps_the_same_content_in_the_template_with_the_same_prefill():
    completion = CellPrompter(mutation_prompts=[INSTRUCTION], crossover_prompt="x")
    chat = CellPrompter(
        mutation_prompts=[INSTRUCTION],
        crossover_prompt="x",
        prompt_format="chat",
        chat_template=template,
    )
    a = completion.mutation(arch_to_code(PARENT), INSTRUCTION, 0.7)
    b = chat.mutation(arch_to_code(PARENT), INSTRUCTION, 0.7)
    assert b.prompt.startswith("<|user|>\n") and b.prompt.endswith("<|assistant|>\n")
    assert INSTRUCTION in b.prompt and arch_to_code(PARENT).strip() in b.prompt
    assert '"""' not in b.prompt  # an instruction, not a docstring
    assert b.prefill == a.prefill and b.constraint is not None


def test_chat_format_without_a_template_is_an_error():
    with pytest.raises(ValueError, match="chat_template"):
        CellPrompter(mutation_prompts=[INSTRUCTION], crossover_prompt="x", prompt_format="chat")


@pytest.mark.slow
@pytest.mark.parametrize("prompt_format", ["completion", "chat"])
def test_the_real_model_writes_valid_cells_in_both_formats(prompt_format):
    from llmatic.llm.transformers_backend import TransformersLLM
    from llmatic.nb201.prompts import STOP

    llm = TransformersLLM(max_new_tokens=150, stop=STOP["edges"], seed=1, num_threads=1)
    prompter = CellPrompter(
        mutation_prompts=[INSTRUCTION],
        crossover_prompt="x",
        prompt_format=prompt_format,
        chat_template=llm.format_chat,
    )
    requests = [prompter.mutation(arch_to_code(PARENT), INSTRUCTION, 0.8) for _ in range(4)]
    for request, generation in zip(requests, llm.generate(requests), strict=True):
        code = prompter.to_code(request, generation)
        arch = inspect_cell({"code": code, "channels": 4})["arch"]
        assert parse_arch(arch) != parse_arch(PARENT)
