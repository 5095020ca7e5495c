"""The zygote: a long-lived server that imports torch once and forks one child per call.

The parent starts it with ``python -c`` and a scrubbed environment (so neither its memory
nor ``/proc/<pid>/environ`` holds the search's secrets). It imports torch and the preload
modules, probes in a throwaway child which confinement steps the platform allows
(:func:`llmatic.sandbox._confine.probe`; the plan goes to the parent in the ``ready``
message and to every child with its request), freezes the garbage collector (children
then do not dirty the shared pages), and serves calls in a single-threaded ``poll`` loop:

* a control message brings two descriptors; the request is read from the status socket
  and the zygote forks; the child runs :func:`llmatic.sandbox._child.main`;
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
import ctypes
import gc
import importlib
import json
import math
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from llmatic.sandbox import _child, _confine
from llmatic.sandbox._protocol import one_line, recv_frame

_PR_SET_CHILD_SUBREAPER = 36
#: How long the zygote waits for the parent to finish sending a request, in seconds.
_REQUEST_TIMEOUT_S = 30.0


@dataclass
class _Call:
    """A child in flight."""

    status: socket.socket
    deadline: float
    workdir: str
    timed_out: bool = False


def main(config: dict[str, Any]) -> None:
    """Entry point of the zygote process.

    Args:
        config: ``{"control_fd": int, "preload": [module names], "sys_path": [...],
            "temp_root": str or None}`` (the boot line has already installed
            ``sys_path``).
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
    temp_root = config.get("temp_root")
    plan = _probe(temp_root)
    gc.collect()
    gc.freeze()
    _become_subreaper()
    _Zygote(control, plan=plan, temp_root=temp_root).serve()


def _probe(temp_root: str | None) -> dict[str, Any]:
    """Runs :func:`llmatic.sandbox._confine.probe` in a throwaway child; its plan."""
    workdir = tempfile.mkdtemp(prefix="llmatic-sandbox-probe-", dir=temp_root)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the probe child
            code = 1
            try:
                os.close(read_end)
                data = json.dumps(_confine.probe(workdir)).encode()
                os.write(write_end, data)
                code = 0
            finally:
                os._exit(code)
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
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        return json.loads(data)
    except ValueError:
        return _confine.unconfined("the confinement probe failed: children are not confined")


def _become_subreaper() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans go to init instead
        pass


class _Zygote:
    def __init__(
        self, control: socket.socket, *, plan: dict[str, Any], temp_root: str | None
    ) -> None:
        self._control = control
        self._plan = plan
        self._temp_root = temp_root
        self._calls: dict[int, _Call] = {}
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
        """Milliseconds until the next deadline; None (wait for an event) if there is none."""
        pending = [call.deadline for call in self._calls.values() if not call.timed_out]
        if not pending:
            return None
        return max(0, math.ceil((min(pending) - time.monotonic()) * 1000))

    def _on_control(self) -> bool:
        """Starts the call a control message announces; False once the parent is gone."""
        try:
            message, fds, _, _ = socket.recv_fds(self._control, 16, 2)
        except OSError:
            return False
        if not message:
            return False
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return True
        result_fd, status_fd = fds
        status = socket.socket(fileno=status_fd)
        try:
            status.settimeout(_REQUEST_TIMEOUT_S)
            request = json.loads(recv_frame(status))
        except (OSError, ValueError):
            os.close(result_fd)
            status.close()
            return True
        self._fork(request, result_fd, status)
        return True

    def _fork(self, request: dict[str, Any], result_fd: int, status: socket.socket) -> None:
        workdir = tempfile.mkdtemp(prefix="llmatic-sandbox-", dir=self._temp_root)
        request["plan"] = self._plan if request["limits"].get("confine", True) else None
        keep_out = [
            self._control.fileno(),
            self._wake_r,
            self._wake_w,
            status.fileno(),
            *(call.status.fileno() for call in self._calls.values()),
        ]
        zygote_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:
            os.close(result_fd)
            shutil.rmtree(workdir, ignore_errors=True)
            self._tell(status, {"error": one_line(f"fork failed: {err}")})
            status.close()
            return
        if pid == 0:
            _child.main(
                request,
                result_fd=result_fd,
                close_fds=keep_out,
                workdir=workdir,
                zygote_pid=zygote_pid,
            )
        os.close(result_fd)
        deadline = time.monotonic() + float(request["limits"]["wall_time_s"])
        self._calls[pid] = _Call(status=status, deadline=deadline, workdir=workdir)
        self._tell(status, {"pid": pid})

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
        shutil.rmtree(call.workdir, ignore_errors=True)
        report = {"status": status, "timed_out": call.timed_out, "cpu_s": cpu_s}
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
        now = time.monotonic()
        for pid, call in self._calls.items():
            if not call.timed_out and now >= call.deadline:
                call.timed_out = True
                _kill_group(pid)

    def _shutdown(self) -> None:
        for pid in self._calls:
            _kill_group(pid)
        for pid, call in list(self._calls.items()):
            _, status, usage = os.wait4(pid, 0)
            self._finish(call, status, usage.ru_utime + usage.ru_stime, shutdown=True)
        self._calls.clear()
        self._control.close()
        # Kill and reap the grandchildren that were reparented to us (and theirs, as they
        # are reparented in turn); whatever is left after a second goes to init.
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            self._kill_strays()
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.01)

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


def _kill_group(pid: int) -> None:
    """SIGKILLs the process group ``pid`` leads, and ``pid`` itself (it may have left it)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
