"""Confining a forked child: an unprivileged user, namespaces of its own, Landlock rules.

The zygote probes once at start-up, in a throwaway child, which steps the platform allows
(:func:`probe`); every child then applies exactly those steps (:func:`confine`), and a
planned step that fails in a child fails the call rather than run it half-confined.

1. **An unprivileged user.** A zygote running as root switches each child to ``nobody``
   (handing its working directory over first). Then the kernel's permission checks hold:
   the child cannot write root's files, signal or trace the parent, read
   ``/proc/<parent>/environ`` or raise its own rlimits, and ``RLIMIT_NPROC`` (which root
   ignores) counts. If ``nobody`` cannot read the interpreter's files (Python installed
   under ``/root``, say), the child keeps one capability, ``CAP_DAC_READ_SEARCH``:
   it reads what root reads, and still writes, signals and forks as ``nobody``.
2. **Namespaces.** Where ``nobody`` (or the ordinary user a zygote runs as) may create
   one, each child gets its own user namespace and, in it, its own network namespace
   (``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` through libc: ``os.unshare`` is Python
   3.12+). The kernel then counts ``RLIMIT_NPROC`` per user namespace, that is for this
   one call, and the child holds no capability over anything outside. A child that keeps
   ``CAP_DAC_READ_SEARCH`` cannot have a user namespace (it would lose the capability
   outside it): it gets a network namespace made while still root, and its
   ``RLIMIT_NPROC`` counts every process of ``nobody``. A new network namespace has only
   a loopback interface, down: no connection reaches anything, the host's loopback
   listeners included.
3. **Landlock** (Linux 5.13+): writes of any kind (create, write, truncate, remove,
   rename, link, device ioctls) only beneath the working directory, plus writing to
   ``/dev/null``-like devices and to GPU device nodes; reads stay allowed. From ABI 4
   every TCP bind and connect is refused as well (a second wall behind the network
   namespace), from ABI 6 signals to processes outside the sandbox and connections to
   abstract Unix sockets outside it. ``no_new_privs`` is set in any case (no setuid
   program gives a child its privileges back).

What is not confined: reading files (what the child's user, or root, may read; with no
network the only way out is the result JSON), and disk space inside the working directory
(``RLIMIT_FSIZE`` caps each file, the wall-clock limit the time spent writing).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import pwd
import sys
from collections.abc import Callable
from typing import Any

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_DUMPABLE = 4
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Landlock's system calls have the same numbers on every architecture but alpha.
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
# Filesystem access rights (ABI 1, then the ABI that added each later one).
_FS_WRITE_FILE = 1 << 1
_FS_REMOVE_DIR = 1 << 4
_FS_REMOVE_FILE = 1 << 5
_FS_MAKE_CHAR = 1 << 6
_FS_MAKE_DIR = 1 << 7
_FS_MAKE_REG = 1 << 8
_FS_MAKE_SOCK = 1 << 9
_FS_MAKE_FIFO = 1 << 10
_FS_MAKE_BLOCK = 1 << 11
_FS_MAKE_SYM = 1 << 12
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1  # ABI 6
#: Device files the child may write (and, from ABI 5, ioctl): sinks and GPUs.
_WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/nvidia*", "/dev/dri")

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    _LIBC.syscall.restype = ctypes.c_long
except (OSError, AttributeError):
    _LIBC = None


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def probe(workdir: str) -> dict[str, Any]:
    """Finds which steps work here, trying each in a forked process; the children's plan.

    Run it in a throwaway process: it ends confined itself (the last check is that
    :func:`confine` works as planned and that Landlock's rules hold).

    Args:
        workdir: A fresh empty directory, made like a call's working directory.

    Returns:
        ``{"user": [uid, gid] or None, "keep_read": bool, "user_namespace": bool,
        "network_namespace": bool, "landlock_abi": int, "nproc": str or None,
        "notes": [...]}``. ``nproc`` says what ``RLIMIT_NPROC`` counts: ``"call"`` the
        call's own processes and threads, ``"nobody"`` all of ``nobody``'s, ``"user"``
        all of the parent's user's, ``None`` nothing (root ignores it). ``notes`` says
        why a step is not used.
    """
    notes: list[str] = []
    user, keep_read = None, False
    if os.geteuid() == 0:
        user = _nobody()
        if user is None:
            notes.append("no user 'nobody': children run as root")
        else:
            needed = [path for path in sys.path if path and os.path.isdir(path)]
            os.chown(workdir, *user)
            unreadable = _in_child(lambda: _check_usable(user, [*needed, workdir]))
            if unreadable is not None:
                keep_read = True
                notes.append(
                    f"'nobody' cannot use {unreadable}: children keep CAP_DAC_READ_SEARCH "
                    "(they read what root reads) and get no user namespace, so RLIMIT_NPROC "
                    "counts all of nobody's processes"
                )
    else:
        notes.append("not started as root: children run as the parent's user")
    user_namespace = False
    if not keep_read:
        error = _in_child(lambda: _try_user_namespace(user))
        user_namespace = error is None
        if error is not None:
            notes.append(f"no user namespaces ({error})")
    network_namespace = user_namespace or _in_child(lambda: _unshare(_CLONE_NEWNET)) is None
    if not network_namespace:
        notes.append("no network namespaces: children share the host's network")
    unprivileged = user is not None or os.geteuid() != 0
    if unprivileged and user_namespace:
        nproc = "call"
    elif user is not None:
        nproc = "nobody"
    else:
        nproc = "user" if unprivileged else None
    plan = {
        "user": user,
        "keep_read": keep_read,
        "user_namespace": user_namespace,
        "network_namespace": network_namespace,
        "landlock_abi": 0,
        "nproc": nproc,
        "notes": notes,
    }
    abi = landlock_abi()
    if abi <= 0:
        notes.append(
            "no Landlock in this kernel: writes outside the working directory are stopped "
            "only by file permissions"
        )
    try:
        confine(workdir, plan)
    except OSError as err:
        return unconfined(f"confinement failed in the probe ({_errno_text(err)})")
    if abi > 0:
        try:
            _verify_landlock(workdir, abi)
            plan["landlock_abi"] = abi
        except OSError as err:
            notes.append(f"Landlock ABI {abi} is present but unusable ({_errno_text(err)})")
    return plan


def confine(workdir: str, plan: dict[str, Any]) -> None:
    """Applies the probed ``plan`` to this child.

    Call it single-threaded (a user namespace needs that), before any untrusted code,
    once the working directory exists.

    Raises:
        OSError: A planned step failed.
    """
    if plan["network_namespace"] and not plan["user_namespace"]:
        _unshare(_CLONE_NEWNET)  # while still root, if root is what we are
    if plan["user"] is not None:
        os.chown(workdir, *plan["user"])
        _become(plan["user"], keep_read=plan["keep_read"])
    if plan["user_namespace"]:
        _unshare(_CLONE_NEWUSER | _CLONE_NEWNET)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    if plan["landlock_abi"]:
        _restrict_writes(workdir, int(plan["landlock_abi"]))


def unconfined(note: str) -> dict[str, Any]:
    """The plan that confines nothing, with ``note`` saying why."""
    return {
        "user": None,
        "keep_read": False,
        "user_namespace": False,
        "network_namespace": False,
        "landlock_abi": 0,
        "nproc": None,
        "notes": [note],
    }


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 or less when there is none."""
    if _LIBC is None or not sys.platform.startswith("linux"):
        return 0
    return int(
        _LIBC.syscall(
            _SYS_LANDLOCK_CREATE_RULESET,
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
        )
    )


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
        _prctl(_PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if keep_read:
        header = _CapHeader(version=_LINUX_CAPABILITY_VERSION_3, pid=0)
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = 1 << _CAP_DAC_READ_SEARCH
        _check(_LIBC.capset(ctypes.byref(header), data))
        _prctl(_PR_SET_KEEPCAPS, 0)
    # A change of user makes the process undumpable, and /proc/self root's. The child
    # has nothing to hide from itself; other sandboxed children cannot trace it
    # (Landlock forbids tracing across sandboxes), and the parent is root.
    _prctl(_PR_SET_DUMPABLE, 1)


def _check_usable(user: list[int], paths: list[str]) -> str | None:
    """The first of ``paths`` that ``user`` cannot read (and enter), after becoming it."""
    _become(user)
    for path in paths:
        if not os.access(path, os.R_OK | os.X_OK):
            return path
    return None


def _try_user_namespace(user: list[int] | None) -> None:
    if user is not None:
        _become(user)
    _unshare(_CLONE_NEWUSER | _CLONE_NEWNET)


def _unshare(flags: int) -> None:
    if _LIBC is None:
        raise OSError(errno.ENOSYS, "no libc")
    if _LIBC.unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _in_child(function: Callable[[], object]) -> str | None:
    """Runs ``function`` in a forked process: its return value or error, as text.

    ``None`` if it returned ``None``; otherwise what it returned, or the error it raised.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                value = function()
                text = "" if value is None else str(value)
            except OSError as err:
                text = _errno_text(err)
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


def _restrict_writes(workdir: str, abi: int) -> None:
    """Landlock: writes only beneath ``workdir`` and to a few devices; see the module doc."""
    write_fs = (
        _FS_WRITE_FILE
        | _FS_REMOVE_DIR
        | _FS_REMOVE_FILE
        | _FS_MAKE_CHAR
        | _FS_MAKE_DIR
        | _FS_MAKE_REG
        | _FS_MAKE_SOCK
        | _FS_MAKE_FIFO
        | _FS_MAKE_BLOCK
        | _FS_MAKE_SYM
    )
    if abi >= 2:
        write_fs |= _FS_REFER
    if abi >= 3:
        write_fs |= _FS_TRUNCATE
    if abi >= 5:
        write_fs |= _FS_IOCTL_DEV
    attr = _RulesetAttr(handled_access_fs=write_fs)
    size = ctypes.sizeof(ctypes.c_uint64)
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 2 * ctypes.sizeof(ctypes.c_uint64)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = ctypes.sizeof(_RulesetAttr)
    ruleset = _check(
        _LIBC.syscall(
            _SYS_LANDLOCK_CREATE_RULESET,
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        )
    )
    try:
        _allow(ruleset, workdir, write_fs)
        device_rights = write_fs & (_FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV)
        for pattern in _WRITABLE_DEVICES:
            for path in glob.glob(pattern):
                _allow(ruleset, path, device_rights)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        _check(
            _LIBC.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
        )
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        _check(
            _LIBC.syscall(
                _SYS_LANDLOCK_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
        )
    finally:
        os.close(fd)


def _verify_landlock(workdir: str, abi: int) -> None:
    """Restricts writes to a subdirectory of ``workdir`` and checks that it holds.

    Raises:
        OSError: A rule could not be installed, or a write next to the allowed
            directory (which file permissions allow) was not refused.
    """
    inner = os.path.join(workdir, "inner")
    os.mkdir(inner)
    _restrict_writes(inner, abi)
    os.close(os.open(os.path.join(inner, "probe"), os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        os.close(os.open(os.path.join(workdir, "probe"), os.O_WRONLY | os.O_CREAT, 0o600))
    except PermissionError:
        return
    raise OSError(errno.EPERM, "a write outside the allowed directory was not refused")


def _prctl(option: int, value: int) -> None:
    if _LIBC is None:
        raise OSError(errno.ENOSYS, "no libc")
    _check(
        _LIBC.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(value),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    )


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _errno_text(err: OSError) -> str:
    name = errno.errorcode.get(err.errno or 0, "")
    return f"{name}: {err.strerror}" if name else str(err)
