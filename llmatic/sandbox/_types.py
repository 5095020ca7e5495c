"""Limits of a sandboxed call (:class:`SandboxLimits`) and its outcome (:class:`SandboxResult`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any


class SandboxSetupError(RuntimeError):
    """A set-up call of the zygote (``Sandbox(setup=...)``) failed; the message says why."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed call.

    The limits are POSIX rlimits set by the child on itself before it imports the target,
    plus a wall-clock limit enforced from outside. A process running as root could raise
    its own rlimits again (it holds ``CAP_SYS_RESOURCE``); a confined child (``confine``)
    runs as ``nobody`` or in a user namespace of its own, and holds no such capability.

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
            of address space when it initialises: with ``cuda`` the address space is
            left uncapped and the cgroup below is the guard.
            Where the zygote can make a cgroup per call (:attr:`SandboxIsolation.cgroup`),
            the same number also caps the *resident* memory of all the call's processes
            together (and its tmpfs): past it the kernel's OOM killer ends the call, which
            reports ``out_of_memory``.
        max_processes: Processes and threads of one call. With a cgroup per call it is
            the call's ``pids.max`` (the call alone is counted); otherwise it is
            ``RLIMIT_NPROC``. Linux counts every process *and thread* of the
            child's user against that, and ignores it for root. A confined child runs as
            ``nobody`` (when the zygote is root) and, where it can, in a user namespace of
            its own, where the kernel counts the call's processes alone
            (:attr:`SandboxIsolation.nproc`). ``None`` sets :meth:`resolved_max_processes`
            (twice the threads plus 64: room for torch's intra- and inter-op pools and
            CUDA's helpers) in that case, four times it where all calls share
            ``nobody``'s count, and nothing where the count would include every process
            of the user. A number is always set.
        max_output_bytes: Cap in bytes on the JSON message the child sends back (the
            target's result plus a few bytes of envelope). The parent never reads more.
        num_threads: ``torch.set_num_threads`` in the child; ``None`` leaves torch's
            default (one thread per core).
        max_file_mb: ``RLIMIT_FSIZE`` in MiB: no file the child writes grows past it (the
            write fails with ``EFBIG``); ``None`` for no cap.
        disk_mb: Size in MiB of the call's working directory where it is a tmpfs of its
            own (a private root, :attr:`SandboxIsolation.mount_namespace`): all files
            together, whatever their number. Its pages count as the call's memory.
        max_files: Files and directories the call's working directory can hold there.
        private_root: Where the platform allows it (a root zygote with namespaces), give
            each call a private root: read-only binds of what it needs, its own
            ``/proc`` and tmpfs, PID, IPC and mount namespaces. ``False`` keeps the
            host's filesystem (reads confined by Landlock only); for debugging, or for a
            target that needs paths a bind cannot give.
        cuda: Children may use CUDA (the zygote never initialises it; each child does).
            ``RLIMIT_AS`` is then not set, because it blocks CUDA's start-up: host memory
            is capped by the call's cgroup (``memory_mb`` of resident memory), and the
            sandbox refuses to start where there is no cgroup per call unless
            ``memory_mb`` is None. Device memory is capped by ``gpu_memory_fraction``.
        gpu_memory_fraction: With ``cuda``: the share of each GPU's memory one child may
            allocate (``torch.cuda.set_per_process_memory_fraction``, applied when the
            child initialises CUDA); past it an allocation raises, and the call ends as
            ``out_of_memory``. None for no cap.
        confine: Confine each child (an unprivileged user, its own user and network
            namespaces, Landlock write rules; see :mod:`llmatic.sandbox._confine`) as far
            as the platform allows. Only for debugging: ``False`` runs untrusted code
            with the parent's user, network and file access.

    Raises:
        ValueError: A limit is not positive.
    """

    wall_time_s: float = 120.0
    cpu_time_s: float | None = None
    memory_mb: int | None = 8192
    max_processes: int | None = None
    max_output_bytes: int = 1_000_000
    num_threads: int | None = None
    max_file_mb: int | None = 64
    disk_mb: int = 256
    max_files: int = 4096
    private_root: bool = True
    cuda: bool = False
    gpu_memory_fraction: float | None = 0.9
    confine: bool = True

    def __post_init__(self) -> None:
        checks = {
            "wall_time_s": self.wall_time_s,
            "cpu_time_s": self.cpu_time_s,
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "max_output_bytes": self.max_output_bytes,
            "num_threads": self.num_threads,
            "max_file_mb": self.max_file_mb,
            "disk_mb": self.disk_mb,
            "max_files": self.max_files,
            "gpu_memory_fraction": self.gpu_memory_fraction,
        }
        for name, value in checks.items():
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"SandboxLimits.{name} must be positive, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"SandboxLimits.{name} must be finite, got {value!r}")
        if self.gpu_memory_fraction is not None and self.gpu_memory_fraction > 1:
            raise ValueError(
                f"SandboxLimits.gpu_memory_fraction must be in (0, 1], got "
                f"{self.gpu_memory_fraction!r}"
            )

    def resolved_cpu_time_s(self) -> float:
        """The CPU-time limit in seconds, with the ``None`` default worked out."""
        if self.cpu_time_s is not None:
            return float(self.cpu_time_s)
        return 2.0 * self.wall_time_s * self._threads()

    def resolved_max_processes(self) -> int:
        """``max_processes``, or the default for a child counted alone (see above)."""
        if self.max_processes is not None:
            return int(self.max_processes)
        return 2 * self._threads() + 64

    def _threads(self) -> int:
        return self.num_threads or os.cpu_count() or 1

    def to_request(self) -> dict[str, Any]:
        """The limits as the JSON object the zygote and the child read."""
        return {
            "wall_time_s": float(self.wall_time_s),
            "cpu_time_s": self.resolved_cpu_time_s(),
            "memory_mb": self.memory_mb,
            "max_processes": self.max_processes,
            "auto_max_processes": self.resolved_max_processes(),
            "max_output_bytes": int(self.max_output_bytes),
            "num_threads": self.num_threads,
            "max_file_mb": self.max_file_mb,
            "disk_mb": int(self.disk_mb),
            "max_files": int(self.max_files),
            "cuda": bool(self.cuda),
            "gpu_memory_fraction": self.gpu_memory_fraction,
            "confine": bool(self.confine),
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


@dataclass(frozen=True)
class SandboxIsolation:
    """What confines the children on this machine, as the zygote found it at start-up.

    Each feature is used where the platform allows it; what is missing is said in
    ``notes`` (and logged once as a warning), and the sandbox carries on with the rest:
    rlimits, the process-group kill and the wall-clock limit hold everywhere.

    Args:
        unprivileged_user: The zygote runs as root and switches each child to ``nobody``.
        keeps_read_capability: The ``nobody`` children keep ``CAP_DAC_READ_SEARCH``
            (read everything root reads) because ``nobody`` cannot read the interpreter's
            files; they then get no user namespace.
        user_namespace: Each child has its own user namespace (no capability outside it).
        pid_namespace: Each call has its own PID namespace: it sees no other process, and
            all its processes die with it, whatever happens to the zygote.
        mount_namespace: Each call has a private root (mount, IPC and UTS namespaces):
            read-only binds of what a network needs, a fresh ``/proc``, a tmpfs of
            ``disk_mb`` as its working directory; System V IPC objects die with it.
        network_namespace: Each child has its own network namespace: no network at all.
        landlock_abi: The Landlock ABI that confines the children's writes to their
            working directory (and, with ``landlock_reads`` or a private root, their
            reads to what they need); 0 when Landlock is not used.
        landlock_reads: Landlock confines reads (the fallback without a private root).
        seccomp: A seccomp filter refuses namespaces, mounts, metadata changes, Unix
            sockets, tracing, keyrings, bpf and io_uring.
        cgroup: The cgroup version (1 or 2) of the per-call memory and pids budgets;
            0 when there is none (limits are per process then).
        nproc: What ``RLIMIT_NPROC`` counts: ``"call"`` (the call's own processes and
            threads), ``"nobody"`` (all of ``nobody``'s), ``"user"`` (all of the user's)
            or ``None`` (nothing: the children are root, whom it does not bind).
        notes: Why a feature is not used, one line each.
    """

    unprivileged_user: bool
    keeps_read_capability: bool
    user_namespace: bool
    pid_namespace: bool
    mount_namespace: bool
    network_namespace: bool
    landlock_abi: int
    landlock_reads: bool
    seccomp: bool
    cgroup: int
    nproc: str | None
    notes: tuple[str, ...]

    @classmethod
    def from_plan(cls, plan: dict[str, Any] | None) -> SandboxIsolation:
        """From the zygote's probe; ``None`` when confinement is turned off."""
        if plan is None:
            off = ("confinement is off (SandboxLimits.confine=False)",)
            return cls(False, False, False, False, False, False, 0, False, False, 0, None, off)
        return cls(
            unprivileged_user=plan["user"] is not None,
            keeps_read_capability=bool(plan["keep_read"]),
            user_namespace=bool(plan["user_namespace"]),
            pid_namespace=bool(plan["pid_namespace"]),
            mount_namespace=bool(plan["mount_namespace"]),
            network_namespace=bool(plan["network_namespace"]),
            landlock_abi=int(plan["landlock_abi"]),
            landlock_reads=bool(plan["landlock_reads"]),
            seccomp=bool(plan["seccomp"]),
            cgroup=int(plan.get("cgroup", 0)),
            nproc="call" if plan.get("cgroup") else plan["nproc"],
            notes=tuple(str(note) for note in plan["notes"]),
        )
