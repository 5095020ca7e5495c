"""Candidates evaluated on a Ray cluster: one actor per worker, each with its own sandbox.

Each actor builds what a local worker has, from the run's config, in its own process on
its node (:class:`WorkerFactory`): the search space, a :class:`~llmatic.sandbox.Sandbox`
with the run's limits, and the benchmark. Untrusted code therefore runs in a sandboxed
child of the actor, as confined as it is on the search's own machine; the actor itself
runs trusted code only.

The pool keeps one call in flight per actor and gives results back in input order. An
actor that dies mid-call (its process killed, its node gone) is replaced and the call is
retried once on the new actor; a second loss is recorded as the candidate's
``worker_lost`` failure, and the search goes on.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.errors import CandidateError, ConfigError
from llmatic.workers.local import ATTEMPTS, IdentifyOutcome, Job, evaluate_on, identify_in

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerFactory:
    """Builds one worker's parts from a run's config, in the actor's process.

    Args:
        config: The run's config as plain containers (``OmegaConf.to_container``).
        device: The benchmark's device on that worker (None: ``benchmark.device``).
        weights_dir: The benchmark's folder of trained weights (weight inheritance), on a
            file system the worker shares with the search; None: no inheritance.
    """

    config: dict
    device: str | None = None
    weights_dir: str | None = None

    def __call__(self) -> tuple[Any, Any, Any]:
        """``(space, sandbox, benchmark)`` for one worker."""
        from omegaconf import OmegaConf

        from llmatic.run.build import benchmark_sandbox, build_benchmark, build_space
        from llmatic.run.config import sandbox_limits
        from llmatic.sandbox import Sandbox

        cfg = OmegaConf.create(self.config)
        space = build_space(cfg)
        preload, setup = benchmark_sandbox(cfg)
        sandbox = Sandbox(
            limits=sandbox_limits(cfg), preload=(*space.sandbox_preload, *preload), setup=setup
        )
        benchmark = build_benchmark(cfg, sandbox, device=self.device, weights_dir=self.weights_dir)
        return space, sandbox, benchmark


class EvaluationActor:
    """One Ray worker: a space, a sandbox and a benchmark of its own (see the module)."""

    def __init__(self, factory: Callable[[], tuple[Any, Any, Any]]) -> None:
        self.space, self.sandbox, self.benchmark = factory()

    def ready(self) -> int:
        """The actor's process id, once its sandbox is up."""
        return os.getpid()

    def identify(self, code: str) -> IdentifyOutcome:
        return identify_in(self.sandbox, self.space, code)

    def evaluate(self, job: Job) -> ArchEvaluation | CandidateError:
        return evaluate_on(self.benchmark, self.space, *job)


class RayWorkers:
    """``workers`` Ray actors that identify and score candidates (see the module docstring).

    Args:
        factories: One :class:`WorkerFactory` (or any picklable callable returning
            ``(space, sandbox, benchmark)``) per worker.
        address: The cluster to join: ``auto`` (the one this machine belongs to),
            ``ray://host:10001``, or None to start a local one (tests, one machine).
        num_cpus: CPUs Ray reserves per worker.
        num_gpus: GPUs Ray reserves per worker (fractions share a GPU); Ray sets each
            actor's ``CUDA_VISIBLE_DEVICES``, which its sandbox passes on to the children.
        init_kwargs: More ``ray.init`` arguments (e.g. ``num_cpus`` of a local cluster,
            ``runtime_env``).

    Raises:
        ConfigError: Ray is missing, the cluster cannot be reached, or a worker cannot
            build its parts (the message says which and why).
    """

    def __init__(
        self,
        *,
        factories: Sequence[Callable[[], tuple[Any, Any, Any]]],
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        init_kwargs: dict | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "evaluator=ray needs Ray: pip install 'llmatic[cluster]' (or ray>=2.9)"
            ) from None
        if not factories:
            raise ConfigError("evaluator.workers must be at least 1")
        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, **(init_kwargs or {}))
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ConfigError(
                    f"evaluator.address={address}: cannot join the Ray cluster ({err}); start "
                    "one with `ray start --head` or use evaluator=local"
                ) from None
            self._started_ray = True
        self._factories = list(factories)
        self._remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)(
            EvaluationActor
        )
        self._actors = [self._remote.remote(factory) for factory in self._factories]
        self.replaced = 0  # actors lost and replaced so far
        try:
            self.pids = ray.get([actor.ready.remote() for actor in self._actors])
        except ray.exceptions.RayError as err:
            self.close()
            raise ConfigError(f"a Ray worker could not start its sandbox: {_cause(err)}") from None

    @property
    def size(self) -> int:
        return len(self._actors)

    def identify(self, codes: Sequence[str]) -> list[IdentifyOutcome]:
        return self._map(
            "identify",
            codes,
            lost=lambda message: IdentifyOutcome(None, ("worker_lost", message), 0.0),
        )

    def evaluate(self, jobs: Sequence[Job]) -> list[ArchEvaluation | CandidateError]:
        return self._map(
            "evaluate", jobs, lost=lambda message: CandidateError("worker_lost", message)
        )

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def _map(self, method: str, items: Sequence, *, lost: Callable[[str], Any]) -> list:
        """``method`` of the actors over ``items``, one call in flight per actor."""
        ray = self._ray
        results: list[Any] = [None] * len(items)
        attempts = [0] * len(items)
        todo = deque(range(len(items)))
        free = deque(range(len(self._actors)))
        in_flight: dict[Any, tuple[int, int]] = {}  # object ref -> (item, actor)
        while todo or in_flight:
            while todo and free:
                index, slot = todo.popleft(), free.popleft()
                attempts[index] += 1
                ref = getattr(self._actors[slot], method).remote(items[index])
                in_flight[ref] = (index, slot)
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            index, slot = in_flight.pop(ref)
            try:
                results[index] = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                message = f"Ray worker {slot} was lost: {_cause(err)}"
                log.warning("%s; replacing it (attempt %d)", message, attempts[index])
                self._replace(slot)
                if attempts[index] < ATTEMPTS:
                    todo.appendleft(index)
                else:
                    results[index] = lost(message)
            free.append(slot)
        return results

    def _replace(self, slot: int) -> None:
        """A fresh actor in ``slot`` (the lost one is killed, in case it lingers)."""
        self._ray.kill(self._actors[slot])
        self._actors[slot] = self._remote.remote(self._factories[slot])
        self.replaced += 1


def _cause(err: BaseException) -> str:
    """One line: the first line of Ray's (long, multi-line) error text."""
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
