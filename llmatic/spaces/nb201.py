"""The NAS-Bench-201 cell space behind the seam (:mod:`llmatic.spaces.base`).

The LLM edits a cell written as code (:mod:`llmatic.nb201.cell`); the sandbox maps the
instantiated module to its arch string (:mod:`llmatic.nb201.inspect`), which is the key;
the benchmark rebuilds the network from the arch string with trusted code. The baselines
sample and mutate arch strings, NB201's way.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

import numpy as np

from llmatic.nb201.cell import EDGES, arch_to_code, format_arch, parse_arch
from llmatic.nb201.inspect import check_inspect_result
from llmatic.nb201.ops import OP_NAMES
from llmatic.nb201.prompts import STOP, CellPrompter
from llmatic.prompting import PromptSettings
from llmatic.spaces.base import Proposal, SandboxCall, SearchSpace


def random_arch(rng: np.random.Generator, ops: Sequence[str] = OP_NAMES) -> str:
    """A uniformly random NB201 arch string (each edge's op uniform over ``ops``)."""
    return format_arch({edge: ops[rng.integers(len(ops))] for edge in EDGES})


def neighbour_archs(arch: str, ops: Sequence[str] = OP_NAMES) -> list[str]:
    """The arch strings one edge away from ``arch``: 6 edges x (len(ops) - 1) each."""
    current = parse_arch(arch)
    return [
        format_arch({**current, edge: op}) for edge in EDGES for op in ops if op != current[edge]
    ]


def mutate_arch(arch: str, rng: np.random.Generator, ops: Sequence[str] = OP_NAMES) -> str:
    """NB201's REA mutation: one uniformly chosen edge gets a different operation."""
    current = parse_arch(arch)
    edge = EDGES[rng.integers(len(EDGES))]
    others = [op for op in ops if op != current[edge]]
    current[edge] = others[rng.integers(len(others))]
    return format_arch(current)


class Nb201Space(SearchSpace):
    """NAS-Bench-201 cells: six edges, each one of five operations; key = arch string.

    Args:
        seed_arch: Arch string of the seed cell.
        ops: The operations the baselines sample and mutate to (None: all five).
        min_changes: Fewest edges a constrained LLM mutation changes (trust region).
        max_changes: Most edges a constrained LLM mutation changes.
        probe_channels: Channels of the cell built in the sandbox to identify code.
        probe_size: Spatial size of the probe input, pixels.

    Raises:
        ValueError: ``seed_arch`` is not an arch string, or ``ops`` are not at least two
            NB201 operations.
    """

    name = "nb201"
    has_neighbours = True
    shows_examples = True
    sandbox_preload = ("llmatic.nb201.inspect",)

    def __init__(
        self,
        *,
        seed_arch: str,
        ops: Sequence[str] | None = None,
        min_changes: int = 1,
        max_changes: int = 2,
        probe_channels: int = 4,
        probe_size: int = 8,
    ) -> None:
        try:
            parse_arch(seed_arch)
        except ValueError as err:
            raise ValueError(f"seed_arch: {err}") from None
        self.seed_arch = seed_arch
        self.ops = tuple(ops or OP_NAMES)
        if not set(self.ops) <= set(OP_NAMES) or len(self.ops) < 2:
            raise ValueError(f"ops must be at least two of {OP_NAMES}, got {ops}")
        self.min_changes, self.max_changes = min_changes, max_changes
        self.probe = {"channels": probe_channels, "size": probe_size}

    def seed_code(self) -> str:
        return arch_to_code(self.seed_arch)

    def stop(self, *, scope: str) -> tuple[str, ...]:
        return STOP[scope]

    def prompter(self, settings: PromptSettings, *, avoid: Container[str]) -> CellPrompter:
        return CellPrompter(
            mutation_prompts=settings.mutation_prompts,
            crossover_prompt=settings.crossover_prompt,
            scope=settings.scope,
            prompt_format=settings.prompt_format,
            chat_template=settings.chat_template,
            constrained=settings.constrained,
            min_changes=self.min_changes,
            max_changes=self.max_changes,
            avoid=avoid,
        )

    def identify_call(self, *, code: str) -> SandboxCall:
        return SandboxCall(
            target="llmatic.nb201.inspect:inspect_cell",
            payload={"code": code, **self.probe},
            check=check_inspect_result,
        )

    def key_of(self, identity: dict) -> str:
        return identity["arch"]

    def random_network(self, *, rng: np.random.Generator) -> Proposal:
        arch = random_arch(rng, self.ops)
        return Proposal(code=arch_to_code(arch), key=arch)

    def mutate_network(self, *, code: str, key: str, rng: np.random.Generator) -> Proposal:
        arch = mutate_arch(key, rng, self.ops)
        return Proposal(code=arch_to_code(arch), key=arch)

    def neighbours(self, *, code: str, key: str) -> list[Proposal]:
        return [
            Proposal(code=arch_to_code(arch), key=arch) for arch in neighbour_archs(key, self.ops)
        ]
