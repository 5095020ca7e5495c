"""Candidates: every network the search proposes, evaluated or not, and where they live.

A :class:`Candidate` is created by an emitter (with its code and how it was made) and
completed by the evaluator (status, objective, measures). The :class:`CandidateStore`
owns all of them; archives refer to candidates by ``id``. Every candidate, including
broken and duplicate ones, ends up in ``candidates.jsonl``: nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llmatic.pickled_prefix import PickledPrefix

#: Status of a candidate after evaluation.
#: - ``evaluated``: trained / looked up; counts against the budget.
#: - ``failed``: its code is broken or outside the search space; no budget charged.
#: - ``duplicate``: the same architecture (or code) was evaluated before; no budget charged.
#: - ``skipped``: the budget ran out before it was evaluated.
STATUSES = ("pending", "evaluated", "failed", "duplicate", "skipped")


@dataclass
class Candidate:
    """One proposed network.

    Attributes:
        id: Index in the store (0, 1, 2, ... in creation order).
        operator: ``seed``, ``init``, ``mutation``, ``crossover``, ``random`` or ``rea``.
        parent_ids: Ids of the parents (empty for the seed and random samples).
        prompt_id: Index into the prompt list (None when no prompt was used).
        prompt: The instruction text given to the LLM.
        temperature: Sampling temperature used for this candidate.
        code: The network source code (empty when nothing could be extracted).
        iteration: Search iteration that proposed it (0 for the initial phase).
        arch: The search space's key of the network, once known (NB201: the arch string;
            see :class:`llmatic.spaces.SearchSpace`); the field keeps its name so that
            ``candidates.jsonl`` keeps its columns.
        prompt_tokens: Tokens of the prompt (with prefill) the LLM read for it (0 for
            candidates no LLM made; see :class:`llmatic.llm.base.Generation`).
        generation_tokens: Tokens the LLM generated for it.
        llm_seconds: Its share of the wall time of the batched LLM call that made it: the
            call's seconds split evenly over the call's requests.
        eval_seconds: Seconds the evaluator spent on it.
    """

    id: int
    operator: str
    parent_ids: tuple[int, ...] = ()
    prompt_id: int | None = None
    prompt: str | None = None
    temperature: float | None = None
    code: str = ""
    iteration: int = 0
    # Filled in by the evaluator.
    status: str = "pending"
    error_kind: str | None = None
    error: str | None = None
    arch: str | None = None
    duplicate_of: int | None = None
    charged: bool = False  # counted as one evaluation of the budget
    objective: float | None = None  # validation accuracy, %
    test_objective: float | None = None  # test accuracy, %; never read by the search
    measures: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    llm_seconds: float = 0.0
    eval_seconds: float = 0.0

    def fail(self, kind: str, message: str) -> None:
        self.status, self.error_kind, self.error = "failed", kind, message

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class CandidateStore:
    """All candidates of a run, by id, appended to ``path`` (JSON lines) once final.

    Args:
        path: The ``candidates.jsonl`` file, or None to keep candidates in memory only.
    """

    def __init__(self, *, path: str | Path | None = None) -> None:
        self._candidates: list[Candidate] = []
        self._path = Path(path) if path is not None else None
        self._flushed = 0
        self._pickled = PickledPrefix()  # the flushed candidates, pickled once

    def new(self, operator: str, **fields: object) -> Candidate:
        candidate = Candidate(id=len(self._candidates), operator=operator, **fields)
        self._candidates.append(candidate)
        return candidate

    def __getitem__(self, candidate_id: int) -> Candidate:
        return self._candidates[int(candidate_id)]

    def __len__(self) -> int:
        return len(self._candidates)

    def __iter__(self):
        return iter(self._candidates)

    @property
    def evaluations(self) -> int:
        """Charged evaluations so far: the candidates that cost one unit of the budget."""
        return sum(c.charged for c in self._candidates)

    def state_dict(self) -> dict:
        """Every candidate and how many of them are in the file (for a checkpoint).

        The candidates in the file are final: they are pickled once and their bytes are
        reused (:class:`~llmatic.pickled_prefix.PickledPrefix`), so that a checkpoint
        after every iteration costs what the new candidates cost, not the whole run.

        Returns:
            ``pickled``: chunks of the first candidates, pickled; ``candidates``: the
            others; ``flushed``: how many are in the file; ``size``: how many in all.
        """
        pickled, rest = self._pickled.split(self._candidates, self._flushed)
        return {
            "pickled": pickled,
            "candidates": rest,
            "flushed": self._flushed,
            "size": len(self._candidates),
        }

    def load_state_dict(self, state: dict) -> None:
        """Takes the candidates of a checkpoint; rewrites the file to hold exactly the
        flushed ones (a killed run may have written more after its last checkpoint)."""
        # Checkpoints from before the pickled chunks hold every candidate in "candidates".
        self._candidates = self._pickled.restore(state.get("pickled", []), state["candidates"])
        self._flushed = int(state["flushed"])
        if self._path is not None:
            lines = "".join(c.to_json() + "\n" for c in self._candidates[: self._flushed])
            tmp = self._path.with_name(self._path.name + ".tmp")
            tmp.write_text(lines)
            os.replace(tmp, self._path)

    def flush(self) -> None:
        """Appends the candidates that are final and not yet written, in id order."""
        if self._path is None:
            return
        end = self._flushed
        while end < len(self._candidates) and self._candidates[end].status != "pending":
            end += 1
        if end == self._flushed:
            return
        with self._path.open("a") as f:
            for candidate in self._candidates[self._flushed : end]:
                f.write(candidate.to_json() + "\n")
        self._flushed = end
