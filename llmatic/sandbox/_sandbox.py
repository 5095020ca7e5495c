"""The parent's side: :class:`Sandbox` starts the zygote, submits calls, judges what comes back.

The parent (the search, which may hold a large LLM and many threads) never forks: the
zygote is started with ``subprocess`` (fork+exec in C, safe with threads) and everything
else is sockets and pipes. Nothing the child sends is unpickled: the result is JSON read
with a size cap, and the exit status comes from the trusted zygote.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any

from llmatic.errors import FAILURE_KINDS
from llmatic.sandbox._cgroup import kill_and_remove
from llmatic.sandbox._protocol import (
    MAX_FILES,
    check_file_name,
    one_line,
    parse_target,
    scrub_env,
    send_frame,
)
from llmatic.sandbox._types import SandboxIsolation, SandboxLimits, SandboxResult, SandboxSetupError

_LOG = logging.getLogger("llmatic.sandbox")
#: Notes already logged by this process: each missing feature is warned about once.
_WARNED: set[str] = set()

_BOOT = (
    "import json, sys; config = json.loads(sys.argv[1]); sys.path[:] = config['sys_path']; "
    "from llmatic.sandbox._zygote import main; main(config)"
)
#: How long the zygote may take to import torch and the preload modules, in seconds.
_STARTUP_TIMEOUT_S = 300.0
#: How long past a call's wall-clock limit the parent waits for the zygote's report
#: before it decides the zygote is wedged, in seconds.
_GRACE_S = 30.0
#: ``(error_kind, value, error)``: ``(None, value, None)`` on success.
_Outcome = tuple[str | None, dict | None, str | None]
#: Limit on a control-socket send, in seconds; a zygote that does not take a request
#: in that time is treated as dead.
_SEND_TIMEOUT_S = 10.0
#: What :meth:`Sandbox.run` may attach: name -> (path, ``"r"`` or ``"w"``).
FileMap = Mapping[str, tuple[str | os.PathLike[str], str]]
#: ``run``'s default: no files (immutable, so one object can serve every call).
_NO_FILES: FileMap = MappingProxyType({})
# O_NONBLOCK only so that a FIFO cannot block the open; it is cleared once the file is
# known to be a regular one.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class _Server:
    """One zygote process and the parent's end of its control socket."""

    def __init__(self, proc: subprocess.Popen, control: socket.socket) -> None:
        self.proc = proc
        self.control = control
        self.plan: dict[str, Any] | None = None

    @classmethod
    def start(
        cls,
        preload: Sequence[str],
        setup: Sequence[tuple[str, dict]],
        temp_root: str | None,
        read_paths: Sequence[str],
        private_root: bool,
        confine: bool,
    ) -> _Server:
        """Starts a zygote and waits until it has imported torch and ``preload``.

        Raises:
            ImportError: A preload module (or torch) cannot be imported.
            RuntimeError: The zygote died or hung during start-up.
        """
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {
            "control_fd": theirs.fileno(),
            "preload": list(preload),
            "setup": [[target, payload] for target, payload in setup],
            "sys_path": [path or os.getcwd() for path in sys.path],
            "temp_root": temp_root,
            "read_paths": list(read_paths),
            "private_root": private_root,
            "confine": confine,
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(config)],
                pass_fds=(theirs.fileno(),),
                env=scrub_env(os.environ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # Out of the terminal's process group: Ctrl-C goes to the search only.
                start_new_session=True,
            )
        finally:
            theirs.close()
        server = cls(proc, control)
        try:
            control.settimeout(_STARTUP_TIMEOUT_S)
            message = control.recv(65536)
            reply = json.loads(message) if message else {}
        except (OSError, ValueError):
            reply = {}
        if reply.get("ready"):
            control.settimeout(_SEND_TIMEOUT_S)
            server.plan = reply["isolation"]
            return server
        server.stop()
        if "confine_error" in reply:
            raise RuntimeError(
                f"{reply['confine_error']}; SandboxLimits(confine=False) (sandbox.confine=false) "
                "runs untrusted code unconfined, for debugging only"
            )
        if "error" in reply:
            raise ImportError(f"the sandbox server could not preload: {reply['error']}")
        if "setup_error" in reply:
            raise SandboxSetupError(f"the sandbox's set-up failed: {reply['setup_error']}")
        raise RuntimeError(f"the sandbox server failed to start (exit code {proc.returncode})")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Closes the control socket (the zygote then kills its children and exits)."""
        self.control.close()
        try:
            self.proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Sandbox:
    """Runs trusted functions that execute untrusted code, each call in a fresh child process.

    A zygote process imports torch and ``preload`` once; every :meth:`run` forks a child
    from it (a few milliseconds), which applies ``limits``, leaves for its own session
    and process group, closes the zygote's descriptors, sends stdout and stderr to
    ``/dev/null``, works in a fresh empty directory (removed afterwards) and calls the
    target. The zygote's environment is an allow-list of the parent's (see
    :func:`llmatic.sandbox._protocol.scrub_env`), so secrets never reach the children.

    Calls may run concurrently from several threads; each gets its own child.

    Each call is also confined as far as the platform allows (:attr:`isolation`; see
    :mod:`llmatic.sandbox._confine` and ``docs/sandbox.md``): on a root zygote with
    namespaces, a PID namespace of its own (its processes die with it), a private
    read-only root with a tmpfs working directory (mount, IPC, UTS and network
    namespaces), the user ``nobody`` with no capability, Landlock read and write rules, a
    seccomp filter, and a memory and pids cgroup for the call as a whole. Elsewhere a
    fallback on the host's filesystem; a planned step that fails at start-up makes the
    sandbox refuse to start rather than run code half-confined. Generated network code is
    also checked before it runs (:mod:`llmatic.sandbox.static_check`), and what a child
    sends back is held to what its target returns (``run(check=...)``).

    A target's module must be preloaded, part of a package the zygote has loaded, or
    under ``read_paths``: nothing else of the filesystem is visible in a private root.

    Args:
        limits: Resource limits of every call.
        preload: Modules the zygote imports once, besides torch; the target's own module
            belongs here, so that no call pays for importing it. They must not run torch
            ops at import time (the zygote forks; OpenMP thread pools do not survive that).
        setup: Trusted calls ``(target, payload)`` the zygote makes once after the
            preload, before any child (``target`` is ``"module:function"`` of a preloaded
            module): loading a data set into a module's globals, say, so that every child
            inherits it without a copy. The same rule: no torch ops that start thread
            pools. They run again if the zygote is restarted.
        temp_root: Directory in which each call's working directory is made (and
            removed); ``None`` for the system's temporary directory. A root zygote's
            children run as ``nobody``, which must be able to reach it.
        read_paths: Files and directories a child may read besides the interpreter,
            its packages and the packages the zygote has loaded (a data set a target
            trains on, say). Nothing else of the filesystem is visible to a child where
            it has a private root, or readable where Landlock confines reads.

    Raises:
        ImportError: A preload module cannot be imported.
        SandboxSetupError: A ``setup`` call raised (its message is in the error's).
        RuntimeError: The zygote failed to start, or cannot confine its children here
            (``limits.cuda`` with a ``memory_mb`` cap needs a cgroup per call).
    """

    def __init__(
        self,
        *,
        limits: SandboxLimits = SandboxLimits(),  # noqa: B008 - frozen, safe to share
        preload: Sequence[str] = (),
        setup: Sequence[tuple[str, dict]] = (),
        temp_root: str | os.PathLike[str] | None = None,
        read_paths: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self._limits = limits
        self._preload = tuple(preload)
        self._setup = tuple((str(target), dict(payload)) for target, payload in setup)
        self._temp_root = None if temp_root is None else os.fspath(temp_root)
        self._read_paths = tuple(os.path.abspath(os.fspath(path)) for path in read_paths)
        self._lock = threading.Lock()
        self._closed = False
        self._server: _Server | None = None
        self._finalizer: weakref.finalize | None = None
        with self._lock:
            self._ensure_server()
        if limits.cuda and limits.memory_mb is not None and not self.isolation.cgroup:
            self.close()
            raise RuntimeError(
                "SandboxLimits(cuda=True) caps a child's host memory with a cgroup per call "
                "(RLIMIT_AS blocks CUDA's start-up), and this machine gives none: run as root "
                "or where cgroups are delegated, or set memory_mb=None (sandbox.memory_mb=null) "
                "for no host-memory cap"
            )

    @property
    def limits(self) -> SandboxLimits:
        """The limits every call runs under."""
        return self._limits

    @property
    def isolation(self) -> SandboxIsolation:
        """How the children are confined on this machine (probed when the zygote started).

        Raises:
            RuntimeError: The sandbox is closed.
        """
        with self._lock:
            server = self._ensure_server()
        return SandboxIsolation.from_plan(server.plan if self._limits.confine else None)

    @property
    def server_pid(self) -> int | None:
        """Pid of the current zygote process; ``None`` once closed."""
        server = self._server
        return None if server is None else server.pid

    def run(
        self,
        target: str,
        payload: dict,
        *,
        check: Callable[[dict], dict] | None = None,
        files: FileMap = _NO_FILES,
    ) -> SandboxResult:
        """Calls ``target(payload)`` in a fresh child and returns what happened.

        It never raises for anything the child does: failures come back as a result with
        ``error_kind`` set (see :data:`llmatic.errors.FAILURE_KINDS`).

        What comes back is untrusted: the child runs the candidate's code, and that code
        can write an envelope of its own. JSON gives exact built-in types; ``check``
        then holds the value to what the target can return.

        ``files`` attaches up to four regular files to the call (a parent's trained
        weights to read, a file for the child's own, say): this process opens each path
        itself and hands the child only the descriptor, which the target gets with
        :func:`llmatic.sandbox.attached`. The child can read an ``"r"`` file and write a
        ``"w"`` one (at most ``limits.max_file_mb``: ``RLIMIT_FSIZE`` holds), and nothing
        else of the filesystem becomes visible or writable. What a child wrote is as
        untrusted as its result: load it only in another sandboxed call, never unpickle it
        here. A ``"w"`` file holds whatever the child wrote even when the call fails.

        Args:
            target: ``"package.module:function"``, a function of trusted code that takes
                the payload and returns a JSON-serialisable dict.
            payload: The JSON-serialisable argument of the target.
            check: Trusted code of the caller's that takes the child's value and returns
                it rebuilt from parsed parts (exact types, bounded sizes, known keys), or
                raises if the target could not have returned it. Anything it raises
                becomes a ``bad_result`` failure; ``None`` accepts any JSON object.
            files: Files of the call: name (``[a-z_][a-z0-9_]{0,31}``) -> ``(path,
                mode)``. Mode ``"r"`` opens an existing regular file read-only; ``"w"``
                creates or truncates one, write-only, with mode 0o600 (a symbolic link
                as the last component is refused). Every ``"r"`` file is opened before
                any ``"w"`` file is touched, and nothing starts unless all open.

        Returns:
            The outcome; ``seconds`` is the wall time of the whole call.

        Raises:
            ValueError: ``target`` is malformed, ``payload`` is not JSON-serialisable, or
                ``files`` is malformed: a bad name or mode, more than four files, a path
                that is not a regular file, a ``"w"`` path that is one of the other files.
            FileNotFoundError: An ``"r"`` file, or a ``"w"`` file's directory, is missing.
            OSError: Another error opening a file (permissions, say).
            RuntimeError: The sandbox is closed.
        """
        parse_target(target)
        entries = _file_entries(files)
        try:
            request = json.dumps(
                {
                    "target": target,
                    "payload": payload,
                    "limits": self._limits.to_request(),
                    "files": [name for name, _, _ in entries],
                }
            ).encode()
        except (TypeError, ValueError) as err:
            raise ValueError(f"payload is not JSON-serialisable: {err}") from None
        start = time.monotonic()
        fds = _open_files(entries)
        try:
            # A zygote found dead before the child was forked is replaced and the call
            # retried once: the call never started, so nobody can tell (and no child has
            # used the files yet).
            outcome = self._attempt(request, start, fds) or self._attempt(request, start, fds)
        finally:
            # The zygote's copies went to the child (or died with a dead zygote); ours are
            # needed only for a retry.
            for fd in fds:
                os.close(fd)
        kind, value, error = outcome or ("crashed", None, "could not reach the sandbox server")
        if kind is None and check is not None:
            kind, value, error = _checked(value, check)
        return SandboxResult(
            ok=kind is None,
            value=value,
            error_kind=kind,
            error=error,
            seconds=time.monotonic() - start,
        )

    def close(self) -> None:
        """Stops the zygote; its children die with it. Idempotent."""
        with self._lock:
            self._closed = True
            self._discard(self._server)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_server(self) -> _Server:
        """The running zygote, (re)started if needed. Call with the lock held."""
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        if self._server is not None and not self._server.alive():
            self._discard(self._server)
        if self._server is None:
            self._server = _Server.start(
                self._preload,
                self._setup,
                self._temp_root,
                self._read_paths,
                self._limits.private_root,
                self._limits.confine,
            )
            self._finalizer = weakref.finalize(self, self._server.stop)
            if self._limits.confine:
                _warn_once(SandboxIsolation.from_plan(self._server.plan))
        return self._server

    def _discard(self, server: _Server | None) -> None:
        """Stops ``server`` if it is the current one. Call with the lock held."""
        if server is None or server is not self._server:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._server = None
        server.stop()

    def _attempt(self, request: bytes, start: float, files: Sequence[int]) -> _Outcome | None:
        """One try at a call; ``None`` if the zygote died before forking the child.

        ``files`` are the attached files' descriptors, in the order of the request's names.
        """
        result_r, result_w = os.pipe()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader = _Reader(mine, result_r, cap=self._limits.max_output_bytes)
        try:
            with self._lock:
                try:
                    server = self._ensure_server()
                    try:
                        socket.send_fds(server.control, [b"r"], [result_w, theirs.fileno(), *files])
                    except OSError:
                        self._discard(server)
                        return None
                finally:
                    # The zygote holds its own copies now; the child's ends must not
                    # stay open here, or we would never see the result pipe's EOF.
                    os.close(result_w)
                    theirs.close()
            try:
                send_frame(mine, request)
            except OSError:
                self._forget(server)
                return None
            deadline = start + self._limits.wall_time_s + _GRACE_S
            if not reader.collect(deadline):
                # The zygote missed the deadline by far: it is wedged. Kill and replace it.
                if reader.pid is not None:
                    _kill_group(reader.pid)
                self._forget(server)
                return "timeout", None, "no report from the sandbox server; it was restarted"
            if reader.server_died:
                self._forget(server)
                if reader.pid is None:
                    return None
        finally:
            reader.close()
        try:
            return _judge(reader, self._limits)
        except Exception as err:  # noqa: BLE001 - nothing a call does may raise in the search
            return "crashed", None, one_line(f"could not judge the call: {err!r}")

    def _forget(self, server: _Server) -> None:
        """Stops a zygote found dead (or wedged), so the next call starts a fresh one."""
        with self._lock:
            self._discard(server)


class _Reader:
    """Collects the child's result (at most ``cap`` bytes) and the zygote's reports.

    It owns both descriptors: :meth:`close` closes whichever is still open, exactly once
    (closing an fd number twice could hit another thread's newly opened file).
    """

    def __init__(self, status: socket.socket, result_fd: int, *, cap: int) -> None:
        self.pid: int | None = None
        self.cgroups: list[str] = []
        self.exit: dict[str, Any] | None = None
        self.server_error: str | None = None
        self.server_died = False
        self.data = bytearray()
        self.overflow = False
        self.status = status
        self._result_fd = result_fd
        self._result_open = True
        self._result_closed = False
        self._cap = cap
        self._lines = bytearray()

    def collect(self, deadline: float) -> bool:
        """Reads until the zygote reports the exit (or dies); False past ``deadline``."""
        poller = select.poll()
        poller.register(self.status, select.POLLIN)
        poller.register(self._result_fd, select.POLLIN)
        while self.exit is None and self.server_error is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for fd, _ in poller.poll(math.ceil(remaining * 1000)):
                if fd == self._result_fd and self._result_open:
                    if not self._read_result():
                        poller.unregister(self._result_fd)
                elif fd == self.status.fileno():
                    self._read_status()
        if self._result_open:
            # The child has exited, so what it wrote is in the pipe; don't wait for an
            # EOF that a runaway grandchild holding the pipe could withhold.
            os.set_blocking(self._result_fd, False)
            with contextlib.suppress(BlockingIOError):
                while self._read_result():
                    pass
        return True

    def _read_result(self) -> bool:
        """One read from the result pipe; False once it is finished with."""
        chunk = os.read(self._result_fd, min(1 << 16, self._cap + 1 - len(self.data)))
        if not chunk:
            self._result_open = False
            return False
        self.data += chunk
        if len(self.data) > self._cap:
            # Stop listening: the child gets EPIPE, and we never hold more than the cap.
            self.overflow = True
            self._result_open = False
            self._close_result()
            return False
        return True

    def close(self) -> None:
        self.status.close()
        self._close_result()

    def _close_result(self) -> None:
        if not self._result_closed:
            self._result_closed = True
            os.close(self._result_fd)

    def _read_status(self) -> None:
        try:
            chunk = self.status.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self.server_died = True
            self.server_error = "the sandbox server died during the call"
            return
        self._lines += chunk
        while b"\n" in self._lines:
            line, _, rest = bytes(self._lines).partition(b"\n")
            self._lines = bytearray(rest)
            message = json.loads(line)
            if "pid" in message:
                self.pid = int(message["pid"])
                self.cgroups = [str(path) for path in message.get("cgroups", [])]
            elif "exit" in message:
                self.exit = message["exit"]
            elif "error" in message:
                self.server_error = f"could not start the child: {message['error']}"


def _file_entries(files: FileMap) -> list[tuple[str, str, str]]:
    """``files`` checked, as ``(name, path, mode)``, the ``"r"`` files first.

    Raises:
        ValueError: A bad name, mode or entry, or more than :data:`MAX_FILES` files.
    """
    if not isinstance(files, Mapping):
        raise ValueError(f"files must be a mapping of name to (path, mode), got {files!r}")
    if len(files) > MAX_FILES:
        raise ValueError(f"at most {MAX_FILES} files may be attached to a call, got {len(files)}")
    entries = []
    for name, spec in files.items():
        check_file_name(name)
        try:
            path, mode = spec
            path = os.fspath(path)
        except (TypeError, ValueError):
            raise ValueError(f"files[{name!r}] must be (path, mode), got {spec!r}") from None
        if mode not in ("r", "w"):
            raise ValueError(f"files[{name!r}]: mode must be 'r' or 'w', got {mode!r}")
        entries.append((name, os.path.abspath(path), mode))
    # Stable: "r" files first, so a missing one leaves every "w" file untouched.
    entries.sort(key=lambda entry: entry[2] != "r")
    return entries


def _open_files(entries: list[tuple[str, str, str]]) -> list[int]:
    """Opens the checked ``entries``; their descriptors, in order. All or none stay open.

    Raises:
        FileNotFoundError: An ``"r"`` file or a ``"w"`` file's directory is missing.
        ValueError: A path is not a regular file, or a ``"w"`` path is an earlier file.
        OSError: Any other error of ``open``.
    """
    fds: list[int] = []
    seen: set[tuple[int, int]] = set()
    try:
        for name, path, mode in entries:
            if mode == "w":
                with contextlib.suppress(OSError):
                    info = os.stat(path)
                    if (info.st_dev, info.st_ino) in seen:
                        # Truncating it would destroy what the child is to read.
                        raise ValueError(
                            f"files[{name!r}]: {path} is also attached as another file"
                        )
            fd = _open_file(name, path, mode)
            fds.append(fd)
            info = os.fstat(fd)
            seen.add((info.st_dev, info.st_ino))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _open_file(name: str, path: str, mode: str) -> int:
    """One attached file, opened as ``mode`` asks: a blocking descriptor of a regular file."""
    flags = _READ_FLAGS if mode == "r" else _WRITE_FLAGS
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        missing = "no such file" if mode == "r" else "its directory does not exist"
        message = f"cannot attach files[{name!r}] (mode {mode!r}): {missing}"
        raise FileNotFoundError(errno.ENOENT, message, path) from None
    try:
        # A directory's descriptor would let the child open what lies beneath it, a
        # device's would give it the device.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"files[{name!r}]: {path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _judge(reader: _Reader, limits: SandboxLimits) -> _Outcome:
    """Turns what the reader collected into ``(error_kind, value, error)``."""
    if reader.exit is None:
        # The zygote died mid-call. The child's parent-death signal killed it (and, as
        # its PID namespace's init, all it started); without a PID namespace, its group
        # and what is in its cgroups are killed here.
        if reader.pid is not None:
            _kill_group(reader.pid)
        kill_and_remove(reader.cgroups)
        # Not the candidate's doing (its child cannot reach the zygote): the worker was
        # lost, and the call may be retried on the zygote that replaces it.
        return "worker_lost", None, reader.server_error
    report = reader.exit
    status = int(report["status"])
    if report.get("shutdown"):
        return "crashed", None, "the sandbox was closed during the call"
    if report.get("oom_killed"):
        return (
            "out_of_memory",
            None,
            (
                f"the call's processes together went past memory_mb={limits.memory_mb} "
                "(killed by the OOM killer of its cgroup)"
            ),
        )
    if report["timed_out"]:
        return "timeout", None, f"wall-clock limit of {limits.wall_time_s:g} s exceeded"
    if reader.overflow:
        return "exception", None, f"the child sent over max_output_bytes={limits.max_output_bytes}"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        name = _signal_name(signum)
        cpu_limit = limits.resolved_cpu_time_s()
        if signum == signal.SIGXCPU or (
            signum == signal.SIGKILL and float(report["cpu_s"]) >= math.ceil(cpu_limit)
        ):
            return "timeout", None, f"CPU-time limit of {cpu_limit:g} s exceeded ({name})"
        hint = " (the kernel's OOM killer sends SIGKILL)" if signum == signal.SIGKILL else ""
        return "crashed", None, f"killed by signal {name}{hint}"
    code = os.WEXITSTATUS(status)
    if code != 0:
        return "crashed", None, f"exited with code {code}"
    if not reader.data:
        return "crashed", None, "exited with code 0 without sending a result"
    return _unpack(bytes(reader.data))


def _checked(value: dict | None, check: Callable[[dict], dict]) -> _Outcome:
    """``check(value)`` as an outcome: whatever it raises is the child's fault."""
    try:
        checked = check(value)  # type: ignore[arg-type]
        if not isinstance(checked, dict):
            raise TypeError(f"the check returned {type(checked).__name__}")
    except Exception as err:  # noqa: BLE001 - a forged value must never raise in the search
        return (
            "bad_result",
            None,
            one_line(f"the child sent a value its target never returns: {err}"),
        )
    return None, checked, None


def _unpack(data: bytes) -> _Outcome:
    """Validates the child's envelope; anything malformed is reported, never trusted."""
    try:
        envelope = json.loads(data)
    except (ValueError, RecursionError):
        return "crashed", None, "the child sent a result that is not JSON"
    if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
        return "crashed", None, "the child sent a malformed result"
    if envelope["ok"]:
        value = envelope.get("value")
        if not isinstance(value, dict):
            return "crashed", None, "the child sent a malformed result"
        return None, value, None
    kind = envelope.get("kind")
    if kind not in FAILURE_KINDS:
        kind = "exception"
    return kind, None, one_line(str(envelope.get("error", "")))


def _warn_once(isolation: SandboxIsolation) -> None:
    for note in isolation.notes:
        if note not in _WARNED:
            _WARNED.add(note)
            _LOG.warning("sandbox isolation: %s", note)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
