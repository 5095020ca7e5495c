"""extract_class_code: the class is cut out of messy LLM output, and nothing else is raised."""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmatic.errors import CandidateError
from llmatic.llm.extraction import extract_class_code
from llmatic.nb201.cell import arch_to_code

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
CELL = arch_to_code(ARCH)

NET = """import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block(3)
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(self.block(x).flatten(1))
"""


def class_names(code: str) -> list[str]:
    return [n.name for n in ast.parse(code).body if isinstance(n, ast.ClassDef)]


def test_plain_code_is_returned_as_is():
    assert extract_class_code(CELL) == CELL
    # Statements keep their text; the blank lines between them go.
    assert extract_class_code(NET).replace("\n\n", "\n") == NET.replace("\n\n", "\n").replace(
        "\n\n", "\n"
    )


def test_fenced_code_with_chatter():
    text = f"Sure! Here is the improved cell:\n```python\n{CELL}```\nIt uses more convolutions."
    code = extract_class_code(text, class_name="Cell")
    assert code.strip() == CELL.strip()


def test_unclosed_fence():
    text = f"```python\n{CELL}"
    assert extract_class_code(text).strip() == CELL.strip()


def test_prefill_then_closing_fence():
    # The prefill starts the class before any fence; the model closes a fence it never opened.
    text = CELL + "```\n\nThis is the cell.\n"
    assert extract_class_code(text, class_name="Cell").strip() == CELL.strip()


def test_fence_block_without_class_is_skipped():
    text = f"```bash\npip install torch\n```\nThen:\n```python\n{CELL}```"
    assert class_names(extract_class_code(text)) == ["Cell"]


def test_indented_fenced_block_is_dedented():
    indented = "\n".join("    " + line if line else "" for line in CELL.split("\n"))
    text = f"1. The code:\n    ```python\n{indented}\n    ```\n"
    assert extract_class_code(text).strip() == CELL.strip()


def test_truncated_last_line_is_dropped():
    # "return x3" was lost: the cut line still parses, so only the caller can say it is cut.
    text = CELL.split("        return x3")[0] + "        return x"
    assert extract_class_code(text).rstrip().endswith("return x")
    code = extract_class_code(text, truncated=True)
    assert code.rstrip().endswith("self.edge_2_3(x2)")
    compile(code, "<t>", "exec")


def test_truncated_inside_a_call_keeps_the_parsable_prefix():
    text = CELL.split("self.edge_1_2")[0] + 'self.edge_1_2 = OPS["nor_conv'
    code = extract_class_code(text)
    assert "edge_0_2" in code and "edge_1_2" not in code
    compile(code, "<t>", "exec")


def test_two_classes_both_kept_in_order():
    code = extract_class_code(NET)
    assert class_names(code) == ["Block", "Net"]
    assert code.startswith("import torch\nfrom torch import nn\n")


def test_wanted_class_not_last_drops_what_follows():
    text = NET.replace("class Net", "class Cell") + "\n\nclass Other(nn.Module):\n    pass\n"
    code = extract_class_code(text, class_name="Cell")
    assert class_names(code) == ["Block", "Cell"]


def test_unknown_wanted_class_keeps_all_classes():
    assert class_names(extract_class_code(NET, class_name="Missing")) == ["Block", "Net"]


def test_usage_code_after_the_class_is_dropped():
    text = CELL + "\n\ncell = Cell(16)\nx = torch.randn(1, 16, 8, 8)\nprint(cell(x).shape)\n"
    code = extract_class_code(text)
    assert "print" not in code and "cell = Cell" not in code
    assert code.strip() == CELL.strip()


def test_constants_and_helpers_before_the_class_are_kept():
    text = (
        "import torch.nn as nn\nWIDTH = 16\n\ndef conv(c):\n    return nn.Conv2d(c, c, 3)\n\n"
        "Some chatter here.\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.c = conv(WIDTH)\n"
    )
    code = extract_class_code(text, class_name="Net")
    tree = ast.parse(code)
    kinds = [type(n).__name__ for n in tree.body]
    assert kinds == ["Import", "Assign", "FunctionDef", "ClassDef"]


def test_chatter_between_imports_and_class():
    text = "import torch\nfrom torch import nn\nHere is the network you asked for:\n" + CELL
    code = extract_class_code(text)
    assert code.startswith("import torch\nfrom torch import nn\nclass Cell")


def test_semicolon_statement_is_cut():
    code = extract_class_code("import torch; print('hi')\nclass A:\n    pass\n")
    assert "print" not in code
    assert class_names(code) == ["A"]


def test_decorated_class_keeps_decorator():
    code = extract_class_code(
        "import dataclasses\n@dataclasses.dataclass\nclass A:\n    x: int = 1\n"
    )
    assert "@dataclasses.dataclass\nclass A" in code


def test_windows_newlines():
    assert extract_class_code(CELL.replace("\n", "\r\n")).strip() == CELL.strip()


def test_unicode_is_kept():
    text = 'class Zelle(nn.Module):\n    """Eine Zelle — mit Ümlauten und 🙂."""\n    größe = 3\n'
    code = extract_class_code("Voilà ! " + "\n" + text)
    assert "🙂" in code and "größe" in code


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "def f():\n    return 1\n",
        "import torch\nx = 1\n",
        "```python\n```",
        "The class of this problem is hard.",
        "\x00\x00",
        "classy = 3",
    ],
)
def test_no_class_is_no_code(text):
    with pytest.raises(CandidateError) as info:
        extract_class_code(text)
    assert info.value.kind == "no_code"


@pytest.mark.parametrize(
    "text",
    [
        "class Net(nn.Module)\n    def __init__(self): pass\n",  # missing colon
        "class Net(nn.Module:\n    pass\n",
        "class Cell(nn.Module):\n",  # prefill, then nothing
        'class Cell(nn.Module):\n    def __init__(self, C):\n        self.edge_0_1 = OPS["',
        "if True:\n    class A:\n        pass\n",  # parses, but the class is not module-level
        "class A:\n    return 1\n",  # parses, does not compile
        "class A(\x00):\n    pass\n",
    ],
)
def test_broken_class_is_syntax_error(text):
    with pytest.raises(CandidateError) as info:
        extract_class_code(text)
    if "return 1" in text:
        assert info.value.kind == "syntax_error"
    assert info.value.kind in ("syntax_error", "no_code")


def test_init_only_prefill_continuation_gives_partial_class():
    # The "init" prompt format: the model writes only the edge lines; the rest parses.
    text = (
        "class Cell(nn.Module):\n    def __init__(self, C):\n        super().__init__()\n"
        '        self.edge_0_1 = OPS["skip_connect"](C)\n        self.edge_0_2 = OPS["none"](C)\n'
    )
    assert extract_class_code(text) == text


def test_garbage_after_the_class():
    text = CELL + "\n}}}}} ))) <|im_end|> garbage\n```\n"
    assert extract_class_code(text).strip() == CELL.strip()


# --- property tests --------------------------------------------------------------------------

SNIPPETS = [
    CELL,
    NET,
    "```python\n",
    "```\n",
    "Here you go:\n",
    "class ",
    "import torch\n",
    "def f(x):\n",
    "    return x\n",
    ")",
    "(",
    '"""',
    "'",
    "\t",
    "\n\n",
    "@",
    "\\",
]


def check(text: str, **kwargs) -> None:
    try:
        code = extract_class_code(text, **kwargs)
    except CandidateError as err:
        assert err.kind in ("no_code", "syntax_error")
        return
    compile(code, "<candidate>", "exec", dont_inherit=True)
    assert any(isinstance(n, ast.ClassDef) for n in ast.parse(code).body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400), st.sampled_from([None, "Cell", "Net"]), st.booleans())
def test_random_text_never_raises_anything_else(text, class_name, truncated):
    check(text, class_name=class_name, truncated=truncated)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([CELL, NET, f"```python\n{CELL}```\nDone.", "import torch\n" + CELL]),
    st.lists(
        st.tuples(
            st.sampled_from(["delete", "insert", "truncate", "duplicate"]),
            st.floats(0, 1),
            st.floats(0, 1),
            st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=8)),
        ),
        max_size=5,
    ),
    st.sampled_from([None, "Cell", "Net", "Block"]),
)
def test_mutilated_code_never_raises_anything_else(code, edits, class_name):
    for op, a, b, snippet in edits:
        i, j = sorted((int(a * len(code)), int(b * len(code))))
        if op == "delete":
            code = code[:i] + code[j:]
        elif op == "insert":
            code = code[:i] + snippet + code[i:]
        elif op == "truncate":
            code = code[:j]
        else:
            code = code[:j] + code[i:j] + code[j:]
    check(code, class_name=class_name)
