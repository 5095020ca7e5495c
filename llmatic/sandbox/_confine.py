"""Confining a forked child: namespaces, a private root, an unprivileged user, Landlock, seccomp.

The zygote probes once at start-up, in a throwaway child, which steps the platform allows
(:func:`probe`); every child then applies exactly those steps (:func:`confine`), and a
planned step that fails in a child fails the call rather than run it half-confined.

The full plan (a root zygote on Linux with namespaces, as on this project's machines):

1. **A PID namespace per call** (made by the zygote around its ``fork``): the child is its
   init, so when it dies the kernel kills every process of the call, whatever happens
   to the zygote; and it sees no process outside.
2. **Mount, IPC, UTS and network namespaces** (:mod:`llmatic.sandbox._mounts`): a private
   root of read-only bind mounts holding only what a network needs, a fresh ``/proc``,
   and a size-limited tmpfs as the working directory; System V IPC objects die with the
   call; no network at all (the loopback inside is down; Unix sockets reach nothing).
3. **An unprivileged user**: ``nobody``, with no capability (the private root makes the
   interpreter reachable even where it lives under ``/root``).
4. **Landlock** (:mod:`llmatic.sandbox._landlock`): reads beneath the bound trees only,
   writes beneath the working directory only, no TCP, no signals or abstract sockets out.
5. **seccomp** (:mod:`llmatic.sandbox._seccomp`): no namespaces, mounts, metadata
   changes, Unix sockets, tracing, keyrings, bpf, io_uring.
6. ``no_new_privs``, always.

Where the private root cannot be had (not root, no namespaces), the fallback is the
earlier plan: ``nobody`` (keeping ``CAP_DAC_READ_SEARCH`` only if it cannot read the
interpreter otherwise) or a user namespace of its own, a network namespace, and
Landlock and seccomp as above (Landlock's read rules then confine reads).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

from llmatic.sandbox import _landlock, _mounts, _seccomp
from llmatic.sandbox._syscalls import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    LIBC,
    PR_SET_DUMPABLE,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    check,
    errno_text,
    prctl,
    unshare,
)

_CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
#: Small limits for the probe's own private root.
_PROBE_DISK = {"disk_mb": 1, "max_files": 64}


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def readable_paths(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """What a child may read: the interpreter, its packages, loaded packages, ``extra``,
    and the system trees (:func:`llmatic.sandbox._mounts.bind_list`).

    Call it in the zygote after the preload imports: the top-level package of every
    loaded module that lives outside the interpreter's trees (the project's own package,
    installed in development mode) is added, and so is a loaded single-file module.
    """
    trees = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        trees.add(sysconfig.get_paths()[name])
    trees.update(path for path in sys.path if path and "site-packages" in path)
    trees = {os.path.abspath(tree) for tree in trees if tree}
    found = set(trees)
    for name, module in list(sys.modules.items()):
        for file in _module_files(module):
            if not isinstance(file, str) or not os.path.isabs(file):
                continue
            if any(file.startswith(tree + os.sep) for tree in trees):
                continue
            depth = name.count(".") + (1 if os.path.basename(file) == "__init__.py" else 0)
            top = file
            for _ in range(depth):
                top = os.path.dirname(top)
            found.add(top)
    found.update(os.path.abspath(path) for path in extra)
    # Worked out once here, not in every child: the system trees and /etc files are
    # added, and paths inside another one or missing are dropped.
    return _mounts.bind_list(found)


def _module_files(module: object) -> list[str]:
    """The module's file, or a namespace package's folders; odd modules give nothing."""
    try:
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            return [file]
        path = getattr(module, "__path__", None)
        if isinstance(path, list | tuple) or type(path).__name__ == "_NamespacePath":
            return [os.path.join(str(folder), "__init__.py") for folder in path]
    except Exception:  # noqa: BLE001 - a lazy module's hook may raise anything
        pass
    return []


def probe(workdir: str, *, pid_namespace: bool, readable: list[str]) -> dict[str, Any]:
    """Finds which steps work here, trying each in a forked process; the children's plan.

    Run it in a throwaway process (inside a fresh PID namespace when ``pid_namespace``):
    it ends confined itself.

    Args:
        workdir: A fresh empty directory, made like a call's working directory.
        pid_namespace: Whether the zygote can give each call its own PID namespace.
        readable: What a child may read (:func:`readable_paths`).

    Returns:
        The plan (see :func:`unconfined` for its keys). ``nproc`` says what
        ``RLIMIT_NPROC`` counts: ``"call"``, ``"nobody"``, ``"user"`` or ``None``
        (root ignores it); ``notes`` says why a step is not used.
    """
    notes: list[str] = []
    abi = _landlock.abi_version()
    seccomp = _seccomp.supported()
    if not seccomp:
        notes.append(f"no seccomp table for {os.uname().machine}: system calls are not filtered")
    user = None
    if os.geteuid() == 0:
        user = _nobody()
        if user is None:
            notes.append("no user 'nobody': children run as root")
    else:
        notes.append("not started as root: children run as the parent's user")
    plan = unconfined("")
    plan.update(notes=notes, readable=readable, seccomp=seccomp, user=user)
    if abi > 0:
        error = _in_child(lambda: _landlock.verify(workdir, abi))
        if error is None:
            plan["landlock_abi"] = abi
        else:
            notes.append(f"Landlock ABI {abi} is present but unusable ({error})")
    else:
        notes.append("no Landlock in this kernel: file access is confined by the private root only")
    if pid_namespace and user is not None:
        full = {**plan, "pid_namespace": True, "mount_namespace": True, "network_namespace": True}
        full["nproc"] = "nobody"
        error = _in_child(lambda: _try(workdir, full))
        if error is None:
            return full
        notes.append(f"no private root per call ({error}): falling back to the host's filesystem")
    elif not pid_namespace:
        notes.append(
            "no PID namespace per call (or SandboxLimits.private_root=False): the host's "
            "filesystem with Landlock rules, and the zygote kills what a call leaves behind"
        )
    return _fallback(workdir, plan)


def _fallback(workdir: str, plan: dict[str, Any]) -> dict[str, Any]:
    """The plan without a private root: a user, user and network namespaces, Landlock."""
    notes, user = plan["notes"], plan["user"]
    plan["landlock_reads"] = bool(plan["landlock_abi"])
    if user is not None:
        os.chown(workdir, *user)
        unreadable = _in_child(lambda: _check_usable(user, [*plan["readable"], workdir]))
        if unreadable is not None:
            plan["keep_read"] = True
            notes.append(
                f"'nobody' cannot use {unreadable}: children keep CAP_DAC_READ_SEARCH "
                "(Landlock confines their reads) and get no user namespace"
            )
    if not plan["keep_read"]:
        error = _in_child(lambda: _try_user_namespace(user))
        plan["user_namespace"] = error is None
        if error is not None:
            notes.append(f"no user namespaces ({error})")
    plan["network_namespace"] = (
        plan["user_namespace"] or _in_child(lambda: unshare(CLONE_NEWNET)) is None
    )
    if not plan["network_namespace"]:
        notes.append("no network namespaces: children share the host's network")
    unprivileged = user is not None or os.geteuid() != 0
    if unprivileged and plan["user_namespace"]:
        plan["nproc"] = "call"
    elif user is not None:
        plan["nproc"] = "nobody"
    else:
        plan["nproc"] = "user" if unprivileged else None
    error = _in_child(lambda: _try(workdir, plan))
    if error is not None:
        return {**unconfined(f"confinement failed in the probe ({error})"), "failed": error}
    return plan


def confine(workdir: str, plan: dict[str, Any], *, disk_mb: int, max_files: int) -> str:
    """Applies the probed ``plan`` to this child; the working directory it ends up in.

    Call it single-threaded, before any untrusted code, once the working directory
    exists and the child has joined its cgroups.

    Raises:
        OSError: A planned step failed.
    """
    if plan["mount_namespace"]:
        unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET)
        _mounts.build_root(
            workdir, plan["readable"], disk_mb=disk_mb, max_files=max_files, owner=plan["user"]
        )
        workdir = _mounts.CALL_DIR
    elif plan["network_namespace"] and not plan["user_namespace"]:
        unshare(CLONE_NEWNET)  # while still root, if root is what we are
    if plan["user"] is not None:
        if not plan["mount_namespace"]:
            os.chown(workdir, *plan["user"])
        _become(plan["user"], keep_read=plan["keep_read"])
    if plan["user_namespace"]:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _drop_capabilities()  # those it has over its own namespace: none is needed
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if plan["landlock_abi"]:
        readable = None
        if plan["landlock_reads"] or plan["mount_namespace"]:
            readable = [*plan["readable"], *_proc_and_sys(plan)]
        _landlock.restrict(workdir, int(plan["landlock_abi"]), readable=readable)
    if plan["seccomp"]:
        _seccomp.install()
    return workdir


def unconfined(note: str) -> dict[str, Any]:
    """The plan that confines nothing, with ``note`` saying why."""
    return {
        "user": None,
        "keep_read": False,
        "user_namespace": False,
        "pid_namespace": False,
        "mount_namespace": False,
        "network_namespace": False,
        "readable": [],
        "landlock_abi": 0,
        "landlock_reads": False,
        "seccomp": False,
        "nproc": None,
        "notes": [note] if note else [],
    }


def _proc_and_sys(plan: dict[str, Any]) -> list[str]:
    """What of /proc and /sys a child may read: all of the call's own /proc, else its own."""
    if plan["mount_namespace"]:
        return ["/proc", "/sys"]
    own = os.path.realpath("/proc/self")
    return [own, "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu"]


def _try(workdir: str, plan: dict[str, Any]) -> str | None:
    """Confines this process by ``plan`` and checks it holds; why not, or None."""
    existing = [path for path in plan["readable"] if os.path.exists(path)]
    inside = confine(workdir, plan, **_PROBE_DISK)
    for path in existing:
        if not _usable(path):
            return f"{path} is not readable when confined"
    with open(os.path.join(inside, "probe"), "w") as file:
        file.write("x")
    if plan["mount_namespace"] and os.path.exists("/etc/shadow"):
        return "the private root shows /etc/shadow"
    return None


def _nobody() -> list[int] | None:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return [entry.pw_uid, entry.pw_gid]


def _become(user: list[int], *, keep_read: bool = False) -> None:
    """Switches to ``user`` (uid, gid) for good, keeping ``CAP_DAC_READ_SEARCH`` if asked."""
    uid, gid = user
    if keep_read:
        prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if keep_read:
        header = _CapHeader(version=_LINUX_CAPABILITY_VERSION_3, pid=0)
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = 1 << _CAP_DAC_READ_SEARCH
        check(LIBC.capset(ctypes.byref(header), data))
        prctl(PR_SET_KEEPCAPS, 0)
    # A change of user makes the process undumpable, and /proc/self root's. The child
    # has nothing to hide from itself; other sandboxed children cannot trace it
    # (seccomp refuses ptrace), and the parent is root.
    prctl(PR_SET_DUMPABLE, 1)


def _drop_capabilities() -> None:
    header = _CapHeader(version=_LINUX_CAPABILITY_VERSION_3, pid=0)
    check(LIBC.capset(ctypes.byref(header), (_CapData * 2)()))


def _check_usable(user: list[int], paths: list[str]) -> str | None:
    """The first of ``paths`` that ``user`` cannot read (and enter), after becoming it."""
    paths = [path for path in paths if os.path.exists(path)]  # as root: all are visible
    _become(user)
    for path in paths:
        if not _usable(path):
            return path
    return None


def _usable(path: str) -> bool:
    """Whether this process can read ``path`` (and enter it, if a directory)."""
    mode = os.R_OK | (os.X_OK if os.path.isdir(path) else 0)
    # Effective ids and capabilities: a plain access() drops a kept CAP_DAC_READ_SEARCH.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _try_user_namespace(user: list[int] | None) -> None:
    if user is not None:
        _become(user)
    unshare(CLONE_NEWUSER | CLONE_NEWNET)


def _in_child(function: Callable[[], object]) -> str | None:
    """Runs ``function`` in a forked process: ``None`` if it returned ``None``, else why not."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                value = function()
                text = "" if value is None else str(value)
            except OSError as err:
                text = errno_text(err)
            except Exception as err:  # a bug in a step must not pass for success
                text = f"{type(err).__name__}: {err}"
            os.write(write_end, text.encode() or b"\0")
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    if data == b"\0":
        return None
    return data.decode(errors="replace") or "the check died"
