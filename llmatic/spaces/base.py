"""The search-space seam: everything that differs between the spaces the search can explore.

The evaluator, the emitters, the checkpoint and the run plumbing talk to a space only
through :class:`SearchSpace`. A space says

- where the search starts (:meth:`SearchSpace.seed_code`) and how the LLM is asked to edit
  code and how its output becomes code (:meth:`SearchSpace.prompter`,
  :meth:`SearchSpace.stop`);
- what runs in the sandbox to check and identify a candidate's code
  (:meth:`SearchSpace.identify_call`, with the parent-side check of what comes back) and
  the *key* that makes two candidates the same network (:meth:`SearchSpace.key_of`);
- how the baselines sample and mutate in the space (:meth:`SearchSpace.random_network`,
  :meth:`SearchSpace.mutate_network`, and for local search :meth:`SearchSpace.neighbours`);
- what the benchmark evaluates for a key (:meth:`SearchSpace.evaluate`).

A new space is one subclass, and a ``conf/space/NAME.yaml`` whose ``_target_`` names it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Container
from dataclasses import dataclass

import numpy as np

from llmatic.benchmarks.base import ArchEvaluation, Benchmark, Lineage
from llmatic.prompting import Prompter, PromptSettings


@dataclass(frozen=True)
class SandboxCall:
    """One call of :meth:`llmatic.sandbox.Sandbox.run`: ``check(target(payload))``.

    Attributes:
        target: ``"module:function"`` that runs in the sandbox's child.
        payload: JSON-able arguments of ``target``.
        check: Runs in the search process on what the child sent back; returns the value
            the search keeps, or raises ``ValueError`` (the failure kind ``bad_result``).
    """

    target: str
    payload: dict
    check: Callable[[dict], dict]


@dataclass(frozen=True)
class Proposal:
    """A network that trusted code proposes (the baselines' candidates).

    Attributes:
        code: Its source code, written by the space.
        key: Its key where the space knows it without running the code (a cell's arch
            string); None to have the evaluator identify the code in the sandbox as it
            does the LLM's.
    """

    code: str
    key: str | None


class SearchSpace(ABC):
    """A space of networks written as code (see the module docstring).

    Keys are strings: two candidates with the same key are the same network, evaluated
    once. Keys are what ``candidates.jsonl`` records in ``arch``.

    Attributes:
        name: Short name (``conf/space/NAME.yaml``).
        sandbox_preload: Modules the sandbox's zygote imports once for
            :meth:`identify_call`'s target.
        has_baseline_moves: Whether :meth:`random_network` and :meth:`mutate_network`
            work (random search and REA need them).
        has_neighbours: Whether :meth:`neighbours` works (local search needs it).
        shows_examples: Whether its prompter shows other networks with their accuracy in
            a mutation prompt (``search.feedback_elites``).
        evaluates_code: Whether :meth:`evaluate` trains the candidate's own code (the
            benchmark must be able to), rather than scoring the key.
    """

    name: str
    sandbox_preload: tuple[str, ...] = ()
    has_baseline_moves: bool = True
    has_neighbours: bool = False
    shows_examples: bool = False
    evaluates_code: bool = False

    @abstractmethod
    def seed_code(self) -> str:
        """Source code of the network the search starts from (trusted)."""

    @abstractmethod
    def stop(self, *, scope: str) -> tuple[str, ...]:
        """Stop sequences of the LLM's completions for a prompt ``scope`` (``llm.scope``)."""

    @abstractmethod
    def prompter(self, settings: PromptSettings, *, avoid: Container[str]) -> Prompter:
        """The prompter the LLM emitters share.

        Args:
            settings: The prompts and how they are sent.
            avoid: Keys already evaluated (a live view): samples should go elsewhere.

        Raises:
            ValueError: A setting the space does not support.
        """

    @abstractmethod
    def identify_call(self, *, code: str) -> SandboxCall:
        """The sandboxed call that checks untrusted ``code`` and identifies its network.

        Its ``check`` returns what :meth:`key_of` reads.
        """

    @abstractmethod
    def key_of(self, identity: dict) -> str:
        """The key of a network from the checked result of :meth:`identify_call`."""

    @abstractmethod
    def random_network(self, *, rng: np.random.Generator) -> Proposal:
        """A uniformly random network of the space (random search, REA's first members)."""

    @abstractmethod
    def mutate_network(self, *, code: str, key: str, rng: np.random.Generator) -> Proposal:
        """A small random change of a network (REA's mutation); never the same network.

        Args:
            code: The parent's code (one the space proposed, or the seed).
            key: The parent's key.
        """

    def neighbours(self, *, code: str, key: str) -> list[Proposal]:
        """Every network one smallest change away from network ``key`` (local search).

        The order is fixed; the caller shuffles. A space with a neighbourhood too large to
        list leaves this out (:attr:`has_neighbours` False).
        """
        raise NotImplementedError(f"the {self.name} space has no neighbourhood to list")

    def evaluate(
        self, *, benchmark: Benchmark, key: str, code: str, lineage: Lineage | None = None
    ) -> ArchEvaluation:
        """Scores network ``key`` (written as ``code``) on ``benchmark``.

        A space whose key rebuilds the network exactly (a cell's arch string) lets the
        benchmark rebuild it with trusted code: the default passes the key alone, and
        ignores ``lineage`` (weight inheritance is for spaces that train code).

        Raises:
            CandidateError: The network cannot be evaluated.
        """
        return benchmark.evaluate(key)
