"""Classic operators in the same loop: random search, regularized evolution (REA), local
search, and the classic mutation that joins the LLM emitters in a pool.

They propose networks of the search space as code (NB201: a cell rendered from its arch
string; free form: a network the grammar writes), so that their candidates go through the
very same de-duplication, budget accounting and archives as LLMatic's. The space says how
to sample and mutate (:meth:`~llmatic.spaces.SearchSpace.random_network`,
:meth:`~llmatic.spaces.SearchSpace.mutate_network`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container

import numpy as np
from ribs.archives import GridArchive
from ribs.emitters import EmitterBase

from llmatic.candidate import CandidateStore
from llmatic.emitters._state import CheckpointableEmitter
from llmatic.spaces import Proposal, SearchSpace


def elite_ids(archive: GridArchive) -> list[int]:
    """Candidate ids of the archive's elites, best objective first (ties: archive order)."""
    data = archive.data(["solution", "objective"])
    order = np.argsort(-data["objective"], kind="stable")
    return [int(data["solution"][i]) for i in order]


def evaluated_ids(store: CandidateStore) -> list[int]:
    """Candidate ids of every evaluated network, best objective first (ties: oldest first)."""
    evaluated = [c for c in store if c.status == "evaluated" and c.arch and c.objective is not None]
    evaluated.sort(key=lambda c: (-c.objective, c.id))
    return [c.id for c in evaluated]


#: Where the mutation emitters (classic and LLM) draw their parents from: the archive's
#: elites, or every evaluated network.
PARENT_POOLS = ("archive", "evaluated")


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

    def _scored(self, solution) -> list[tuple[int, str, float]]:
        """``(id, key, objective)`` of the told candidates that have a score (evaluated, or
        a duplicate with its first evaluation's), in order."""
        members = (self.store[i] for i in solution)
        return [
            (c.id, c.arch, c.objective)
            for c in members
            if c.status in ("evaluated", "duplicate") and c.objective is not None
        ]

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
        self.population.extend(self._scored(solution))


class LocalSearchEmitter(_ArchEmitterBase):
    """Local search as run on NAS benchmarks (White et al., 2021).

    From a random network, evaluate its whole neighbourhood (every network one smallest
    change away: 24 on NAS-Bench-201), in random order, ``batch_size`` per ``ask``; move to
    the best neighbour if it beats the current network, else (a local optimum) restart
    from a new random network. Neighbours evaluated before cost nothing (duplicates keep
    their first score) but still count in the comparison.

    Args:
        archive: The network archive (not used to choose).
        space: Samples networks and lists neighbourhoods.
        store: Where candidates are created.
        batch_size: Neighbours per ``ask`` (24: a whole NB201 neighbourhood at once).
        seed: Seed of the sampling.
    """

    operator = "local"

    def __init__(self, archive: GridArchive, *, space: SearchSpace, **kwargs) -> None:
        super().__init__(archive, space=space, **kwargs)
        if not space.has_neighbours:
            raise ValueError(f"local search needs neighbourhoods; the {space.name} space has none")
        # (candidate id, key, objective) of the network whose neighbourhood is explored
        self.current: tuple[int, str, float] | None = None
        self.to_visit: list[Proposal] = []  # its neighbours not yet proposed
        self.visited: list[tuple[int, str, float]] = []  # its neighbours scored so far
        self.restarts = 0

    def ask(self) -> np.ndarray:
        if self.current is None:
            return self._propose([self.space.random_network(rng=self.rng)], [()])
        batch, self.to_visit = self.to_visit[: self.batch_size], self.to_visit[self.batch_size :]
        return self._propose(batch, [(self.current[0],)] * len(batch))

    def tell(self, solution, objective, measures, add_info, **fields) -> None:
        scored = self._scored(solution)
        if self.current is None:  # the start of a climb
            if scored:
                self._move_to(scored[0])
            return
        self.visited += scored
        if self.to_visit:
            return
        best = max(self.visited, key=lambda m: m[2], default=None)
        if best is not None and best[2] > self.current[2]:
            self._move_to(best)
        else:  # a local optimum (or nothing scored): restart
            self.current, self.restarts = None, self.restarts + 1

    def _move_to(self, member: tuple[int, str, float]) -> None:
        self.current, self.visited = member, []
        self.to_visit = self.space.neighbours(code=self.store[member[0]].code, key=member[1])
        self.to_visit = [self.to_visit[i] for i in self.rng.permutation(len(self.to_visit))]


class ClassicMutationEmitter(_ArchEmitterBase):
    """A classic mutation beside the LLM's: an elite's network with one small random change.

    Each child: a parent drawn uniformly from the ``parents_top_k`` fittest networks whose
    neighbourhood is not yet all evaluated (where the space lists neighbourhoods), changed
    by the space's own mutation (NB201: one edge gets another operation, through the same
    code and mapping as the LLM's children). ``parents="archive"`` ranks the network
    archive's elites (one per cell of the measures: LLMatic's choice); when every elite's
    neighbourhood is evaluated (a small archive fills early), the fittest evaluated
    networks whose neighbourhood is not. ``parents="evaluated"`` ranks every evaluated
    network, as an elitist population does: the runners-up of a cell stay parents. A
    child whose key is in ``avoid`` (evaluated already) or repeats a sibling is drawn
    again, up to ``tries`` times, before it costs anything.

    Args:
        archive: The network archive; its elites are the parents.
        space: Mutates the networks.
        store: Where candidates are created.
        batch_size: Children per ``ask``.
        parents_top_k: How many of the fittest may be parents (None: all).
        parents: ``"archive"`` (the fittest elites) or ``"evaluated"`` (the fittest
            evaluated networks).
        avoid: Keys not worth proposing (a live view of the evaluated ones).
        tries: Draws per child before a known network is accepted.
        seed: Seed of the sampling.
    """

    operator = "classic"
    # ``_neighbour_keys`` is a cache, rebuilt on demand after a resume.
    attached = (*_ArchEmitterBase.attached, "avoid", "_neighbour_keys")

    def __init__(
        self,
        archive: GridArchive,
        *,
        parents_top_k: int | None = None,
        parents: str = "archive",
        avoid: Container[str] = frozenset(),
        tries: int = 16,
        **kwargs,
    ) -> None:
        super().__init__(archive, **kwargs)
        if parents_top_k is not None and parents_top_k < 1:
            raise ValueError(f"parents_top_k must be >= 1 or None, got {parents_top_k}")
        if parents not in PARENT_POOLS:
            raise ValueError(f"parents must be one of {PARENT_POOLS}, got {parents!r}")
        self.parents_top_k = parents_top_k
        self.parents = parents
        self.avoid = avoid
        self.tries = tries
        self.exhausted: set[int] = set()  # ids whose whole neighbourhood is evaluated
        self._neighbour_keys: dict[int, list[str]] = {}  # id -> its neighbours' keys

    def ask(self) -> np.ndarray:
        parents = self._open(elite_ids(self.archive)) if self.parents == "archive" else []
        if not parents and len(self.archive):
            # Every elite's neighbourhood is evaluated (a small archive fills early), or
            # the parents are the whole population: the fittest evaluated networks that
            # still have new neighbours.
            parents = self._open(evaluated_ids(self.store)) or elite_ids(self.archive)[:1]
        if not parents:
            return np.empty(0, dtype=object)
        networks, parent_ids, keys = [], [], set()
        for _ in range(self.batch_size):
            for _ in range(self.tries):
                parent = self.store[parents[self.rng.integers(len(parents))]]
                child = self.space.mutate_network(code=parent.code, key=parent.arch, rng=self.rng)
                if child.key is None or (child.key not in self.avoid and child.key not in keys):
                    break
            keys.add(child.key)
            networks.append(child)
            parent_ids.append((parent.id,))
        return self._propose(networks, parent_ids)

    def _open(self, ranked: list[int]) -> list[int]:
        """The first ``parents_top_k`` ids of ``ranked`` whose neighbourhood is open."""
        out = []
        for i in ranked:
            if self.parents_top_k is not None and len(out) == self.parents_top_k:
                break
            if not self._exhausted(i):
                out.append(i)
        return out

    def _exhausted(self, candidate_id: int) -> bool:
        """Whether every neighbour of the network was evaluated (nothing new to give).

        Once true it stays true (evaluated keys are never forgotten): remembered.
        """
        if candidate_id in self.exhausted:
            return True
        if not self.space.has_neighbours:
            return False
        keys = self._neighbour_keys.get(candidate_id)
        if keys is None:  # listing renders every neighbour's code: once per network
            parent = self.store[candidate_id]
            keys = [n.key for n in self.space.neighbours(code=parent.code, key=parent.arch)]
            self._neighbour_keys[candidate_id] = keys
        if all(key in self.avoid for key in keys):
            del self._neighbour_keys[candidate_id]
            self.exhausted.add(candidate_id)
            return True
        return False
