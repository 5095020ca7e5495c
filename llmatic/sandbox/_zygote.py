"""The zygote: a long-lived server that imports torch once and forks one child per call.

The parent starts it with ``python -c`` and a scrubbed environment (so neither its memory
nor ``/proc/<pid>/environ`` holds the search's secrets). It imports torch and the preload
modules, probes in a throwaway child which confinement steps the platform allows
(:func:`llmatic.sandbox._confine.probe`; the plan goes to the parent in the ``ready``
message and to every child with its request), freezes the garbage collector (children
then do not dirty the shared pages), and serves calls in a single-threaded ``poll`` loop:

* a control message brings two descriptors (and the call's attached files); the request
  is read from the status socket and the zygote forks; the child runs
  :func:`llmatic.sandbox._child.main`; the zygote closes its copies of the call's
  descriptors right after the fork, so no later child inherits them;
* ``SIGCHLD`` (through a wake-up pipe) makes it reap: it kills the child's whole process
  group while the child is still a zombie (so its pgid cannot have been reused), reaps
  it with ``wait4`` for its CPU time, removes the call's directory and reports the exit;
* past a call's wall-clock deadline it kills the group with ``SIGKILL``;
* end-of-file on the control socket (the parent closed it or died) kills all children.

The zygote never runs a torch op: OpenMP thread pools do not survive ``fork()``.
It is a child subreaper, so orphaned grandchildren are reparented to it; whenever it
reaps, it kills every child of its own that is not a call in flight, so a grandchild that
left its call's process group (``setsid``) dies once its parent is gone.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import math
import os
import select
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from llmatic.sandbox import _child, _confine
from llmatic.sandbox._cgroup import CgroupRoot
from llmatic.sandbox._cleanup import remove_tree
from llmatic.sandbox._protocol import MAX_FILES, check_file_name, one_line, recv_frame
from llmatic.sandbox._syscalls import CLONE_NEWPID, PR_SET_CHILD_SUBREAPER, prctl, setns, unshare

_MIB = 1024 * 1024
#: How often the zygote looks for OOM kills in the calls' cgroups, in milliseconds.
_OOM_CHECK_MS = 100
#: How long the zygote waits for the parent to finish sending a request, in seconds.
_REQUEST_TIMEOUT_S = 30.0


@dataclass
class _Call:
    """A child in flight."""

    status: socket.socket
    deadline: float
    workdir: str
    name: str
    cgroups: list[str]
    timed_out: bool = False


def main(config: dict[str, Any]) -> None:
    """Entry point of the zygote process.

    Args:
        config: ``{"control_fd": int, "preload": [module names], "setup": [[target,
            payload], ...], "sys_path": [...], "temp_root": str or None}`` (the boot line
            has already installed ``sys_path``).
    """
    control = socket.socket(fileno=int(config["control_fd"]))
    # Ctrl-C in the search's terminal is the parent's business; it closes us cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # torch always: it is what makes a fresh process slow to start.
        for name in ("torch", *config["preload"]):
            importlib.import_module(name)
    except BaseException as err:  # report it instead of dying silently
        control.send(json.dumps({"error": one_line(f"{type(err).__name__}: {err}")}).encode())
        return
    try:
        # Trusted set-up calls (loading a data set once, for every child to inherit).
        for target, payload in config.get("setup", []):
            module, _, function = target.partition(":")
            getattr(importlib.import_module(module), function)(payload)
    except BaseException as err:
        message = one_line(f"{type(err).__name__}: {err}")
        control.send(json.dumps({"setup_error": message}).encode())
        return
    temp_root = config.get("temp_root")
    readable = _confine.readable_paths(config.get("read_paths", []))
    pid_namespace = _PidNamespace.open() if config.get("private_root", True) else None
    plan = _probe(temp_root, pid_namespace, readable)
    if config.get("confine", True) and plan.get("failed"):
        # Fail closed: untrusted code never runs half-confined because a step broke here.
        message = f"the sandbox cannot confine its children here: {plan['failed']}"
        control.send(json.dumps({"confine_error": one_line(message)}).encode())
        return
    cgroup = None
    if plan["user"] is not None or os.geteuid() != 0:  # confined at all
        cgroup, note = CgroupRoot.detect(f"llmatic-{os.getpid()}")
        if note is not None:
            plan["notes"].append(
                f"{note}: memory is limited per process (RLIMIT_AS) and processes by "
                "RLIMIT_NPROC, not per call"
            )
    plan["cgroup"] = 0 if cgroup is None else cgroup.version
    if not plan["pid_namespace"]:
        pid_namespace = None
    gc.collect()
    gc.freeze()
    _become_subreaper()
    _Zygote(
        control, plan=plan, temp_root=temp_root, pid_namespace=pid_namespace, cgroup=cgroup
    ).serve()


class _PidNamespace:
    """Puts each forked child into a PID namespace of its own (it is its init).

    ``unshare(CLONE_NEWPID)`` changes only where the zygote's *next* child goes; after
    the fork the zygote points that back at its own namespace with ``setns``, so that
    every call gets a fresh one.
    """

    def __init__(self, own: int) -> None:
        self._own = own

    @classmethod
    def open(cls) -> _PidNamespace | None:
        try:
            own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        namespace = cls(own)
        try:
            namespace.enter()
            namespace.leave()
        except OSError:
            os.close(own)
            return None
        return namespace

    def enter(self) -> None:
        unshare(CLONE_NEWPID)

    def leave(self) -> None:
        setns(self._own, CLONE_NEWPID)


def _probe(
    temp_root: str | None, pid_namespace: _PidNamespace | None, readable: list[str]
) -> dict[str, Any]:
    """Runs :func:`llmatic.sandbox._confine.probe` in a throwaway child; its plan."""
    workdir = tempfile.mkdtemp(prefix="llmatic-sandbox-probe-", dir=temp_root)
    read_end, write_end = os.pipe()
    try:
        if pid_namespace is not None:
            pid_namespace.enter()
        pid = os.fork()
        if pid == 0:  # the probe child
            code = 1
            try:
                os.close(read_end)
                plan = _confine.probe(
                    workdir, pid_namespace=pid_namespace is not None, readable=readable
                )
                os.write(write_end, json.dumps(plan).encode())
                code = 0
            finally:
                os._exit(code)
        if pid_namespace is not None:
            pid_namespace.leave()
        os.close(write_end)
        write_end = -1
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        remove_tree(workdir)
    try:
        return json.loads(data)
    except ValueError:
        failed = _confine.unconfined("the confinement probe failed: children are not confined")
        return {**failed, "failed": "the probe died"}


def _become_subreaper() -> None:
    with contextlib.suppress(OSError):  # not Linux: orphans go to init instead
        prctl(PR_SET_CHILD_SUBREAPER, 1)


class _Zygote:
    def __init__(
        self,
        control: socket.socket,
        *,
        plan: dict[str, Any],
        temp_root: str | None,
        pid_namespace: _PidNamespace | None,
        cgroup: CgroupRoot | None,
    ) -> None:
        self._control = control
        self._plan = plan
        self._temp_root = temp_root
        self._pid_namespace = pid_namespace
        self._cgroup = cgroup
        self._busy_cgroups: list[str] = []
        self._serial = 0
        self._calls: dict[int, _Call] = {}
        # Children hold the read end; it reads end-of-file once the zygote is gone.
        self._lifeline_r, self._lifeline_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        # A Python-level handler is needed for the C handler to write to the wake-up fd.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def serve(self) -> None:
        ready = {"ready": True, "pid": os.getpid(), "isolation": self._plan}
        self._control.send(json.dumps(ready).encode())
        poller = select.poll()
        poller.register(self._control, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            events = poller.poll(self._poll_timeout_ms())
            for fd, _ in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 4096):
                            pass
                elif fd == self._control.fileno() and not self._on_control():
                    self._shutdown()
                    return
            self._reap()
            self._enforce_deadlines()

    def _poll_timeout_ms(self) -> int | None:
        """Milliseconds until the next deadline or memory check; None: wait for an event."""
        pending = [call.deadline for call in self._calls.values() if not call.timed_out]
        if not pending:
            return None
        wait = max(0, math.ceil((min(pending) - time.monotonic()) * 1000))
        if any(call.cgroups for call in self._calls.values()):
            wait = min(wait, _OOM_CHECK_MS)
        return wait

    def _on_control(self) -> bool:
        """Starts the call a control message announces; False once the parent is gone."""
        try:
            message, fds, _, _ = socket.recv_fds(self._control, 16, 2 + MAX_FILES)
        except OSError:
            return False
        if not message:
            return False
        if len(fds) < 2:
            _close_all(fds)
            return True
        result_fd, status_fd, *file_fds = fds
        status = socket.socket(fileno=status_fd)
        try:
            status.settimeout(_REQUEST_TIMEOUT_S)
            request = json.loads(recv_frame(status))
            names = [check_file_name(name) for name in request.get("files", [])]
            if len(names) != len(file_fds) or len(set(names)) != len(names):
                raise ValueError(f"{len(file_fds)} files came for the names {names}")
        except (OSError, ValueError) as err:
            _close_all([result_fd, *file_fds])
            self._tell(status, {"error": one_line(f"a malformed request: {err}")})
            status.close()
            return True
        self._fork(request, result_fd, status, dict(zip(names, file_fds, strict=True)))
        return True

    def _fork(
        self,
        request: dict[str, Any],
        result_fd: int,
        status: socket.socket,
        files: dict[str, int],
    ) -> None:
        """Forks the call's child; closes the zygote's copies of ``result_fd`` and ``files``."""
        limits = request["limits"]
        confined = bool(limits.get("confine", True))
        request["plan"] = self._plan if confined else None
        self._serial += 1
        name = f"call-{self._serial}"
        workdir = ""
        cgroups: list[str] = []
        pid_namespace = self._pid_namespace if confined else None
        try:
            workdir = tempfile.mkdtemp(prefix="llmatic-sandbox-", dir=self._temp_root)
            if confined and self._cgroup is not None:
                memory = limits["memory_mb"]
                cgroups = self._cgroup.create(
                    name,
                    memory_bytes=None if memory is None else int(memory) * _MIB,
                    max_processes=int(limits["max_processes"] or limits["auto_max_processes"]),
                )
            request["cgroups"] = cgroups
            if pid_namespace is not None:
                pid_namespace.enter()
            pid = os.fork()
        except OSError as err:
            if pid_namespace is not None:
                with contextlib.suppress(OSError):
                    pid_namespace.leave()
            _close_all([result_fd, *files.values()])
            self._release(workdir, cgroups)
            self._tell(status, {"error": one_line(f"could not start the call: {err}")})
            status.close()
            return
        if pid == 0:
            keep_out = [
                self._control.fileno(),
                self._wake_r,
                self._wake_w,
                self._lifeline_w,
                status.fileno(),
                *(call.status.fileno() for call in self._calls.values()),
            ]
            _child.main(
                request,
                result_fd=result_fd,
                files=files,
                close_fds=keep_out,
                workdir=workdir,
                lifeline_fd=self._lifeline_r,
            )
        if pid_namespace is not None:
            pid_namespace.leave()
        # The child has its own copies; a later child must not inherit ours.
        _close_all([result_fd, *files.values()])
        deadline = time.monotonic() + float(limits["wall_time_s"])
        self._calls[pid] = _Call(
            status=status, deadline=deadline, workdir=workdir, name=name, cgroups=cgroups
        )
        # The parent kills what is in the cgroups should this zygote die mid-call.
        self._tell(status, {"pid": pid, "cgroups": cgroups})

    def _release(self, workdir: str, cgroups: list[str]) -> None:
        """Removes a call's directory and cgroups; never raises (the loop must go on)."""
        if workdir:
            remove_tree(workdir)
        if self._cgroup is not None:
            self._busy_cgroups = self._cgroup.remove([*self._busy_cgroups, *cgroups])

    def _reap(self) -> None:
        reaped = False
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is None:
                if reaped:
                    self._kill_strays()
                return
            reaped = True
            pid = info.si_pid
            call = self._calls.pop(pid, None)
            if call is None:  # an orphaned grandchild reparented to us
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                continue
            # Still a zombie, so its pgid is ours: kill whatever it left behind.
            _kill_group(pid)
            _, status, usage = os.wait4(pid, 0)
            self._finish(call, status, usage.ru_utime + usage.ru_stime)

    def _finish(self, call: _Call, status: int, cpu_s: float, shutdown: bool = False) -> None:
        oom = bool(call.cgroups) and self._cgroup is not None and self._cgroup.oom_killed(call.name)
        self._release(call.workdir, call.cgroups)
        report = {"status": status, "timed_out": call.timed_out, "cpu_s": cpu_s, "oom_killed": oom}
        if shutdown:
            report["shutdown"] = True
        self._tell(call.status, {"exit": report})
        call.status.close()

    def _kill_strays(self) -> None:
        """SIGKILLs every child of ours that is not a call: orphans of finished calls."""
        for pid in _children_of(os.getpid()):
            if pid not in self._calls:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _enforce_deadlines(self) -> None:
        """Kills calls past their wall-clock limit, and calls the OOM killer struck in.

        A process of the call killed for memory leaves the call broken (its parent may
        wait for it forever), so the call ends at once and reports ``out_of_memory``.
        """
        now = time.monotonic()
        for pid, call in self._calls.items():
            if call.timed_out:
                continue
            if now >= call.deadline:
                call.timed_out = True
                _kill_group(pid)
            elif call.cgroups and self._cgroup is not None and self._cgroup.oom_killed(call.name):
                _kill_group(pid)

    def _shutdown(self) -> None:
        for pid in self._calls:
            _kill_group(pid)
        for pid, call in list(self._calls.items()):
            _, status, usage = os.wait4(pid, 0)
            self._finish(call, status, usage.ru_utime + usage.ru_stime, shutdown=True)
        self._calls.clear()
        self._control.close()
        os.close(self._lifeline_w)
        # Kill and reap the grandchildren that were reparented to us (and theirs, as they
        # are reparented in turn); whatever is left after a second goes to init.
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            self._kill_strays()
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)
        if self._cgroup is not None:
            self._cgroup.remove(self._busy_cgroups)
            self._cgroup.close()

    @staticmethod
    def _tell(status: socket.socket, message: dict[str, Any]) -> None:
        try:
            status.settimeout(5.0)
            status.sendall(json.dumps(message).encode() + b"\n")
        except OSError:  # the parent gave up on this call
            pass


def _children_of(pid: int) -> list[int]:
    """Pids of ``pid``'s live children (and zombies), from /proc."""
    try:  # needs CONFIG_PROC_CHILDREN; the zygote has one thread, so this is all of them
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            return [int(field) for field in file.read().split()]
    except OSError:
        pass
    children = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{name}/stat") as file:
                    # The command name in parentheses may hold spaces: split after it.
                    fields = file.read().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    children.append(int(name))
    return children


def _close_all(fds: list[int]) -> None:
    """Closes each of ``fds`` once; never raises (the loop must go on)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _kill_group(pid: int) -> None:
    """SIGKILLs the process group ``pid`` leads, and ``pid`` itself (it may have left it)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
