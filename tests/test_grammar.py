"""Grammars written as programs (llmatic.llm.grammar): the language, steering, claims."""

from __future__ import annotations

import weakref

import pytest

from llmatic.llm.grammar import Choice, ProgramConstraint, parse, write


def pair():
    """``x = A op B`` where op is ``+`` or ``-`` and A, B are 1, 12 or nothing-then-7."""
    yield "x = "
    a = yield Choice("a", 0, ("1", "12", ""), (1, 12, None))
    yield " "
    op = yield Choice("op", 0, ("+", "-"))
    yield " 7\n" if a == 2 else " 3\n"
    return (a, op)


def test_continuations_follow_the_program_through_shared_prefixes_and_empty_options():
    c = ProgramConstraint(pair)
    # "1" is complete and a prefix of "12"; "" skips to the fixed " ".
    assert c.continuations("") == ["x = "]
    assert c.continuations("x = ") == sorted(["1 ", "12 ", " "])
    assert c.continuations("x = 1") == sorted([" ", "2 "])
    assert c.continuations("x = 1 ") == ["+ 3\n", "- 3\n"]  # each option runs on to the next choice
    assert c.continuations("x =  -") == [" 7\n"]
    assert c.continuations("x = 12 + 3\n") == []
    assert c.continuations("x = 3") is None


def test_parse_and_write_read_the_text_both_ways():
    assert parse(pair, "x = 12 - 3\n") == (1, 1)
    assert parse(pair, "x =  + 7\n") == (2, 0)
    with pytest.raises(ValueError, match="not in the grammar"):
        parse(pair, "x = 12 - 7\n")
    text, result = write(pair, lambda choice: len(choice.options) - 1)
    assert (text, result) == ("x =  - 7\n", (2, 1))


def test_an_option_whose_every_completion_is_avoided_is_left_out():
    avoid = {"x = 1 + 3\n", "x = 1 - 3\n"}
    c = ProgramConstraint(pair, avoid=avoid)
    # Both completions of "1" are avoided: only "12" and "" remain at the first choice
    # ("1" is not offered, though "12" starts with it).
    assert c.continuations("x = ") == sorted(["12 ", " "])
    # Past the last choice nothing is left but the avoided texts: they are allowed then.
    assert c.continuations("x = 1 ") == ["+ 3\n", "- 3\n"]  # each option runs on to the next choice
    every_text = {f"x = {a} {op} 3\n" for a in ("1", "12") for op in "+-"}
    every_text |= {f"x =  {op} 7\n" for op in "+-"}
    everything = ProgramConstraint(pair, avoid=every_text)
    # Nothing new anywhere: all options stay (a duplicate, which costs no evaluation,
    # rather than no sample).
    assert everything.continuations("x = ") == sorted(["1 ", "12 ", " "])


def test_complete_texts_are_recorded_and_steer_the_next_rows():
    record: set[str] = set()
    first = ProgramConstraint(pair, avoid=record, record=record)
    assert first.continuations("x = 12 + 3\n") == []
    assert record == {"x = 12 + 3\n"}
    second = ProgramConstraint(pair, avoid=record, record=record)
    assert second.continuations("x = 12 ") == ["- 3\n"]


def test_siblings_inside_a_subtree_push_a_row_elsewhere():
    claims: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    rows = [ProgramConstraint(pair, claims=claims) for _ in range(3)]
    rows[0].continuations("x = 12 ")  # one sibling inside "12", which has two texts
    assert "12 " in rows[1].continuations("x = ")  # room left for one more
    rows[1].continuations("x = 12 ")
    assert "12 " not in rows[2].continuations("x = ")  # two rows for two texts: full
    assert rows[0].continuations("x = 12 + 3\n") == []  # done: its claim is released
    assert "12 " in rows[2].continuations("x = ")


def test_a_choice_must_offer_something():
    with pytest.raises(ValueError, match="no option"):
        Choice("empty", 0, ())
