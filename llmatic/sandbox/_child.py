"""What one forked child does: lock itself down, call the target, send back JSON, exit.

Everything here runs in the child, right after the zygote's ``fork()``. The order is
deliberate: limits and isolation come first, and untrusted code (which only the target
runs) comes last, after every descriptor that leads back to the zygote is closed and the
child is confined (:mod:`llmatic.sandbox._confine`: ``nobody``, its own user and network
namespaces, Landlock), as far as the zygote's probe found the platform allows. Targets
that execute generated network code run the static check first
(:func:`llmatic.network_code.instantiate`).

The call's attached files (``Sandbox.run(files=...)``) are the one way a child reaches
files outside its working directory: descriptors the parent opened, which survive the
closing of the zygote's descriptors and which the target gets with :func:`attached`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import select
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from llmatic.errors import FAILURE_KINDS, CandidateError
from llmatic.sandbox import _cgroup, _confine
from llmatic.sandbox._protocol import one_line
from llmatic.sandbox._syscalls import PR_SET_PDEATHSIG, prctl

#: Exit code of a child whose own set-up failed before it could report anything.
SETUP_FAILED = 70
#: Where all calls' children run as ``nobody`` without user namespaces, they share one
#: ``RLIMIT_NPROC`` count: the automatic limit leaves room for this many calls at once.
_NOBODY_CALLS = 4
#: The files attached to this call: name -> descriptor (empty outside a sandboxed call).
_ATTACHED: dict[str, int] = {}


def attached(name: str) -> int:
    """The descriptor of the file attached to this call as ``name`` (``Sandbox.run(files=...)``).

    Call it in a target (trusted code running in the sandboxed child). The descriptor is
    read-only for an ``"r"`` file and write-only for a ``"w"`` one, positioned at the
    start, and stays open until the child exits: wrap it with
    ``open(fd, "rb", closefd=False)`` (``"wb"`` for a ``"w"`` file) to get a file object.

    Raises:
        LookupError: No file of that name is attached (or this is not a sandboxed call).
    """
    try:
        return _ATTACHED[name]
    except KeyError:
        known = ", ".join(sorted(_ATTACHED)) or "none"
        message = f"no file {name!r} is attached to this call (attached: {known})"
        raise LookupError(message) from None


def main(
    request: dict[str, Any],
    *,
    result_fd: int,
    files: Mapping[str, int],
    close_fds: Sequence[int],
    workdir: str,
    lifeline_fd: int,
) -> NoReturn:
    """Runs one call in the freshly forked child and never returns.

    Args:
        request: ``{"target": ..., "payload": ..., "limits": ...}`` from the parent, and
            ``"plan"``, the zygote's confinement plan (``None``: not confined).
        result_fd: Write end of the result pipe; the envelope goes there.
        files: The call's attached files, name -> descriptor (opened by the parent);
            left open for :func:`attached`.
        close_fds: The zygote's descriptors (control socket, wake-up pipe, status
            sockets), closed before untrusted code can get at them.
        workdir: The fresh empty directory the zygote made for this call.
        lifeline_fd: Read end of a pipe whose write end only the zygote holds: at
            end-of-file the zygote died (perhaps before we armed the parent-death signal).
    """
    code = SETUP_FAILED
    try:
        limits = request["limits"]
        _isolate(
            limits,
            plan=request.get("plan"),
            cgroups=request.get("cgroups") or [],
            close_fds=close_fds,
            workdir=workdir,
            lifeline_fd=lifeline_fd,
        )
        for fd in files.values():
            # They came through a socket without close-on-exec: a program the target
            # runs must not inherit them.
            os.set_inheritable(fd, False)
        _ATTACHED.update(files)
        envelope = _call(request["target"], request["payload"], limits)
        _send(result_fd, envelope, cap=limits["max_output_bytes"])
        code = 0
    finally:
        # Never fall back into the zygote's loop, and skip the zygote's atexit handlers.
        os._exit(code)


def _isolate(
    limits: dict[str, Any],
    *,
    plan: dict[str, Any] | None,
    cgroups: list[str],
    close_fds: Sequence[int],
    workdir: str,
    lifeline_fd: int,
) -> None:
    """Applies the limits, leaves the zygote's session, cuts all channels, confines itself.

    Only the result pipe and the attached files stay open. The order matters: the
    cgroups are joined first (while still privileged, before anything forks), namespaces
    need a single-threaded process (so torch's threads come after them), and a change of
    user clears the parent-death signal (so it is armed after).
    """
    _set_rlimits(limits)
    _cgroup.join(cgroups)
    # Its own process group (and session), so the zygote can kill it and everything it
    # starts with one killpg.
    os.setsid()
    # The zygote uses SIGCHLD and a wake-up fd for its loop; the target must not.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    # Printing a gigabyte must cost nothing and block nothing.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir(workdir)
    if plan is not None:
        disk = {"disk_mb": limits["disk_mb"], "max_files": limits["max_files"]}
        workdir = _confine.confine(workdir, plan, **disk)
        os.chdir(workdir)
    for name in ("HOME", "TMPDIR"):
        os.environ[name] = workdir
    tempfile.tempdir = workdir
    _die_with_zygote(lifeline_fd)
    count = _max_processes(limits, plan)
    if count is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (count, count))
    # Python's random reseeds itself after fork; numpy's global generator does not, and
    # without this every child would draw the same numbers. (Only if the zygote imported
    # numpy.random: a fresh import in the child seeds itself, and importing it costs 10 ms.)
    # torch's default generator starts from a fixed seed in a fresh process too: left alone.
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed(int.from_bytes(os.urandom(4), "little"))
    if limits["num_threads"] is not None:
        import torch

        torch.set_num_threads(int(limits["num_threads"]))
    if limits.get("cuda") and limits.get("gpu_memory_fraction") is not None:
        _cap_cuda_memory(float(limits["gpu_memory_fraction"]))


def _cap_cuda_memory(fraction: float) -> None:
    """Caps this process's share of the GPU's memory once it initialises CUDA.

    Queued with torch's own hook for work at CUDA's start-up (how ``torch.cuda``'s seeding
    waits too), so that a call that never touches the GPU never pays for a context.
    """
    import torch

    def cap() -> None:
        for device in range(torch.cuda.device_count()):
            torch.cuda.set_per_process_memory_fraction(fraction, device)

    torch.cuda._lazy_call(cap)


def _set_rlimits(limits: dict[str, Any]) -> None:
    # No core dumps: a segfaulting candidate must not write gigabytes to disk.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Not with CUDA, whose start-up reserves tens of GB of address space: the call's
    # cgroup caps its resident memory instead (the sandbox starts only where it has one).
    if limits["memory_mb"] is not None and not limits.get("cuda"):
        cap = int(limits["memory_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = max(1, int(-(-float(limits["cpu_time_s"]) // 1)))
    # SIGXCPU at the soft limit; SIGKILL one second later if the code ignores it.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if limits["max_file_mb"] is not None:
        # Python ignores SIGXFSZ, so a write past the cap fails with EFBIG.
        size = int(limits["max_file_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _max_processes(limits: dict[str, Any], plan: dict[str, Any] | None) -> int | None:
    """The ``RLIMIT_NPROC`` to set: the asked-for one, or one fit for what it counts."""
    if plan is not None and plan.get("cgroup"):
        return None  # the call's pids cgroup counts its processes, and only them
    if limits["max_processes"] is not None:
        return int(limits["max_processes"])
    scope = None if plan is None else plan["nproc"]
    if scope == "call":  # only this call's processes and threads count
        return int(limits["auto_max_processes"])
    if scope == "nobody":  # shared with concurrent calls (nobody runs little else)
        return _NOBODY_CALLS * int(limits["auto_max_processes"])
    return None  # root ignores it; a user's own count includes all they run


def _die_with_zygote(lifeline_fd: int) -> None:
    """SIGKILL this child when the zygote dies, so a killed zygote leaves no runaway.

    In a PID namespace of its own the child is the namespace's init, and its death
    takes every process of the call with it.
    """
    with contextlib.suppress(OSError):  # not Linux: nothing to arm
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    dead, _, _ = select.select([lifeline_fd], [], [], 0)
    os.close(lifeline_fd)
    if dead:  # the zygote died before prctl took effect
        os._exit(SETUP_FAILED)


def _call(target: str, payload: dict, limits: dict[str, Any]) -> dict[str, Any]:
    """Imports and calls the target; any failure becomes an error envelope."""
    module_name, function_name = target.split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except BaseException as err:  # the parent must hear of it, whatever it is
        return _failure("exception", f"cannot import target {target!r}: {_describe(err)}")
    try:
        value = function(payload)
    except CandidateError as err:
        kind = err.kind if err.kind in FAILURE_KINDS else "exception"
        return _failure(kind, _text(err.message))
    except MemoryError as err:
        return _failure("out_of_memory", _describe(err))
    except BaseException as err:  # SystemExit from the candidate too
        kind = "out_of_memory" if _looks_like_oom(err) else "exception"
        return _failure(kind, _describe(err))
    if not isinstance(value, dict):
        return _failure("exception", f"target returned {type(value).__name__}, not a dict")
    return {"ok": True, "value": value}


def _send(fd: int, envelope: dict[str, Any], *, cap: int) -> None:
    """Writes the envelope as JSON to ``fd``; an over-size result becomes an error."""
    try:
        data = json.dumps(envelope).encode()
    except MemoryError as err:
        data = json.dumps(_failure("out_of_memory", _describe(err))).encode()
    except (TypeError, ValueError, RecursionError) as err:
        data = json.dumps(_failure("exception", f"result is not JSON: {_describe(err)}")).encode()
    if len(data) > cap:
        message = f"the result is {len(data)} bytes of JSON, over max_output_bytes={cap}"
        data = json.dumps(_failure("exception", message)).encode()
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:  # the parent stopped listening; nothing more to do
        pass


def _looks_like_oom(err: BaseException) -> bool:
    if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
        return True
    text = _text(err) if isinstance(err, RuntimeError) else ""
    return any(
        marker in text
        for marker in ("can't allocate memory", "DefaultCPUAllocator", "out of memory")
    )


def _describe(err: BaseException) -> str:
    text = _text(err)
    return one_line(f"{type(err).__name__}: {text}" if text else type(err).__name__)


def _text(err: Any) -> str:
    try:
        return str(err)
    except BaseException:  # a hostile __str__
        return "<unprintable>"


def _failure(kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "kind": kind, "error": one_line(message)}
