"""Prompts that ask an LLM to edit NAS-Bench-201 cells written as code.

Two *scopes*:

- ``edges`` (default for small models): the model continues a prefilled
  ``self.edge_0_1 = OPS["`` and writes only the six edge lines; the project appends the
  standard forward pass. A small model writes far fewer tokens and far fewer broken
  classes this way, and the code it writes is still what decides the architecture.
- ``class``: the model writes the whole class, constructor and forward (for models that
  can; the mapping then checks the forward pass it wrote).

Two *formats*: ``completion`` (LLMatic's: code, then the instruction as a docstring, for
base models) and ``chat`` (the same content as a user message through the model's chat
template, with the answer prefilled the same way, for instruct models).
"""

from __future__ import annotations

import ast
import functools
import weakref
from collections.abc import Callable, Container, MutableMapping, Sequence

from llmatic.errors import CandidateError
from llmatic.llm.base import Generation, GenerationRequest
from llmatic.llm.constraints import ContainerUnion
from llmatic.llm.extraction import CLASS_STOP, extract_class_code
from llmatic.nb201.cell import (
    CELL_CLASS_NAME,
    CELL_FORWARD,
    CELL_HEADER,
    CELL_PREAMBLE,
    EDGES,
    format_arch,
)
from llmatic.nb201.ops import OP_NAMES
from llmatic.prompting import check_prompt_settings

SCOPES = ("edges", "class")
_EDGE_PREFILL = CELL_HEADER + '        self.edge_0_1 = OPS["'

#: Stop sequences that end a completion, per scope.
STOP = {
    "edges": ("\n\n", "def ", "\nclass ", '"""', "```"),
    "class": CLASS_STOP,
}


class EdgeLinesConstraint:
    """The six edge lines after the ``edges`` prefill, as a constrained-decoding grammar.

    Everything between the operation names is the fixed text of the lines; the model
    chooses each operation among ``allowed[k]`` for edge ``k``. With a ``reference`` (the
    parent's operations) the number of edges that differ from it is kept within
    ``[min_changes, max_changes]``: a trust region that makes every edit a real, local
    edit. A :class:`~llmatic.llm.base.TextConstraint`.

    Args:
        allowed: Per edge (in :data:`~llmatic.nb201.cell.EDGES` order), the operations the
            model may write; all five when None.
        reference: The parent's six operations, or None for no change limits.
        min_changes: Fewest edges that must differ from ``reference``.
        max_changes: Most edges that may differ from ``reference``.
        avoid: Arch strings the completion should not spell (those evaluated already):
            at every edge, the choices from which every completion is in ``avoid`` are
            removed, unless that leaves none. A live view is fine; it is read at every
            step.
        record: A set to which the arch string is added as soon as it is decided: when
            the edges written so far leave one completion (pass the set that ``avoid``
            also covers to steer siblings apart).
        claims: A mapping shared by siblings (a ``weakref.WeakKeyDictionary``) in which
            each undecided row keeps the edges it has written: a row then avoids a choice
            whose new completions are fewer than the siblings already committed to it.
    """

    def __init__(
        self,
        *,
        allowed: Sequence[Sequence[str]] | None = None,
        reference: Sequence[str] | None = None,
        min_changes: int = 0,
        max_changes: int = len(EDGES),
        avoid: Container[str] = frozenset(),
        record: set[str] | None = None,
        claims: MutableMapping[object, list[str]] | None = None,
    ) -> None:
        self.avoid = avoid
        self.record = record
        self.claims = claims
        self.allowed = [list(a) for a in allowed] if allowed else [list(OP_NAMES)] * len(EDGES)
        self.reference = list(reference) if reference is not None else None
        if not 0 <= min_changes <= max_changes:
            raise ValueError(
                f"need 0 <= min_changes <= max_changes, got {min_changes}, {max_changes}"
            )
        self.min_changes, self.max_changes = min_changes, max_changes
        # Fixed text after operation k: the rest of its line and the head of the next.
        self.fixed = [f'"](C)\n        self.edge_{i}_{j} = OPS["' for i, j in EDGES[1:]] + [
            '"](C)\n'
        ]

    def _options(
        self, slot: int, changes: int, chosen: list[str], *, steer: bool = True
    ) -> list[str]:
        """Operations edge ``slot`` may take after ``chosen`` (with ``changes`` changes).

        ``steer=False`` leaves out the ``avoid`` filter: a name already written stays
        valid even if ``avoid`` has grown since (it grows while a batch is generated).
        """
        options = self.allowed[slot]
        if self.reference is not None:
            same = self.reference[slot]
            if changes >= self.max_changes:
                options = [o for o in options if o == same]
            elif self.min_changes - changes >= len(EDGES) - slot:  # must change from here on
                options = [o for o in options if o != same]
        if steer and self.avoid:
            new = [o for o in options if self._count_new(slot, changes, [*chosen, o], 1)]
            # Among those, the choices with room for this row besides the siblings
            # already inside: rows that enter a subtree together cannot all end new.
            roomy = [o for o in new if self._has_room(slot, changes, [*chosen, o])]
            options = roomy or new or options
        return options

    def _count_new(self, slot: int, changes: int, ops: list[str], limit: int) -> int:
        """How many completions of ``ops`` (edges up to ``slot``) are not in ``avoid``,
        counted up to ``limit``.

        A depth-first search that stops at ``limit`` new archs: cheap while the trust
        region is mostly unexplored, and at most its size (265 archs for 2 changes of 6
        edges) when it is nearly exhausted.
        """
        if self.reference is not None and ops[slot] != self.reference[slot]:
            changes += 1
        if slot + 1 == len(EDGES):
            return int(format_arch(dict(zip(EDGES, ops, strict=True))) not in self.avoid)
        found = 0
        for o in self._options(slot + 1, changes, ops, steer=False):
            found += self._count_new(slot + 1, changes, [*ops, o], limit - found)
            if found >= limit:
                break
        return found

    def _has_room(self, slot: int, changes: int, ops: list[str]) -> bool:
        """Whether the new completions of ``ops`` outnumber the undecided siblings
        (``claims``) whose edges written so far already start with ``ops``."""
        if self.claims is None:
            return True
        inside = sum(
            other is not self and len(prefix) >= len(ops) and prefix[: len(ops)] == ops
            for other, prefix in list(self.claims.items())
        )
        return inside == 0 or self._count_new(slot, changes, ops, inside + 1) > inside

    def _claim(self, ops: list[str]) -> None:
        """Notes how far this row has committed: ``ops``, its first edges.

        Once they leave one completion the arch is decided and goes to ``record`` (two
        changes made by the second edge, say, not only when the row writes its last
        name), so that siblings sampled in the same step steer away before they commit
        too; until then ``ops`` is this row's claim in ``claims``.
        """
        arch = self._decided(ops)
        if arch is not None and self.record is not None:
            self.record.add(arch)
        if self.claims is not None:
            if arch is None:
                self.claims[self] = list(ops)
            else:
                self.claims.pop(self, None)

    def _decided(self, ops: list[str]) -> str | None:
        """The arch string if ``ops`` (the first edges) leave one completion, else None."""
        ops = list(ops)
        changes = sum(
            self.reference is not None and op != self.reference[k] for k, op in enumerate(ops)
        )
        for slot in range(len(ops), len(EDGES)):
            options = self._options(slot, changes, ops, steer=False)
            if len(options) != 1:
                return None
            ops.append(options[0])
            changes += self.reference is not None and options[0] != self.reference[slot]
        return format_arch(dict(zip(EDGES, ops, strict=True)))

    def to_regex(self) -> str:
        """The grammar's language as a regex, for a server's structured output.

        Exact for the hard limits (the allowed operations, ``min_changes`` and
        ``max_changes``): a finite choice per edge, one branch per number of changes so
        far. What steers (``avoid``, ``claims``) is left out: it is a preference among
        valid texts that changes while a batch is sampled, not part of what is valid.
        See :mod:`llmatic.llm.wire`.
        """
        from llmatic.llm.wire import alternation, escape

        @functools.cache
        def tail(slot: int, changes: int) -> str:
            """The regex of edges ``slot``.. after ``changes`` changes (none: ``""``)."""
            if slot == len(EDGES):
                return ""
            options = self._options(slot, changes, [], steer=False)
            same = self.reference[slot] if self.reference is not None else None
            branches = []
            for ops, after in (
                ([o for o in options if o == same], changes),
                ([o for o in options if o != same], changes + (same is not None)),
            ):
                if ops:
                    names = alternation([escape(o) for o in ops])
                    branches.append(names + escape(self.fixed[slot]) + tail(slot + 1, after))
            return alternation(branches)

        return tail(0, 0)

    def has_new(self) -> bool:
        """Whether some completion of the grammar is not in ``avoid``."""
        return any(self._count_new(0, 0, [o], 1) for o in self._options(0, 0, [], steer=False))

    def continuations(self, text: str) -> list[str] | None:
        pos, changes, ops = 0, 0, []
        for slot in range(len(EDGES)):
            rest = text[pos:]
            options = self._options(slot, changes, ops, steer=False)
            chosen = next((o for o in options if rest.startswith(o)), None)
            if chosen is None:
                steered = self._options(slot, changes, ops)
                partial = [o for o in steered if o.startswith(rest)] or [
                    o for o in options if o.startswith(rest)
                ]
                if not partial:
                    return None
                self._claim([*ops, partial[0]] if len(partial) == 1 else ops)
                # The rest of this name, its fixed text: enough lookahead for any token.
                return [o[len(rest) :] + self.fixed[slot] for o in partial]
            pos += len(chosen)
            ops.append(chosen)
            self._claim(ops)
            if self.reference is not None and chosen != self.reference[slot]:
                changes += 1
            rest = text[pos:]
            fixed = self.fixed[slot]
            if rest.startswith(fixed):
                pos += len(fixed)
                continue
            if not fixed.startswith(rest):
                return None
            if slot + 1 == len(EDGES):
                return [fixed[len(rest) :]]
            return [fixed[len(rest) :] + o for o in self._options(slot + 1, changes, ops)]
        return [] if pos == len(text) else None


class CellPrompter:
    """Builds cell-editing requests and turns completions into cell code.

    Args:
        mutation_prompts: Instructions for mutation (prompt id = position).
        crossover_prompt: Instruction for crossover.
        scope: ``edges`` or ``class`` (see the module docstring).
        prompt_format: ``completion`` or ``chat``.
        chat_template: Wraps a user message into the model's chat format; needed for
            ``chat`` (e.g. ``TransformersLLM.format_chat``).
        constrained: With scope ``edges``, constrain decoding to the six edge lines
            (:class:`EdgeLinesConstraint`): the model picks each operation, the grammar
            keeps the lines well-formed.
        min_changes: With ``constrained``: fewest edges a mutation must change.
        max_changes: With ``constrained``: most edges a mutation may change.
        avoid: With ``constrained``: arch strings not to propose again (a live view of
            the evaluated ones: the LLM's samples then go to new architectures).
    """

    def __init__(
        self,
        *,
        mutation_prompts: Sequence[str],
        crossover_prompt: str,
        scope: str = "edges",
        prompt_format: str = "completion",
        chat_template: Callable[[str], str] | None = None,
        constrained: bool = True,
        min_changes: int = 1,
        max_changes: int = 2,
        avoid: Container[str] = frozenset(),
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        check_prompt_settings(
            mutation_prompts=mutation_prompts,
            prompt_format=prompt_format,
            chat_template=chat_template,
        )
        self.mutation_prompts = list(mutation_prompts)
        self.crossover_prompt = crossover_prompt
        self.scope = scope
        self.prompt_format = prompt_format
        self.chat_template = chat_template
        self.constrained = constrained
        self.min_changes, self.max_changes = min_changes, max_changes
        # Every arch any constrained sample has spelled: with ``avoid``, the grammar steers
        # new samples (siblings in the same batch included) away from both.
        self.proposed: set[str] = set()
        self.avoid = ContainerUnion(avoid, self.proposed)
        # The edges each undecided sample has written (weak: a sample cut short leaves none).
        self.claims: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @property
    def stop(self) -> tuple[str, ...]:
        return STOP[self.scope]

    def mutation(
        self,
        parent_code: str,
        instruction: str,
        temperature: float,
        examples: Sequence[tuple[str, float]] = (),
    ) -> GenerationRequest:
        constraint = self._constraint(parent_code)
        # In-context feedback: other cells with their accuracy, then the cell to edit.
        shown = "".join(
            f"# A cell with validation accuracy {accuracy:.1f} %:\n{code.rstrip()}\n\n\n"
            for code, accuracy in examples
        )
        if shown:
            shown += "# The cell to edit:\n"
        code = shown + parent_code.rstrip() + "\n"
        return self._request(code, instruction, temperature, constraint)

    def crossover(
        self, code_a: str, code_b: str, instruction: str, temperature: float
    ) -> GenerationRequest:
        constraint = self._constraint(code_a, code_b)
        code = f"{code_a.rstrip()}\n\n\n{code_b.rstrip()}\n"
        return self._request(code, instruction, temperature, constraint)

    def can_vary(self, *codes: str) -> bool:
        """Whether a mutation of one parent (or a crossover of two) can still write an
        architecture that is neither evaluated nor proposed; always True without a grammar.
        """
        constraint = self._constraint(*codes)
        return constraint is None or constraint.has_new()

    def _constraint(self, *codes: str) -> EdgeLinesConstraint | None:
        """The grammar of a mutation of ``codes[0]``, or of a crossover of two codes."""
        if not (self.scope == "edges" and self.constrained):
            return None
        if len(codes) == 1:
            return EdgeLinesConstraint(
                reference=_edge_ops(codes[0]),
                min_changes=self.min_changes,
                max_changes=self.max_changes,
                avoid=self.avoid,
                record=self.proposed,
                claims=self.claims,
            )
        # Each edge comes from one of the parents; the model chooses which.
        ops_a, ops_b = (_edge_ops(code) for code in codes)
        return EdgeLinesConstraint(
            allowed=[sorted({a, b}) for a, b in zip(ops_a, ops_b, strict=True)],
            avoid=self.avoid,
            record=self.proposed,
            claims=self.claims,
        )

    def _request(
        self,
        code: str,
        instruction: str,
        temperature: float,
        constraint: EdgeLinesConstraint | None,
    ) -> GenerationRequest:
        prefill = _EDGE_PREFILL if self.scope == "edges" else CELL_HEADER
        if self.prompt_format == "completion":
            prompt = f'{CELL_PREAMBLE}\n{code}\n\n"""{instruction}"""\n'
        else:
            message = (
                f"{CELL_PREAMBLE}\n{code}\n\n{instruction} "
                f"Answer with the new {CELL_CLASS_NAME} class only."
            )
            prompt = self.chat_template(message)
        return GenerationRequest(
            prompt=prompt, temperature=temperature, prefill=prefill, constraint=constraint
        )

    def to_code(self, request: GenerationRequest, generation: Generation) -> str:
        """The cell's source code.

        Raises:
            CandidateError: ``no_code`` or ``syntax_error``.
        """
        text = request.prefill + generation.text
        if self.scope == "class":
            return extract_class_code(text, class_name=CELL_CLASS_NAME)
        # The edge lines are all the model wrote: every one of them must parse.
        code = _constructor_lines(text) + CELL_FORWARD
        try:
            ast.parse(code)
        except SyntaxError as err:
            raise CandidateError("syntax_error", f"line {err.lineno}: {err.msg}") from None
        return code


def _constructor_lines(text: str) -> str:
    """The prefilled header and the constructor lines the model wrote after it.

    Keeps lines while they are indented constructor statements; anything after (a
    forward the model started anyway, prose) is dropped: the standard forward follows.
    """
    lines = text.splitlines()
    kept = lines[:3]  # class line, def __init__, super().__init__()
    for line in lines[3:]:
        if not line.startswith("        ") or not line.strip():
            break
        kept.append(line)
    return "\n".join(kept) + "\n"


def _edge_ops(cell_code: str) -> list[str]:
    """The six operations of a parent cell written like :func:`arch_to_code` writes it.

    Parents in the archive were all mapped to an arch; their code is re-rendered from it
    when it is not in the canonical layout, so this reads the canonical form only.
    """
    tree = ast.parse(cell_code)
    ops: dict[str, str] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Subscript)
            and isinstance(node.value.func.slice, ast.Constant)
        ):
            ops[node.targets[0].attr] = node.value.func.slice.value
    return [ops.get(f"edge_{i}_{j}", "none") for i, j in EDGES]
