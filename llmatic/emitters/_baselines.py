"""Baselines in the same loop: random search and regularized evolution (REA).

They propose networks of the search space as code (NB201: a cell rendered from its arch
string; free form: a network the grammar writes), so that their candidates go through the
very same de-duplication, budget accounting and archives as LLMatic's. The space says how
to sample and mutate (:meth:`~llmatic.spaces.SearchSpace.random_network`,
:meth:`~llmatic.spaces.SearchSpace.mutate_network`).
"""

from __future__ import annotations

from collections import deque

import numpy as np
from ribs.archives import GridArchive
from ribs.emitters import EmitterBase

from llmatic.candidate import CandidateStore
from llmatic.emitters._state import CheckpointableEmitter
from llmatic.spaces import Proposal, SearchSpace


class _ArchEmitterBase(CheckpointableEmitter, EmitterBase):
    operator = "baseline"
    attached = ("_archive", "store", "space")

    def __init__(
        self,
        archive: GridArchive,
        *,
        space: SearchSpace,
        store: CandidateStore,
        batch_size: int,
        seed: int | None,
    ) -> None:
        EmitterBase.__init__(
            self, archive, solution_dim=(), bounds=None, lower_bounds=None, upper_bounds=None
        )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.space = space
        self.store = store
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def _propose(self, networks: list[Proposal], parents: list[tuple[int, ...]]) -> np.ndarray:
        ids = np.empty(len(networks), dtype=object)
        for k, (network, parent_ids) in enumerate(zip(networks, parents, strict=True)):
            # A known key skips the sandboxed identification; None has the code identified.
            candidate = self.store.new(
                self.operator, code=network.code, parent_ids=parent_ids, arch=network.key
            )
            ids[k] = candidate.id
        return ids


class RandomSearchEmitter(_ArchEmitterBase):
    """Random search: ``batch_size`` uniformly random networks of the space per ``ask``.

    Args:
        archive: The network archive (for the plots and QD metrics; not used to choose).
        space: Samples the networks.
        store: Where candidates are created.
        batch_size: Networks per ``ask``.
        seed: Seed of the sampling.
    """

    operator = "random"

    def ask(self) -> np.ndarray:
        return self._propose(
            [self.space.random_network(rng=self.rng) for _ in range(self.batch_size)],
            [()] * self.batch_size,
        )


class RegularizedEvolutionEmitter(_ArchEmitterBase):
    """Regularized evolution (Real et al., 2019) as run on NAS-Bench-201.

    The population is the ``population_size`` most recent children (oldest dies first).
    While it is not full, children are random networks; then each child is a mutation
    (the space's; NB201: one edge) of the best of ``tournament_size`` members drawn at
    random. NB201's settings: population 10, tournament 3. Children whose code failed are
    not added; a duplicate joins with the fitness of its first evaluation.

    Args:
        archive: The network archive (not used to choose).
        space: Samples and mutates the networks.
        store: Where candidates are created.
        batch_size: Children per ``ask`` (1 is the sequential algorithm).
        population_size: P.
        tournament_size: S.
        seed: Seed of the sampling.
    """

    operator = "rea"

    def __init__(
        self,
        archive: GridArchive,
        *,
        space: SearchSpace,
        store: CandidateStore,
        batch_size: int = 1,
        population_size: int = 10,
        tournament_size: int = 3,
        seed: int | None = None,
    ) -> None:
        super().__init__(archive, space=space, store=store, batch_size=batch_size, seed=seed)
        if not 1 <= tournament_size <= population_size:
            raise ValueError("need 1 <= tournament_size <= population_size")
        self.population_size = population_size
        self.tournament_size = tournament_size
        # (candidate id, key, objective), oldest first
        self.population: deque[tuple[int, str, float]] = deque(maxlen=population_size)

    def ask(self) -> np.ndarray:
        networks, parents = [], []
        for _ in range(self.batch_size):
            if len(self.population) < self.population_size:
                networks.append(self.space.random_network(rng=self.rng))
                parents.append(())
                continue
            picks = self.rng.choice(len(self.population), size=self.tournament_size, replace=False)
            parent_id, parent_key, _ = max((self.population[i] for i in picks), key=lambda m: m[2])
            code = self.store[parent_id].code
            networks.append(self.space.mutate_network(code=code, key=parent_key, rng=self.rng))
            parents.append((parent_id,))
        return self._propose(networks, parents)

    def tell(self, solution, objective, measures, add_info, **fields) -> None:
        for candidate_id in solution:
            candidate = self.store[candidate_id]
            if candidate.status in ("evaluated", "duplicate") and candidate.objective is not None:
                self.population.append((candidate.id, candidate.arch, candidate.objective))
