"""Constraints on the wire: a grammar rendered as a regex, and a regex read back.

An OpenAI-compatible server cannot run our grammars (Python objects), but vLLM, SGLang and
``llmatic.llm.serve`` all take a *regex* with a request and sample only texts that match it
in full. This module is both ends of that:

- :func:`regex_of` renders a request's :class:`~llmatic.llm.base.TextConstraint` as a regex
  where the constraint can say exactly what it allows (``constraint.to_regex()``); None
  where it cannot, and the request then goes unconstrained (never with a wrong grammar).
- :func:`compile_regex` reads such a regex back into a :class:`RegexLanguage`, and
  :class:`RegexConstraint` makes it a :class:`~llmatic.llm.base.TextConstraint` again, so
  that our server samples under it with the same decoding code as in process.

The regexes written here use literal characters, backslash escapes, groups and ``|`` only:
a finite language (the NB201 cell grammar is one), which every regex engine reads the same
way. :func:`compile_regex` accepts exactly that subset and rejects anything else
(quantifiers, classes, anchors) with :class:`RegexError`, rather than guess at it.
A text is complete as soon as the regex matches it in full (the languages written here are
prefix-free, so that is also the only way to complete it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

#: Characters that mean something in a regex: escaped with a backslash when literal.
_META = frozenset("\\.^$*+?()[]{}|/")
#: Control characters written as an escape letter (JSON and every engine read these).
_CONTROL = {"\n": "n", "\t": "t", "\r": "r"}
_UNCONTROL = {letter: char for char, letter in _CONTROL.items()}
#: How far :meth:`RegexConstraint.continuations` looks ahead (characters), and the most
#: strings it returns: enough for any token of a vocabulary to fit in one of them.
LOOKAHEAD = 32
MAX_OPTIONS = 64


class RegexError(ValueError):
    """A regex outside the subset :func:`compile_regex` reads; the message says where."""


def escape(text: str) -> str:
    """``text`` as a regex that matches exactly it.

    Raises:
        ValueError: ``text`` has a control character other than newline, tab, CR.
    """
    out = []
    for char in text:
        if char in _META:
            out.append("\\" + char)
        elif char in _CONTROL:
            out.append("\\" + _CONTROL[char])
        elif ord(char) < 32 or ord(char) == 127:
            raise ValueError(f"no regex escape for control character {char!r}")
        else:
            out.append(char)
    return "".join(out)


def alternation(regexes: Sequence[str]) -> str:
    """One regex matching any of ``regexes`` (a group unless there is only one)."""
    if not regexes:
        raise ValueError("an alternation needs at least one branch")
    # A plain group, not ``(?:``: every engine reads it, and capturing does not matter.
    return regexes[0] if len(regexes) == 1 else "(" + "|".join(regexes) + ")"


def regex_of(constraint: object) -> str | None:
    """The regex of ``constraint``'s language, or None when it has no exact one.

    A constraint offers one through a ``to_regex()`` method that returns a ``str`` (or
    None when this instance cannot be rendered).
    """
    to_regex = getattr(constraint, "to_regex", None)
    return to_regex() if callable(to_regex) else None


# --- reading a regex back -----------------------------------------------------------------


@dataclass(frozen=True)
class RegexLanguage:
    """A compiled regex: a Thompson NFA without loops (the subset has no quantifiers).

    State ``s`` reads ``chars[s]`` and goes to ``next[s]``; :attr:`jumps` are the
    empty moves. State ``accept`` reads nothing: a set holding it matches in full.
    """

    pattern: str
    chars: tuple[str, ...]
    next: tuple[int, ...]
    jumps: dict[int, tuple[int, ...]]
    start: frozenset[int]
    accept: int

    def closure(self, states: set[int] | frozenset[int]) -> frozenset[int]:
        """``states`` with everything their empty moves reach."""
        out, pending = set(states), list(states)
        while pending:
            for target in self.jumps.get(pending.pop(), ()):
                if target not in out:
                    out.add(target)
                    pending.append(target)
        return frozenset(out)

    def step(self, states: frozenset[int], char: str) -> frozenset[int]:
        """The states after reading ``char`` from ``states`` (empty: out of the language)."""
        return self.closure(
            {self.next[s] for s in states if s < len(self.chars) and self.chars[s] == char}
        )

    def moves(self, states: frozenset[int]) -> dict[str, frozenset[int]]:
        """Each character readable from ``states``, with the states after it."""
        targets: dict[str, set[int]] = {}
        for s in states:
            if s < len(self.chars) and self.chars[s]:
                targets.setdefault(self.chars[s], set()).add(self.next[s])
        return {char: self.closure(t) for char, t in sorted(targets.items())}

    def fullmatch(self, text: str) -> bool:
        """Whether the language holds ``text``."""
        states = self.start
        for char in text:
            states = self.step(states, char)
        return self.accept in states


class _Builder:
    """Parses the subset and builds the NFA right to left (each piece knows its successor)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.chars: list[str] = []
        self.next: list[int] = []
        self.jumps: dict[int, tuple[int, ...]] = {}

    def fail(self, what: str) -> RegexError:
        return RegexError(
            f"{what} at position {self.pos} of the regex; llmatic.llm.serve reads literal "
            "characters, backslash escapes, groups and | only"
        )

    def new_state(self, char: str = "", target: int = -1) -> int:
        self.chars.append(char)
        self.next.append(target)
        return len(self.chars) - 1

    def parse(self) -> list[list[object]]:
        branches = self.alternatives()
        if self.pos != len(self.pattern):
            raise self.fail(f"unbalanced {self.pattern[self.pos]!r}")
        return branches

    def alternatives(self) -> list[list[object]]:
        """``seq ('|' seq)*`` as a list of sequences of atoms (a char or a nested list)."""
        branches: list[list[object]] = [[]]
        while self.pos < len(self.pattern):
            char = self.pattern[self.pos]
            if char == "|":
                self.pos += 1
                branches.append([])
            elif char == ")":
                break
            elif char == "(":
                self.pos += 1
                if self.pattern.startswith("?:", self.pos):
                    self.pos += 2
                elif self.pattern.startswith("?", self.pos):
                    raise self.fail("unsupported group '(?'")
                inner = self.alternatives()
                if not self.pattern.startswith(")", self.pos):
                    raise self.fail("unclosed group")
                self.pos += 1
                branches[-1].append(inner)
            elif char == "\\":
                escaped = self.pattern[self.pos + 1 : self.pos + 2]
                if escaped in _UNCONTROL:
                    branches[-1].append(_UNCONTROL[escaped])
                elif escaped and not escaped.isalnum():
                    branches[-1].append(escaped)
                else:
                    raise self.fail(f"unsupported escape '\\{escaped}'")
                self.pos += 2
            elif char in _META:
                raise self.fail(f"unsupported syntax {char!r}")
            else:
                branches[-1].append(char)
                self.pos += 1
        return branches

    def build(self, branches: list[list[object]], after: int) -> int:
        """The entry state of ``branches`` followed by state ``after``."""
        entries = [self.sequence(seq, after) for seq in branches]
        if len(entries) == 1:
            return entries[0]
        fork = self.new_state()
        self.jumps[fork] = tuple(entries)
        return fork

    def sequence(self, seq: list[object], after: int) -> int:
        entry = after
        for atom in reversed(seq):
            if isinstance(atom, str):
                entry = self.new_state(atom, entry)
            else:
                entry = self.build(atom, entry)  # type: ignore[arg-type]
        if entry == after:  # an empty branch: a state that jumps straight on
            entry = self.new_state()
            self.jumps[entry] = (after,)
        return entry


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> RegexLanguage:
    """Reads ``pattern`` (literals, escapes, groups, ``|``) into a :class:`RegexLanguage`.

    Cached: the siblings of a batch often send the same regex.

    Raises:
        RegexError: ``pattern`` uses anything else (quantifiers, classes, anchors, ...).
    """
    if not isinstance(pattern, str):
        raise RegexError("the regex must be a string")
    builder = _Builder(pattern)
    try:
        branches = builder.parse()
        accept = builder.new_state()  # reads nothing: its char is ""
        entry = builder.build(branches, accept)
    except RecursionError:
        raise RegexError("groups nested too deeply in the regex") from None
    language = RegexLanguage(
        pattern=pattern,
        chars=tuple(builder.chars),
        next=tuple(builder.next),
        jumps=dict(builder.jumps),
        start=frozenset(),
        accept=accept,
    )
    return replace(language, start=language.closure({entry}))


class RegexConstraint:
    """A :class:`RegexLanguage` as a :class:`~llmatic.llm.base.TextConstraint`.

    One instance per sample: it remembers the states after the text it was last asked
    about, so that each step of decoding reads only the new characters.

    Args:
        language: The compiled regex.
    """

    def __init__(self, language: RegexLanguage) -> None:
        self.language = language
        self._text = ""
        self._states = language.start

    def to_regex(self) -> str:
        """The regex this constraint was read from (it renders back unchanged)."""
        return self.language.pattern

    def _states_after(self, text: str) -> frozenset[int]:
        if text.startswith(self._text):
            states, rest = self._states, text[len(self._text) :]
        else:
            states, rest = self.language.start, text
        for char in rest:
            if not states:
                break
            states = self.language.step(states, char)
        self._text, self._states = text, states
        return states

    def continuations(self, text: str) -> list[str] | None:
        states = self._states_after(text)
        if not states:
            return None
        if self.language.accept in states:
            return []
        # Breadth first, one character a round, until LOOKAHEAD characters or a complete
        # text; a frontier that would grow past MAX_OPTIONS stops where it is (strings may
        # be cut short: every valid continuation still starts with one of them).
        done: list[str] = []
        frontier: list[tuple[str, frozenset[int]]] = [("", states)]
        for depth in range(LOOKAHEAD):
            grown: list[tuple[str, frozenset[int]]] = []
            for prefix, at in frontier:
                if depth and self.language.accept in at:
                    done.append(prefix)
                    continue
                grown.extend(
                    (prefix + char, after) for char, after in self.language.moves(at).items()
                )
            if depth and len(done) + len(grown) > MAX_OPTIONS:
                break
            frontier = grown
            if not frontier:
                break
        return sorted({*done, *(prefix for prefix, _ in frontier)})
