"""Thin ctypes wrappers for the Linux system calls the sandbox needs and Python lacks.

``os.unshare``, ``os.setns`` and ``mount`` are not in CPython 3.11, so they go through
libc. Every wrapper raises :class:`OSError` with the errno on failure.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

try:
    LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    LIBC.syscall.restype = ctypes.c_long
except (OSError, AttributeError):
    LIBC = None
if not sys.platform.startswith("linux"):
    LIBC = None

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
#: Every namespace flag of clone/unshare.
CLONE_NAMESPACES = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36


def check(result: int) -> int:
    """``result``, or the errno of the failed call as :class:`OSError`."""
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _libc() -> ctypes.CDLL:
    if LIBC is None:
        raise OSError(errno.ENOSYS, "no Linux libc")
    return LIBC


def prctl(option: int, value: int) -> None:
    check(
        _libc().prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(value),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    )


def unshare(flags: int) -> None:
    check(_libc().unshare(ctypes.c_int(flags)))


def setns(fd: int, flags: int) -> None:
    check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(flags)))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        _libc().mount(
            None if source is None else source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        )
    )


def umount(target: str, flags: int = 0) -> None:
    check(_libc().umount2(target.encode(), ctypes.c_int(flags)))


def pivot_root(new_root: str, put_old: str) -> None:
    # pivot_root has no glibc wrapper: 155 on x86_64, 41 on the generic table (arm64).
    number = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {os.uname().machine}")
    check(_libc().syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()))


def errno_text(err: OSError) -> str:
    """``"EPERM: Operation not permitted"`` for an :class:`OSError`."""
    name = errno.errorcode.get(err.errno or 0, "")
    return f"{name}: {err.strerror}" if name else str(err)
