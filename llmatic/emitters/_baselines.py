"""Baselines in the same loop: random search and regularized evolution (REA) over NB201 cells.

They propose arch strings, rendered as the same cell code the LLM edits, so that their
candidates go through the very same sandboxed mapping, de-duplication, budget accounting
and archives as LLMatic's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from ribs.archives import GridArchive
from ribs.emitters import EmitterBase

from llmatic.candidate import CandidateStore
from llmatic.emitters._state import CheckpointableEmitter
from llmatic.nb201.cell import EDGES, arch_to_code, format_arch, parse_arch
from llmatic.nb201.ops import OP_NAMES


def random_arch(rng: np.random.Generator, ops: Sequence[str] = OP_NAMES) -> str:
    """A uniformly random NB201 arch string (each edge's op uniform over ``ops``)."""
    return format_arch({edge: ops[rng.integers(len(ops))] for edge in EDGES})


def mutate_arch(arch: str, rng: np.random.Generator, ops: Sequence[str] = OP_NAMES) -> str:
    """NB201's REA mutation: one uniformly chosen edge gets a different operation."""
    current = parse_arch(arch)
    edge = EDGES[rng.integers(len(EDGES))]
    others = [op for op in ops if op != current[edge]]
    current[edge] = others[rng.integers(len(others))]
    return format_arch(current)


class _ArchEmitterBase(CheckpointableEmitter, EmitterBase):
    operator = "baseline"
    attached = ("_archive", "store")

    def __init__(
        self,
        archive: GridArchive,
        *,
        store: CandidateStore,
        batch_size: int,
        seed: int | None,
        ops: Sequence[str] | None = None,
    ) -> None:
        EmitterBase.__init__(
            self, archive, solution_dim=(), bounds=None, lower_bounds=None, upper_bounds=None
        )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.store = store
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.ops = tuple(ops or OP_NAMES)
        if not set(self.ops) <= set(OP_NAMES) or len(self.ops) < 2:
            raise ValueError(f"ops must be at least two of {OP_NAMES}, got {ops}")

    def _propose(self, archs: list[str], parents: list[tuple[int, ...]]) -> np.ndarray:
        ids = np.empty(len(archs), dtype=object)
        for k, (arch, parent_ids) in enumerate(zip(archs, parents, strict=True)):
            candidate = self.store.new(
                self.operator, code=arch_to_code(arch), parent_ids=parent_ids, arch=arch
            )
            ids[k] = candidate.id
        return ids


class RandomSearchEmitter(_ArchEmitterBase):
    """Random search: ``batch_size`` uniformly random architectures per ``ask``.

    Args:
        archive: The network archive (for the plots and QD metrics; not used to choose).
        store: Where candidates are created.
        batch_size: Architectures per ``ask``.
        seed: Seed of the sampling.
        ops: The operations to sample from (all five by default).
    """

    operator = "random"

    def ask(self) -> np.ndarray:
        return self._propose(
            [random_arch(self.rng, self.ops) for _ in range(self.batch_size)],
            [()] * self.batch_size,
        )


class RegularizedEvolutionEmitter(_ArchEmitterBase):
    """Regularized evolution (Real et al., 2019) as run on NAS-Bench-201.

    The population is the ``population_size`` most recent children (oldest dies first).
    While it is not full, children are random architectures; then each child is a
    one-edge mutation of the best of ``tournament_size`` members drawn at random.
    NB201's settings: population 10, tournament 3. Children whose code failed are not
    added; a duplicate joins with the fitness of its first evaluation.

    Args:
        archive: The network archive (not used to choose).
        store: Where candidates are created.
        batch_size: Children per ``ask`` (1 is the sequential algorithm).
        population_size: P.
        tournament_size: S.
        seed: Seed of the sampling.
        ops: The operations to sample and mutate to (all five by default).
    """

    operator = "rea"

    def __init__(
        self,
        archive: GridArchive,
        *,
        store: CandidateStore,
        batch_size: int = 1,
        population_size: int = 10,
        tournament_size: int = 3,
        seed: int | None = None,
        ops: Sequence[str] | None = None,
    ) -> None:
        super().__init__(archive, store=store, batch_size=batch_size, seed=seed, ops=ops)
        if not 1 <= tournament_size <= population_size:
            raise ValueError("need 1 <= tournament_size <= population_size")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.population: deque[tuple[int, str, float]] = deque(maxlen=population_size)

    def ask(self) -> np.ndarray:
        archs, parents = [], []
        for _ in range(self.batch_size):
            if len(self.population) < self.population_size:
                archs.append(random_arch(self.rng, self.ops))
                parents.append(())
                continue
            picks = self.rng.choice(len(self.population), size=self.tournament_size, replace=False)
            parent_id, parent_arch, _ = max((self.population[i] for i in picks), key=lambda m: m[2])
            archs.append(mutate_arch(parent_arch, self.rng, self.ops))
            parents.append((parent_id,))
        return self._propose(archs, parents)

    def tell(self, solution, objective, measures, add_info, **fields) -> None:
        for candidate_id in solution:
            candidate = self.store[candidate_id]
            if candidate.status in ("evaluated", "duplicate") and candidate.objective is not None:
                self.population.append((candidate.id, candidate.arch, candidate.objective))
