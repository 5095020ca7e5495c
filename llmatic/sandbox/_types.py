"""Limits of a sandboxed call (:class:`SandboxLimits`) and its outcome (:class:`SandboxResult`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed call.

    The limits are POSIX rlimits set by the child on itself before it imports the target,
    plus a wall-clock limit enforced from outside. A process running as root can raise its
    own rlimits again (it holds ``CAP_SYS_RESOURCE``), so against deliberately hostile code
    they are a safety net, not a wall; cgroups and namespaces are the next step.

    Args:
        wall_time_s: Wall-clock limit per call in seconds. Past it the child's whole
            process group is killed with ``SIGKILL`` and the call reports ``timeout``.
        cpu_time_s: CPU-time limit (``RLIMIT_CPU``) in seconds. ``RLIMIT_CPU`` counts the
            CPU time of *all* threads of the process, so ``None`` means
            ``2 * wall_time_s * threads``, where ``threads`` is ``num_threads`` or the
            number of CPUs: ``2 * wall_time_s`` alone would kill a legitimate training run
            that keeps 16 intra-op threads busy for a tenth of its wall-clock budget.
            Exceeding it reports ``timeout``.
        memory_mb: Address-space cap (``RLIMIT_AS``) in MiB; ``None`` for no cap. It caps
            *virtual* memory, which is far more than the resident memory: importing torch
            maps about 0.8 GB, and glibc reserves a 64 MB malloc arena per thread (a small
            CNN training with 16 intra-op threads maps about 2 GB while using 0.35 GB).
            The default of 8192 MiB lets such a network train on a CIFAR-sized data set
            held in memory (0.6 GB as float32) yet turns a memory bomb into a
            ``MemoryError`` long before it can hurt the machine. CUDA reserves tens of GB
            of address space when it initialises, so set ``None`` for GPU work.
        max_processes: ``RLIMIT_NPROC``; ``None`` to leave it alone. Linux counts *every*
            process and thread of the child's real user id against it (not only the
            child's own), so it must exceed what that user already runs plus torch's
            threads; and it is ignored for root. Useful only when the search runs as a
            dedicated unprivileged user.
        max_output_bytes: Cap in bytes on the JSON message the child sends back (the
            target's result plus a few bytes of envelope). The parent never reads more.
        num_threads: ``torch.set_num_threads`` in the child; ``None`` leaves torch's
            default (one thread per core).

    Raises:
        ValueError: A limit is not positive.
    """

    wall_time_s: float = 120.0
    cpu_time_s: float | None = None
    memory_mb: int | None = 8192
    max_processes: int | None = None
    max_output_bytes: int = 1_000_000
    num_threads: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "wall_time_s": self.wall_time_s,
            "cpu_time_s": self.cpu_time_s,
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "max_output_bytes": self.max_output_bytes,
            "num_threads": self.num_threads,
        }
        for name, value in checks.items():
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"SandboxLimits.{name} must be positive, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"SandboxLimits.{name} must be finite, got {value!r}")

    def resolved_cpu_time_s(self) -> float:
        """The CPU-time limit in seconds, with the ``None`` default worked out."""
        if self.cpu_time_s is not None:
            return float(self.cpu_time_s)
        threads = self.num_threads or os.cpu_count() or 1
        return 2.0 * self.wall_time_s * threads

    def to_request(self) -> dict[str, Any]:
        """The limits as the JSON object the zygote and the child read."""
        return {
            "wall_time_s": float(self.wall_time_s),
            "cpu_time_s": self.resolved_cpu_time_s(),
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "max_output_bytes": int(self.max_output_bytes),
            "num_threads": self.num_threads,
        }


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed call.

    Args:
        ok: Whether the target returned normally.
        value: The JSON object the target returned; ``None`` on failure.
        error_kind: One of :data:`llmatic.errors.FAILURE_KINDS` on failure, else ``None``.
        error: One line saying what went wrong, else ``None``.
        seconds: Wall time of the call in seconds, as seen by the parent.
    """

    ok: bool
    value: dict | None
    error_kind: str | None
    error: str | None
    seconds: float
