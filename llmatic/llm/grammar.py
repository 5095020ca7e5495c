"""Grammars written as Python programs, for constrained decoding.

A *program* is a generator function that writes one text: it yields a ``str`` where the
text is fixed and a :class:`Choice` where the model decides; ``yield choice`` returns the
index of the option taken, and the generator's return value is what the text means (a
network's layers, say). Written this way a grammar reads like the code it produces, and
the state that the text depends on (channel counts, spatial sizes) is ordinary variables.

- :class:`ProgramConstraint` makes a program a :class:`~llmatic.llm.base.TextConstraint`
  (what :mod:`llmatic.llm.decoding` samples under), with steering away from texts already
  written.
- :func:`parse` reads a complete text back into the program's result.
- :func:`write` writes the text that a decision function picks.

The engine replays the program from the start for each prefix of decisions it explores
(generators cannot be copied) and memoises every replay, so a row's cost per step is a walk
over its decisions so far. Options of one choice may share prefixes, and one may be the
empty string (an optional line): the walk follows every option that the text so far is
consistent with.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Generator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    """A decision point of a program.

    Args:
        name: What is decided, e.g. ``"channels"`` (for :func:`write`'s decision function).
        index: Which instance of ``name`` (e.g. the layer number), or 0.
        options: The text each option writes (``""`` for "nothing here").
        values: What each option means, in the same order; the texts when empty.
    """

    name: str
    index: int
    options: tuple[str, ...]
    values: tuple = ()

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"choice {self.name}[{self.index}] has no option")
        if self.values and len(self.values) != len(self.options):
            raise ValueError(f"choice {self.name}[{self.index}]: one value per option")

    def value(self, option: int) -> Any:
        """What option ``option`` means."""
        return self.values[option] if self.values else self.options[option]


#: A program: writes text (``str``), asks (:class:`Choice` -> option index), returns a result.
Program = Callable[[], Generator["str | Choice", int, Any]]


@dataclass(frozen=True)
class _Replay:
    """The program run with some decisions: its text, then what it asks next."""

    text: str
    choice: Choice | None  # None: the program has ended
    result: Any = None


def _replay(program: Program, decisions: Sequence[int]) -> _Replay:
    """Runs ``program`` with ``decisions`` up to its next choice (or its end).

    Raises:
        ValueError: A decision is not an option index of its choice.
    """
    parts: list[str] = []
    generator = program()
    sent: int | None = None
    taken = 0
    try:
        while True:
            item = generator.send(sent)  # send(None) starts it, or passes a fixed text
            sent = None
            if isinstance(item, str):
                parts.append(item)
                continue
            if taken == len(decisions):
                return _Replay("".join(parts), item)
            sent = decisions[taken]
            if not 0 <= sent < len(item.options):
                raise ValueError(f"option {sent} of choice {item.name}[{item.index}]")
            parts.append(item.options[sent])
            taken += 1
    except StopIteration as stop:
        if taken != len(decisions):
            raise ValueError(f"{len(decisions) - taken} decisions past the end") from None
        return _Replay("".join(parts), None, stop.value)


class ProgramConstraint:
    """A program's language as a :class:`~llmatic.llm.base.TextConstraint`.

    Args:
        program: The grammar.
        avoid: Complete texts not to write again (e.g. the parents and every text already
            sampled): an option is left out when every text it can complete to within
            ``lookahead`` more choices is in ``avoid``, unless that leaves none. A live
            view is fine.
        record: A set to which each complete text is added (pass the set that ``avoid``
            also covers, to steer later samples away: siblings sampled together see each
            other's texts as soon as they are complete).
        claims: A mapping shared by siblings (a ``weakref.WeakKeyDictionary``) in which
            each unfinished row keeps its text so far: a row then prefers options with
            more new completions (within ``lookahead``) than siblings already inside them,
            so that rows that reach the end of one subtree together end apart.
        lookahead: How many choices past an option the steering looks (each costs a
            replay per option, at most ``options ** lookahead``, and usually one, because
            the search stops as soon as it has counted enough).
    """

    def __init__(
        self,
        program: Program,
        *,
        avoid: Container[str] = frozenset(),
        record: set[str] | None = None,
        claims: MutableMapping[object, str] | None = None,
        lookahead: int = 3,
    ) -> None:
        self.program = program
        self.avoid = avoid
        self.record = record
        self.claims = claims
        self.lookahead = lookahead
        self._replays: dict[tuple[int, ...], _Replay] = {}

    def _run(self, decisions: tuple[int, ...]) -> _Replay:
        replay = self._replays.get(decisions)
        if replay is None:
            replay = self._replays[decisions] = _replay(self.program, decisions)
        return replay

    def _count_new(self, decisions: tuple[int, ...], depth: int, limit: int) -> int:
        """How many texts that ``decisions`` complete to are not in ``avoid``, counted up
        to ``limit``; a branch that needs more than ``depth`` more choices (of more than
        one option) counts as ``limit`` (too far to tell, so plenty)."""
        replay = self._run(decisions)
        if replay.choice is None:
            return int(replay.text not in self.avoid)
        options = len(replay.choice.options)
        if depth == 0 and options > 1:
            return limit
        found = 0
        for k in range(options):
            # A choice with one option decides nothing: it costs no lookahead.
            found += self._count_new((*decisions, k), depth - (options > 1), limit - found)
            if found >= limit:
                break
        return found

    def _rank(self, decisions: tuple[int, ...]) -> int:
        """2: room for this row besides the siblings inside ``decisions``' subtree; 1: a new
        text but no such room; 0: every text is avoided (within ``lookahead``)."""
        inside = self._inside(self._run(decisions).text)
        new = self._count_new(decisions, self.lookahead, inside + 1)
        return (new > inside) + (new > 0)

    def _inside(self, prefix: str) -> int:
        """Siblings whose text so far starts with ``prefix``."""
        if self.claims is None:
            return 0
        return sum(
            other is not self and text.startswith(prefix)
            for other, text in list(self.claims.items())
        )

    def continuations(self, text: str) -> list[str] | None:
        # Each frontier entry: (what may follow text, whether it completes an avoided text).
        frontier: list[tuple[str, bool]] = []
        complete = False
        pending: list[tuple[int, ...]] = [()]
        while pending:
            decisions = pending.pop()
            replay = self._run(decisions)
            if not text.startswith(replay.text):
                if replay.text.startswith(text):  # text ends inside fixed text
                    frontier.append((replay.text[len(text) :], self._rank(decisions)))
                continue
            if replay.choice is None:
                if len(replay.text) == len(text):
                    complete = True
                continue
            rest = text[len(replay.text) :]
            for k, option in enumerate(replay.choice.options):
                if rest.startswith(option):  # written in full (or empty): look past it
                    pending.append((*decisions, k))
                elif option.startswith(rest):  # the text stops inside this option
                    after = self._run((*decisions, k))
                    frontier.append((after.text[len(text) :], self._rank((*decisions, k))))
        if complete:
            if self.record is not None:
                self.record.add(text)
            if self.claims is not None:
                self.claims.pop(self, None)
            return []
        if not frontier:
            return None
        if self.claims is not None:
            self.claims[self] = text
        # Options with room for this row besides the siblings inside, else options with a
        # new text, else all (a duplicate, which the search records and does not charge).
        best = max(rank for _, rank in frontier)
        return sorted({rest for rest, rank in frontier if rank == best})


def parse(program: Program, text: str) -> Any:
    """The result of ``program`` for the complete ``text``.

    Raises:
        ValueError: ``text`` is not in the program's language.
    """
    pending: list[tuple[int, ...]] = [()]
    while pending:
        decisions = pending.pop()
        replay = _replay(program, decisions)
        if not text.startswith(replay.text):
            continue
        if replay.choice is None:
            if len(replay.text) == len(text):
                return replay.result
            continue
        rest = text[len(replay.text) :]
        pending.extend(
            (*decisions, k)
            for k, option in enumerate(replay.choice.options)
            if rest.startswith(option)
        )
    raise ValueError("the text is not in the grammar's language")


def write(program: Program, decide: Callable[[Choice], int]) -> tuple[str, Any]:
    """The text and result of ``program`` when ``decide`` takes every decision.

    Args:
        decide: Maps each choice to the index of the option taken.
    """
    parts: list[str] = []
    generator = program()
    sent: int | None = None
    try:
        while True:
            item = generator.send(sent)
            sent = None
            if isinstance(item, str):
                parts.append(item)
            else:
                sent = decide(item)
                parts.append(item.options[sent])
    except StopIteration as stop:
        return "".join(parts), stop.value
