"""A seccomp filter for sandboxed children: system calls a network never makes are refused.

Installed last, right before untrusted code runs, after the child has made its
namespaces, mounts and Landlock rules (which need some of these calls). The filter
returns ``EPERM`` (and the process carries on) for:

* making or entering namespaces (``unshare``, ``setns``, ``clone`` with a namespace
  flag; ``clone3``, whose flags a filter cannot read, answers ``ENOSYS`` so that libc
  falls back to ``clone``): no user namespace, so no capabilities of any kind;
* mounting and changing root (``mount``, ``umount2``, ``pivot_root``, ``chroot``, the new
  mount API);
* changing file metadata (``chmod``, ``chown``, ``utime*``, ``*setxattr``,
  ``*removexattr`` and their variants): times, modes, owners and extended attributes of
  any file, the call's own included;
* Unix-domain sockets (``socket(AF_UNIX, ...)``; ``socketpair`` stays): no connection
  to a listener outside, by path or abstract name;
* System V IPC objects (``shmget``, ``semget``, ``msgget``), which would outlive the call
  where it has no IPC namespace (POSIX shared memory is a file: the call's own);
* tracing and reading other processes (``ptrace``, ``process_vm_readv``/``writev``),
  the kernel keyrings, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring``
  (whose operations would bypass this filter), ``open_by_handle_at`` and
  ``name_to_handle_at``, ``syslog``;
* on x86_64, every x32 system call; a foreign architecture is killed.

Only x86_64 and aarch64 have tables here; elsewhere the filter is not installed (the
probe says so).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from llmatic.sandbox._syscalls import CLONE_NAMESPACES, LIBC, PR_SET_NO_NEW_PRIVS, check, prctl

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LD_W_ABS = 0x20
_JEQ = 0x15
_JSET = 0x45
_JGE = 0x35
_RET = 0x06
_AF_UNIX = 1
_X32_BIT = 0x40000000

#: The refused calls with their numbers, per machine, from the kernel's syscall tables.
_X86_64 = """
shmget 29  socket 41  clone 56  semget 64  msgget 68  chmod 90  fchmod 91  chown 92
fchown 93  lchown 94  ptrace 101  syslog 103  utime 132  pivot_root 155  chroot 161
mount 165  umount2 166  setxattr 188  lsetxattr 189  fsetxattr 190  removexattr 197
lremovexattr 198  fremovexattr 199  utimes 235  add_key 248  request_key 249  keyctl 250
fchownat 260  futimesat 261  fchmodat 268  unshare 272  utimensat 280  perf_event_open 298
name_to_handle_at 303  open_by_handle_at 304  setns 308  process_vm_readv 310
process_vm_writev 311  bpf 321  userfaultfd 323  io_uring_setup 425  io_uring_enter 426
io_uring_register 427  open_tree 428  move_mount 429  fsopen 430  fsconfig 431
fsmount 432  fspick 433  clone3 435  mount_setattr 442  fchmodat2 452  setxattrat 463
removexattrat 466
"""
#: The generic table (arm64 has no chmod, chown, utime or utimes of its own).
_AARCH64 = """
setxattr 5  lsetxattr 6  fsetxattr 7  removexattr 14  lremovexattr 15  fremovexattr 16
umount2 39  mount 40  pivot_root 41  chroot 51  fchmod 52  fchmodat 53  fchownat 54
fchown 55  utimensat 88  unshare 97  syslog 116  ptrace 117  msgget 186  semget 190
shmget 194  socket 198  add_key 217  request_key 218  keyctl 219  clone 220
perf_event_open 241  name_to_handle_at 264  open_by_handle_at 265  setns 268
process_vm_readv 270  process_vm_writev 271  bpf 280  userfaultfd 282  io_uring_setup 425
io_uring_enter 426  io_uring_register 427  open_tree 428  move_mount 429  fsopen 430
fsconfig 431  fsmount 432  fspick 433  clone3 435  mount_setattr 442  fchmodat2 452
setxattrat 463  removexattrat 466
"""


def _parse(table: str) -> dict[str, int]:
    words = table.split()
    return {name: int(number) for name, number in zip(words[::2], words[1::2], strict=True)}


#: (audit arch, {name: number}) per machine.
_TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, _parse(_X86_64)),
    "aarch64": (0xC00000B7, _parse(_AARCH64)),
}
#: Calls handled by their own rule below rather than refused outright.
_SPECIAL = frozenset({"clone", "clone3", "socket"})


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def supported() -> bool:
    """Whether this machine has a table here (and Linux)."""
    return LIBC is not None and os.uname().machine in _TABLES


def install() -> None:
    """Installs the filter on this process and all it starts; irreversible.

    Raises:
        OSError: Not supported here, or the kernel refused the filter.
    """
    machine = os.uname().machine
    if LIBC is None or machine not in _TABLES:
        raise OSError(errno.ENOSYS, f"no seccomp table for {machine}")
    program = build_program(machine)
    buffer = ctypes.create_string_buffer(program)
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    check(
        LIBC.prctl(
            ctypes.c_int(_PR_SET_SECCOMP),
            ctypes.c_ulong(_SECCOMP_MODE_FILTER),
            ctypes.byref(fprog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    )


def build_program(machine: str) -> bytes:
    """The classic-BPF program for ``machine``, as the kernel reads it."""
    arch, numbers = _TABLES[machine]
    refused = sorted(number for name, number in numbers.items() if name not in _SPECIAL)
    # Each instruction: (code, jump-if-true, jump-if-false, k). Jumps are relative and
    # filled in below against the return instructions at the end.
    body: list[tuple[int, object, object, int]] = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        body.append((_JGE, "eperm", 0, _X32_BIT))
    body += [(_JEQ, "eperm", 0, number) for number in refused]
    body += [
        (_JEQ, "enosys", 0, numbers["clone3"]),
        (_JEQ, 0, 2, numbers["clone"]),
        (_LD_W_ABS, 0, 0, 16),  # low word of args[0]: the flags
        (_JSET, "eperm", "allow", CLONE_NAMESPACES),
        (_JEQ, 0, "allow", numbers["socket"]),
        (_LD_W_ABS, 0, 0, 16),  # low word of args[0]: the address family
        (_JEQ, "eperm", "allow", _AF_UNIX),
    ]
    returns = {
        "allow": (_RET, 0, 0, _RET_ALLOW),
        "eperm": (_RET, 0, 0, _RET_ERRNO | errno.EPERM),
        "enosys": (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
    }
    where = {label: len(body) + i for i, label in enumerate(returns)}
    program = b""
    for index, (code, true, false, k) in enumerate(body):
        jumps = [where[j] - index - 1 if isinstance(j, str) else j for j in (true, false)]
        program += struct.pack("HBBI", code, jumps[0], jumps[1], k)
    for code, true, false, k in returns.values():
        program += struct.pack("HBBI", code, true, false, k)
    return program
