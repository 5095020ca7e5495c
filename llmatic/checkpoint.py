"""Checkpoints: the whole search state in ``RUN_DIR/checkpoint.pkl``, to resume a killed run.

A checkpoint is taken at the end of an iteration, the only point where everything is
consistent (every candidate final, archives and emitters told). It holds both archives,
every candidate, the emitters' and schedulers' state (random generators, counters, REA's
population, ...), the evaluator's count and de-duplication tables, the prompter's
``proposed`` keys, the iteration, the rows of ``metrics.csv``, the global random states
(Python, NumPy, torch) and the LLM backend's sampling counter. It holds no model weights,
no sandbox and no benchmark: a resumed run rebuilds those from the run's ``config.yaml``
(:func:`llmatic.run.run_experiment` with ``resume=True``) and then loads the
state into them with :func:`restore`.

The file is one line of JSON (format name and version, iteration, whether the run
finished, size and SHA-256 of the rest), then a pickle of :class:`SearchState`. It is
written to a temporary file in the run directory, fsynced and renamed over the old one, so
a kill at any moment leaves the previous checkpoint or the new one, never half of one.
Like the archive snapshots, it is the run's own file: unpickle only checkpoints you made.

An LLM backend is saved through its ``state_dict()`` / ``load_state_dict(state)`` (the
counters from which it seeds its sampling, and its statistics); a backend without them is
rebuilt from the config alone, and a resumed run then draws different samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ribs.archives import GridArchive
from ribs.schedulers import Scheduler

from llmatic.archives import PromptArchive
from llmatic.candidate import CandidateStore
from llmatic.evaluation import Evaluator
from llmatic.pickled_prefix import PickledPrefix
from llmatic.prompting import Prompter
from llmatic.recording import atomic_write_bytes
from llmatic.search.loop import IterationStats

log = logging.getLogger(__name__)

#: Version of the file layout and of :class:`SearchState`; bump it on any change to either.
FORMAT_VERSION = 3  # 2: evaluator tables by key, baselines sample through the space;
# 3: final candidates and metrics rows pickled in chunks (version 2 files still load)
_READABLE_VERSIONS = (2, FORMAT_VERSION)
CHECKPOINT_FILE = "checkpoint.pkl"
_FORMAT = "llmatic-checkpoint"

#: Scheduler attributes that refer to other parts of the search (not saved).
_SCHEDULER_ATTACHED = ("_archive", "_emitters", "_emitter_pool", "_result_archive")


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unusable; the message says what to do instead."""


@dataclass
class Search:
    """The live parts of a search whose state a checkpoint holds."""

    network_archive: GridArchive
    prompt_archive: PromptArchive | None
    phases: Sequence[tuple[str, Scheduler, Callable[[], bool]]]
    store: CandidateStore
    evaluator: Evaluator
    llm: Any = None

    @property
    def schedulers(self) -> list[Scheduler]:
        return [scheduler for _, scheduler, _ in self.phases]

    @property
    def prompter(self) -> Prompter | None:
        """The prompter the LLM emitters share (None for the baselines)."""
        for scheduler in self.schedulers:
            for emitter in scheduler.emitters:
                if getattr(emitter, "prompter", None) is not None:
                    return emitter.prompter
        return None


@dataclass
class SearchState:
    """Everything a checkpoint restores (see the module docstring)."""

    iteration: int
    phase: str | None
    finished: bool
    run_seconds: float  # wall time of the run so far, over all its sessions
    metrics: list[IterationStats]  # in a checkpoint file: partly pickled (see load)
    network_archive: GridArchive
    prompt_archive: dict | None
    store: dict
    evaluator: dict
    schedulers: list[dict]
    emitters: list[list[dict]]
    proposed: set[str] | None
    llm: dict
    global_rng: dict = field(default_factory=dict)
    checkpoint_cost: dict = field(default_factory=dict)  # writes and seconds so far


def capture(
    search: Search,
    *,
    iteration: int,
    phase: str | None,
    finished: bool,
    run_seconds: float,
    metrics: Sequence[IterationStats],
    checkpoint_cost: dict | None = None,
) -> SearchState:
    """The search's state, by reference: pickle it (:func:`dumps`) before the search goes on."""
    prompter = search.prompter
    return SearchState(
        iteration=iteration,
        phase=phase,
        finished=finished,
        run_seconds=run_seconds,
        metrics=list(metrics),
        network_archive=search.network_archive,
        prompt_archive=search.prompt_archive.state_dict() if search.prompt_archive else None,
        store=search.store.state_dict(),
        evaluator=search.evaluator.state_dict(),
        schedulers=[
            {k: v for k, v in vars(s).items() if k not in _SCHEDULER_ATTACHED}
            for s in search.schedulers
        ],
        emitters=[[e.state_dict() for e in s.emitters] for s in search.schedulers],
        proposed=set(prompter.proposed) if prompter is not None else None,
        llm=_llm_state(search.llm),
        global_rng=_global_rng_state(),
        checkpoint_cost=dict(checkpoint_cost or {}),
    )


def restore(search: Search, state: SearchState) -> None:
    """Loads ``state`` into a search rebuilt from the same config.

    The network archive is not loaded here: build the search with
    ``state.network_archive`` (emitters and schedulers hold on to the archive object).

    Raises:
        CheckpointError: The search was built differently from the checkpoint's.
    """
    if search.network_archive is not state.network_archive:
        raise ValueError("build the search with the checkpoint's network archive")
    schedulers = search.schedulers
    shape = [len(s.emitters) for s in schedulers]
    if shape != [len(e) for e in state.emitters] or (search.prompt_archive is None) != (
        state.prompt_archive is None
    ):
        raise CheckpointError(
            "the checkpoint was written by another kind of search (phases, emitters or prompt "
            "archive differ) than its run's config.yaml builds: it cannot be resumed"
        )
    try:
        if search.prompt_archive is not None:
            search.prompt_archive.load_state_dict(state.prompt_archive)
        search.store.load_state_dict(state.store)
        search.evaluator.load_state_dict(state.evaluator, search.store)
        for scheduler, saved in zip(schedulers, state.schedulers, strict=True):
            vars(scheduler).update(saved)
        for scheduler, saved in zip(schedulers, state.emitters, strict=True):
            for emitter, emitter_state in zip(scheduler.emitters, saved, strict=True):
                emitter.load_state_dict(emitter_state)
    except ValueError as err:
        raise CheckpointError(f"the checkpoint does not fit this search: {err}") from None
    prompter = search.prompter
    if prompter is not None and state.proposed is not None:
        # In place: the prompter's steering holds a live view of this set.
        prompter.proposed.clear()
        prompter.proposed.update(state.proposed)
    _load_llm_state(search.llm, state.llm)
    _set_global_rng_state(state.global_rng)


def dumps(state: SearchState) -> bytes:
    """The checkpoint file's bytes: a JSON header line, then the pickled state."""
    return _framed(_header_fields(state), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def _header_fields(state: SearchState) -> dict:
    return {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        "iteration": state.iteration,
        "phase": state.phase,
        "finished": state.finished,
        "candidates": state.store.get("size", len(state.store["candidates"])),
        "evaluations": state.evaluator["evaluations"],
    }


def _framed(fields: dict, body: bytes) -> bytes:
    header = {**fields, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(header).encode() + b"\n" + body


def read_header(path: str | Path) -> dict:
    """The header of the checkpoint at ``path``, checked for its format and version.

    Raises:
        CheckpointError: No checkpoint there, not a checkpoint, or another format version.
    """
    header, _ = _read(Path(path), body=False)
    return header


def load(path: str | Path) -> SearchState:
    """The state saved at ``path``.

    Raises:
        CheckpointError: Missing, damaged, of another format version, or not unpicklable.
    """
    path = Path(path)
    _, body = _read(path, body=True)
    try:
        state = pickle.loads(body)  # our own file, checked against its SHA-256
    except Exception as err:  # any unpickling failure means the same thing here
        raise CheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {err}): it was written by "
            "another version of llmatic; resume with that version or start a new run"
        ) from None
    if not isinstance(state, SearchState):
        raise CheckpointError(f"{path} holds no search state: start a new run")
    if isinstance(state.metrics, dict):  # as the Checkpointer saves them (see _dumps)
        state.metrics = PickledPrefix().restore(state.metrics["pickled"], state.metrics["rows"])
    return state


def _read(path: Path, *, body: bool) -> tuple[dict, bytes]:
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: the run stopped before its first iteration ended, "
            "or it is not a run directory; start a new run instead"
        )
    with path.open("rb") as f:
        line = f.readline(65536)
        data = f.read() if body else b""
    try:
        header = json.loads(line)
        if header.get("format") != _FORMAT:
            raise ValueError
    except (ValueError, AttributeError):
        raise CheckpointError(
            f"{path} is not an llmatic checkpoint (damaged?): it cannot be resumed; start a new run"
        ) from None
    if header.get("version") not in _READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {header.get('version')}, this llmatic "
            f"reads versions {' and '.join(map(str, _READABLE_VERSIONS))}: resume with the "
            "llmatic that wrote it, or start a new run"
        )
    if body and (
        len(data) != header.get("bytes") or hashlib.sha256(data).hexdigest() != header["sha256"]
    ):
        raise CheckpointError(
            f"{path} is damaged (its size or checksum does not match): it cannot be "
            "resumed; start a new run"
        )
    return header, data


class Checkpointer:
    """Saves the search's state at the end of iterations.

    The state is serialised at the end of every iteration (it is consistent only there)
    and written to disk every ``every`` iterations; :meth:`close` writes the last one if
    it is not on disk yet, so that a run stopped by Ctrl-C or SIGTERM loses no finished
    iteration whatever ``every`` is.

    Args:
        path: The checkpoint file.
        search: The live search.
        every: Iterations between writes.
        metrics: The rows of ``metrics.csv`` so far (a live list).
        clock: Wall time of the run so far, in seconds.
        resumed: The state this session resumed from, if any.
    """

    def __init__(
        self,
        path: str | Path,
        search: Search,
        *,
        every: int,
        metrics: list[IterationStats],
        clock: Callable[[], float],
        resumed: SearchState | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.path = Path(path)
        self.search = search
        self.every = every
        self.metrics = metrics
        self.clock = clock
        self.iteration = resumed.iteration if resumed else 0
        self.phase = resumed.phase if resumed else None
        self._pending: tuple[dict, bytes] | None = None  # header fields, pickled state
        self._metric_pickles = PickledPrefix()  # the rows of the metrics, pickled once
        # What checkpointing costs (over all sessions of the run), for the summary.
        cost = resumed.checkpoint_cost if resumed else {}
        self.writes = cost.get("writes", 0)
        self.seconds = cost.get("seconds", 0.0)
        self.bytes = 0

    def iteration_done(self, stats: IterationStats) -> None:
        """Serialises the state after iteration ``stats.iteration``; writes it if due.

        An iteration that asked its next batch ahead (``stats.in_flight``; the search's
        ``overlap``) is not a consistent state: the last one that was stays the one saved.
        """
        if stats.in_flight:
            return
        self.iteration, self.phase = stats.iteration, stats.phase
        start = time.perf_counter()
        data = self._dumps(finished=False)
        if stats.iteration % self.every == 0:
            self._write(data)
        else:
            self._pending = data
        self.seconds += time.perf_counter() - start

    def finish(self, iteration: int) -> None:
        """Writes the final state: a resume of this run will say it is finished."""
        start = time.perf_counter()
        self.iteration = iteration
        self._write(self._dumps(finished=True))
        self.seconds += time.perf_counter() - start

    def close(self) -> None:
        """Writes the last serialised state if it is not on disk yet."""
        if self._pending is not None:
            start = time.perf_counter()
            self._write(self._pending)
            self.seconds += time.perf_counter() - start

    def report(self) -> dict:
        """What checkpointing cost (for ``summary.json``): writes, seconds, last size."""
        return {
            "every": self.every,
            "writes": self.writes,
            "seconds": self.seconds,
            "seconds_per_write": self.seconds / self.writes if self.writes else None,
            "bytes": self.bytes,
        }

    def _dumps(self, *, finished: bool) -> tuple[dict, bytes]:
        """The state pickled, and its header's fields (checksummed when written).

        A row of the metrics is final once recorded: the rows are pickled once and their
        bytes reused (as the store does with its final candidates), so that serialising
        after every iteration does not cost what the whole run has made so far.
        """
        pickled, rows = self._metric_pickles.split(self.metrics, len(self.metrics))
        state = capture(
            self.search,
            iteration=self.iteration,
            phase=self.phase,
            finished=finished,
            run_seconds=self.clock(),
            metrics=(),
            checkpoint_cost={"writes": self.writes, "seconds": self.seconds},
        )
        state.metrics = {"pickled": pickled, "rows": rows}  # load() restores the list
        return _header_fields(state), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def _write(self, pickled: tuple[dict, bytes]) -> None:
        data = _framed(*pickled)
        atomic_write_bytes(self.path, data)
        self._pending = None
        self.writes += 1
        self.bytes = len(data)


def _llm_state(llm: Any) -> dict:
    if llm is None:
        return {}
    if callable(getattr(llm, "state_dict", None)):
        return {"state_dict": llm.state_dict()}
    log.warning("%s has no state_dict(): a resumed run will draw other samples", type(llm))
    return {}


def _load_llm_state(llm: Any, state: dict) -> None:
    if llm is None or not state:
        return
    llm.load_state_dict(state["state_dict"])


def _global_rng_state() -> dict:
    """Python's, NumPy's and (when imported) torch's global random states."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state()}
    torch = sys.modules.get("torch")
    if torch is not None:
        # As bytes: unpickling a tensor would import torch where nothing else needs it.
        state["torch"] = torch.get_rng_state().numpy().tobytes()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda"] = [s.numpy().tobytes() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_global_rng_state(state: dict) -> None:
    if "python" in state:
        random.setstate(state["python"])
    if "numpy" in state:
        np.random.set_state(state["numpy"])
    if "torch" in state:
        import torch

        def tensor(data: bytes):
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)

        torch.set_rng_state(tensor(state["torch"]))
        if "torch_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([tensor(s) for s in state["torch_cuda"]])
