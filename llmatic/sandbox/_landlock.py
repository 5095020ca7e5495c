"""Landlock rules for a sandboxed child: what it may read, write and connect to.

Landlock (Linux 5.13+) is an unprivileged access-control layer that holds whatever the
process's user or capabilities: once a child restricts itself, no file outside the
allowed trees can be opened for the rights the ruleset handles, by it or by anything it
starts. :func:`restrict` installs one ruleset:

* **reads** (read files, list directories, execute) only beneath ``readable`` (the
  interpreter, its packages, the project's own package, the data a target needs, a few
  ``/dev``, ``/proc`` and ``/sys`` entries) and the call's working directory;
* **writes** of any kind (create, write, truncate, remove, rename, link, device ioctls)
  only beneath the working directory, plus writing to ``/dev/null``-like devices and GPU
  device nodes;
* from ABI 4, every TCP bind and connect; from ABI 6, signals to processes outside the
  sandbox and connections to abstract Unix sockets outside it.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
from collections.abc import Iterable

from llmatic.sandbox._syscalls import LIBC, check, prctl

# Landlock's system calls have the same numbers on every architecture but alpha.
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# Filesystem access rights (ABI 1, then the ABI that added each later one).
_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
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
_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
#: Device files the child may write (and, from ABI 5, ioctl): sinks and GPUs.
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/nvidia*", "/dev/dri")
#: Device files the child may read besides those.
READABLE_DEVICES = ("/dev/random", "/dev/urandom")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 or less when there is none."""
    if LIBC is None:
        return 0
    return int(
        LIBC.syscall(
            _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
        )
    )


def restrict(workdir: str, abi: int, *, readable: Iterable[str] | None) -> None:
    """Confines this process (and all it starts) as the module docstring says.

    Args:
        workdir: The call's working directory: the only writable tree.
        abi: The kernel's Landlock ABI (from :func:`abi_version`), at least 1.
        readable: Trees the process may read beneath (missing ones are skipped);
            ``None`` leaves reads unrestricted.

    Raises:
        OSError: A rule could not be installed.
    """
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
    handled = write_fs | (0 if readable is None else _READ)
    attr = _RulesetAttr(handled_access_fs=handled)
    size = ctypes.sizeof(ctypes.c_uint64)
    if abi >= 4:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
        size = 2 * ctypes.sizeof(ctypes.c_uint64)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = ctypes.sizeof(_RulesetAttr)
    ruleset = check(LIBC.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0))
    try:
        _allow(ruleset, workdir, handled)
        device_rights = handled & (_FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV | _READ)
        for path in _expand(WRITABLE_DEVICES):
            _allow(ruleset, path, device_rights)
        if readable is not None:
            for path in _expand(READABLE_DEVICES):
                _allow(ruleset, path, _FS_READ_FILE)
            for path in readable:
                if os.path.exists(path):
                    _allow(ruleset, path, _READ if os.path.isdir(path) else _FS_READ_FILE)
        prctl(_PR_SET_NO_NEW_PRIVS, 1)
        check(LIBC.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)))
    finally:
        os.close(ruleset)


def verify(workdir: str, abi: int) -> None:
    """Restricts this process to a subdirectory of ``workdir`` and checks that it holds.

    Run it in a throwaway process: it ends confined.

    Raises:
        OSError: A rule could not be installed, or a write or read next to the allowed
            directory (which file permissions allow) was not refused.
    """
    inner = os.path.join(workdir, "inner")
    os.mkdir(inner)
    outside = os.path.join(workdir, "outside")
    with open(outside, "w") as file:
        file.write("x")
    restrict(inner, abi, readable=[])
    os.close(os.open(os.path.join(inner, "probe"), os.O_WRONLY | os.O_CREAT, 0o600))
    for flags in (os.O_WRONLY | os.O_CREAT, os.O_RDONLY):
        try:
            os.close(os.open(outside, flags, 0o600))
        except PermissionError:
            continue
        raise OSError(errno.EPERM, "an access outside the allowed directory was not refused")


def _expand(patterns: Iterable[str]) -> list[str]:
    return [path for pattern in patterns for path in glob.glob(pattern)]


def _allow(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS  # directory-only rights on a file are an error
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        check(
            LIBC.syscall(
                _SYS_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
        )
    finally:
        os.close(fd)
