"""A call's own view of the filesystem: a mount namespace with a minimal, read-only root.

:func:`build_root` runs in the child while it still holds ``CAP_SYS_ADMIN`` (as root, or
in a user namespace of its own), after ``unshare(CLONE_NEWNS)``. It assembles a new root
in a tmpfs mounted on the call's (empty) working directory and moves into it with
``pivot_root``; the host's root is then detached. What the child sees:

* the trees in ``readable`` (the interpreter, its packages, the packages the zygote
  loaded, the data a target needs, system libraries), bind-mounted **read-only**,
  ``nosuid``, ``nodev``, at their own paths (a symlinked path is recreated as the link);
  the path components above them are directories of the tmpfs (mode 0755), so an
  unprivileged user can reach an interpreter that lives under ``/root``;
* a few files of ``/etc`` (the loader cache, ``passwd``, ``group``, the local time);
* ``/dev`` with ``null``, ``zero``, ``full``, ``random``, ``urandom`` and GPU nodes;
* ``/proc``, a fresh one of the call's PID namespace (only the call's processes), and
  ``/sys`` read-only;
* ``/call``, the working directory: its own tmpfs of ``disk_mb`` MiB and ``max_files``
  inodes, owned by the child's user. Everything else is read-only.

Nothing of it outlives the call: the mount namespace, and so both tmpfs, go away with the
call's last process, and the host's working directory stays empty.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence

from llmatic.sandbox._syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
    pivot_root,
    umount,
)

#: The call's working directory inside its root.
CALL_DIR = "/call"
#: Files of /etc a Python process may read: the loader cache and name lookups.
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/nsswitch.conf",
)
#: System trees every child needs (the loader, libc, shared libraries).
SYSTEM_TREES = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
#: Device nodes bound into /dev (the GPU's included).
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/nvidia*")
_RO = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV


def build_root(
    mountpoint: str,
    readable: Sequence[str],
    *,
    disk_mb: int,
    max_files: int,
    owner: Sequence[int] | None,
) -> None:
    """Builds the root described above on ``mountpoint`` and moves this process into it.

    Call it in a fresh mount namespace, as the single thread of the process. Afterwards
    the current directory is :data:`CALL_DIR`.

    Args:
        mountpoint: An empty directory (the call's working directory on the host).
        readable: Trees and files to bind read-only at their own paths, as
            :func:`bind_list` gives them (none inside another).
        disk_mb: Size of the working directory's tmpfs, in MiB.
        max_files: Inodes of the working directory's tmpfs (files and directories).
        owner: ``[uid, gid]`` that will own the working directory; ``None`` for ours.

    Raises:
        OSError: A mount failed.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", mountpoint, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=0755")
    root = mountpoint
    for path in readable:
        _bind(path, root + path, recursive=True)
    for pattern in DEVICES:
        for path in glob.glob(pattern):
            _bind(path, root + path, read_only=False)
    if os.path.isdir("/dev/dri"):
        _bind("/dev/dri", root + "/dev/dri", read_only=False, recursive=True)
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir("/sys"):
        _bind("/sys", root + "/sys", recursive=True)
    call = root + CALL_DIR
    os.makedirs(call)
    uid, gid = owner if owner is not None else (os.getuid(), os.getgid())
    options = f"size={int(disk_mb)}m,nr_inodes={int(max_files)},mode=0700,uid={uid},gid={gid}"
    mount("tmpfs", call, "tmpfs", MS_NOSUID | MS_NODEV, options)
    if not os.path.lexists(root + "/tmp"):  # a bound tree may live under /tmp
        os.symlink(CALL_DIR, root + "/tmp")
    mount(None, root, None, _RO)
    os.chdir(root)
    pivot_root(".", ".")  # the old root ends up stacked on the new one: detach it
    umount(".", MNT_DETACH)
    os.chdir(CALL_DIR)


def bind_list(readable: Iterable[str]) -> list[str]:
    """The paths to bind: existing ones, without those inside another, /etc and system trees."""
    paths = [*SYSTEM_TREES, *ETC_FILES]
    for path in readable:
        paths.append(os.path.abspath(path))
        real = os.path.realpath(path)
        if real != os.path.abspath(path):
            paths.append(real)  # modules' files may name either
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not os.path.lexists(path) or any(_inside(path, other) for other in kept):
            continue
        kept.append(path)
    return kept


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _bind(source: str, target: str, *, read_only: bool = True, recursive: bool = False) -> None:
    if os.path.islink(source):
        # /lib -> usr/lib and the like: the same link, resolved inside the new root.
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        mount(None, target, None, _RO)
