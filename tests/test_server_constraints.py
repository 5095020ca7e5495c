"""Constrained decoding on a server: grammars rendered as regexes and read back.

- :func:`llmatic.llm.wire.escape` and :meth:`EdgeLinesConstraint.to_regex` against Python's
  own ``re`` (an independent engine: what vLLM or SGLang would read);
- the round trip: the regex read back by :func:`~llmatic.llm.wire.compile_regex` allows
  the same texts and the same next characters as the grammar it was rendered from;
- the end: ``llmatic.llm.serve`` with the embedded model, sent the regex by
  :class:`OpenAICompatibleLLM`, writes only valid cells (slow).
"""

from __future__ import annotations

import random
import re

import pytest
from conftest import edges_completion

from llmatic.llm.base import Generation
from llmatic.llm.grammar import Choice, ProgramConstraint
from llmatic.llm.wire import (
    RegexConstraint,
    RegexError,
    compile_regex,
    escape,
    regex_of,
)
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch, parse_arch
from llmatic.nb201.inspect import inspect_cell
from llmatic.nb201.ops import OP_NAMES
from llmatic.nb201.prompts import CellPrompter, EdgeLinesConstraint, _edge_ops

PARENT = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
OTHER = "|none~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|none~2|"


def grammars() -> dict[str, EdgeLinesConstraint]:
    """The NB201 cell grammars the search builds, without steering (a fresh one per call)."""
    reference = _edge_ops(arch_to_code(PARENT))
    other = _edge_ops(arch_to_code(OTHER))
    return {
        "mutation": EdgeLinesConstraint(reference=reference, min_changes=1, max_changes=2),
        "crossover": EdgeLinesConstraint(
            allowed=[sorted({a, b}) for a, b in zip(reference, other, strict=True)]
        ),
        "two_ops": EdgeLinesConstraint(allowed=[["none", "nor_conv_3x3"]] * len(EDGES)),
    }


def language(constraint) -> set[str]:
    """Every complete text of a finite constraint, by walking its continuations."""
    texts, pending = set(), [""]
    while pending:
        text = pending.pop()
        options = constraint.continuations(text)
        assert options is not None, f"the walk left the language at {text!r}"
        if not options:
            texts.add(text)
        pending.extend(text + option for option in options)
    return texts


def next_chars(options: list[str] | None) -> set[str] | None:
    return None if options is None else {option[0] for option in options}


# --- rendering --------------------------------------------------------------------------------


def test_escape_matches_exactly_the_text_in_python_re():
    texts = ['self.edge_0_1 = OPS["none"](C)\n', "a|b(c)[d]{e}*+?^$\\/.", "tab\tcr\r", ""]
    for text in texts:
        assert re.fullmatch(escape(text), text)
        assert compile_regex(escape(text)).fullmatch(text)
        assert not compile_regex(escape(text)).fullmatch(text + "x")
    with pytest.raises(ValueError, match="control character"):
        escape("\x00")


@pytest.mark.parametrize("name", ["mutation", "crossover", "two_ops"])
def test_cell_regex_is_the_grammar_in_python_re(name):
    constraint = grammars()[name]
    pattern = constraint.to_regex()
    texts = language(grammars()[name])
    assert texts and all(re.fullmatch(pattern, text) for text in texts)
    # Texts just outside: an edge changed to an operation the grammar leaves out, a cut.
    rng = random.Random(0)
    outside = 0
    for text in rng.sample(sorted(texts), min(40, len(texts))):
        assert not re.fullmatch(pattern, text[:-1])
        for op in OP_NAMES:
            edited = text.replace(text.split('"')[0], op, 1)
            if edited not in texts:
                outside += 1
                assert not re.fullmatch(pattern, edited), edited
    assert outside > 0


def test_mutation_regex_counts_the_changes():
    constraint = grammars()["mutation"]
    texts = language(grammars()["mutation"])
    parent = parse_arch(PARENT)
    # 6 edges x 4 other operations, plus 15 pairs x 16: 1 or 2 changes, never 0 or 3.
    assert len(texts) == 6 * 4 + 15 * 16
    for text in texts:
        arch = parse_arch(format_arch(dict(zip(EDGES, _ops_of(text), strict=True))))
        assert 1 <= sum(arch[e] != parent[e] for e in EDGES) <= 2
    assert re.fullmatch(constraint.to_regex(), edges_completion(PARENT)[:-1]) is None


def _ops_of(text: str) -> list[str]:
    return [text.split('"')[0]] + re.findall(r'OPS\["(\w+)"\]', text)


def test_free_form_and_unknown_constraints_have_no_regex():
    def program():
        yield "x = "
        yield Choice("n", 0, ("1", "2"))

    assert regex_of(ProgramConstraint(program)) is None  # never a wrong grammar: none
    assert regex_of(object()) is None
    assert regex_of(EdgeLinesConstraint()) == EdgeLinesConstraint().to_regex()


# --- reading back -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mutation", "crossover", "two_ops"])
def test_round_trip_allows_the_same_texts_and_next_characters(name):
    grammar = grammars()[name]
    read_back = RegexConstraint(compile_regex(grammar.to_regex()))
    texts = language(grammars()[name])
    assert language(RegexConstraint(compile_regex(grammar.to_regex()))) == texts
    rng = random.Random(1)
    prefixes = {
        t[:k] for t in rng.sample(sorted(texts), min(12, len(texts))) for k in range(len(t) + 1)
    }
    # And some that left the grammar: a wrong operation, a wrong fixed character.
    prefixes |= {"nonf", 'none"]', "x", 'nor_conv_3x3"](C)\n       !'}
    for prefix in sorted(prefixes, key=lambda p: (len(p), p)):
        expected = grammar.continuations(prefix)
        got = read_back.continuations(prefix)
        assert next_chars(got) == next_chars(expected), prefix
        assert (got == []) == (expected == [])
        if got:  # what it offers are texts of the language, as far as they go
            assert all(any(t.startswith(prefix + option) for t in texts) for option in got)


def test_continuations_are_incremental_and_restartable():
    pattern = grammars()["two_ops"].to_regex()
    constraint = RegexConstraint(compile_regex(pattern))
    text = edges_completion("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")[:-1]
    assert constraint.continuations(text) == []
    assert constraint.continuations(text[:5]) is not None  # back to a shorter text
    assert constraint.continuations("nonx") is None
    assert constraint.to_regex() == pattern


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a*", "unsupported syntax '\\*'"),
        ("[ab]", "unsupported syntax '\\['"),
        ("^a", "unsupported syntax"),
        (r"\d", "unsupported escape"),
        ("(?=a)b", "unsupported group"),
        ("(ab", "unclosed group"),
        ("ab)", "unbalanced"),
        ("(" * 5000 + ")" * 5000, "nested too deeply"),
    ],
)
def test_compile_rejects_what_it_cannot_read(pattern, message):
    with pytest.raises(RegexError, match=message):
        compile_regex(pattern)


def test_compile_reads_groups_alternatives_and_empty_branches():
    language_ = compile_regex("a(?:b|)c|(d)")
    assert [language_.fullmatch(t) for t in ("abc", "ac", "d", "a", "abd", "")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


# --- against llmatic.llm.serve with the embedded model ---------------------------------------


@pytest.mark.slow
def test_server_samples_only_valid_cells_under_the_cell_grammar(llmatic_server):
    from llmatic.llm.openai_backend import OpenAICompatibleLLM
    from llmatic.nb201.prompts import STOP

    prompter = CellPrompter(mutation_prompts=["Change one operation."], crossover_prompt="x")
    parent = parse_arch(PARENT)
    requests = [
        prompter.mutation(arch_to_code(PARENT), "Change one operation.", 0.6 + 0.1 * i)
        for i in range(6)
    ]
    requests.append(prompter.crossover(arch_to_code(PARENT), arch_to_code(OTHER), "x", 0.8))
    llm = OpenAICompatibleLLM(
        base_url=llmatic_server,
        model="smollm2-135m",
        max_new_tokens=60,  # the model chooses 6 names; the grammar writes the rest
        stop=STOP["edges"],
        max_concurrency=len(requests),
        timeout_s=300,
        structured_output="llmatic",
    )
    out = llm.generate(requests)
    for request, generation in zip(requests, out, strict=True):
        assert re.fullmatch(request.constraint.to_regex(), generation.text), generation.text
        code = prompter.to_code(request, generation)
        arch = parse_arch(inspect_cell({"code": code, "channels": 4, "size": 8})["arch"])
        if request.constraint.reference is not None:  # a mutation: 1 or 2 edges changed
            assert 1 <= sum(arch[e] != parent[e] for e in EDGES) <= 2
        else:  # a crossover: each edge from one of the parents
            other = parse_arch(OTHER)
            assert all(arch[e] in (parent[e], other[e]) for e in EDGES)
    # Free text from the same prompts at this length is rarely six clean lines: the
    # grammar, not luck, made these valid (the benchmark measures both).
    assert all(isinstance(g, Generation) and g.num_tokens > 0 for g in out)
