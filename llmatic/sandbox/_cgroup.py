"""A control group per call: memory and process budgets for the call as a whole.

Rlimits bind one process each; a call that forks holds several times ``RLIMIT_AS``, and
``RLIMIT_NPROC`` counts every process of a user on the machine. A cgroup per call fixes
both: ``memory`` caps the resident memory (and tmpfs pages) of all the call's processes
together, and the kernel's OOM killer acts inside the call only; ``pids`` caps how many
processes and threads the call has, whoever else runs as the same user.

The zygote (root, or a user the hierarchy is delegated to) makes the groups under its own
cgroup, with cgroup v1 (one hierarchy per controller) or v2 (one hierarchy, where the
zygote's cgroup may enable ``memory`` and ``pids`` for its children). The child joins
them before it drops its privileges; the zygote reads whether the OOM killer struck and
removes the groups after the call.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass

_CONTROLLERS = ("memory", "pids")
#: The folder a zygote makes for its calls' groups (``CgroupRoot.detect``'s ``name``).
_ZYGOTE_GROUP = re.compile(r"llmatic-(\d+)")


@dataclass(frozen=True)
class CgroupRoot:
    """Where a zygote makes its calls' groups.

    Args:
        version: 1 or 2.
        parents: ``{controller: directory}``; in v2 both controllers share one directory.
    """

    version: int
    parents: dict[str, str]

    @classmethod
    def detect(cls, name: str) -> tuple[CgroupRoot | None, str | None]:
        """The usable hierarchy (or None) and, when there is none, why.

        ``name`` is a directory made under this process's cgroup for the zygote's calls
        (removed when it is empty again); making it is the test of permission.
        """
        try:
            memberships = _memberships()
            mounts = _mounts()
        except OSError as err:
            return None, f"cannot read the cgroup hierarchy ({err})"
        v1 = {}
        for controller in _CONTROLLERS:
            mountpoint = mounts.get(controller)
            path = memberships.get(controller)
            if mountpoint is not None and path is not None:
                v1[controller] = os.path.join(mountpoint, path.lstrip("/"), name)
        if len(v1) == len(_CONTROLLERS):
            try:
                for directory in v1.values():
                    sweep_stale(os.path.dirname(directory))
                    os.makedirs(directory, exist_ok=True)
                return cls(1, v1), None
            except OSError as err:
                return None, f"cannot make cgroups (v1): {err.strerror}"
        unified, path = mounts.get("cgroup2"), memberships.get("")
        if unified is None or path is None:
            return None, "no memory and pids cgroup controllers are mounted"
        own = os.path.join(unified, path.lstrip("/"))
        try:
            with open(os.path.join(own, "cgroup.controllers")) as file:
                available = file.read().split()
            if not set(_CONTROLLERS) <= set(available):
                return None, f"cgroup v2 has no {' and '.join(_CONTROLLERS)} controllers here"
            directory = os.path.join(own, name)
            sweep_stale(own)
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, "cgroup.subtree_control"), "w") as file:
                file.write(" ".join(f"+{c}" for c in _CONTROLLERS))
        except OSError as err:
            return None, f"cannot make cgroups (v2): {err.strerror}"
        return cls(2, {c: directory for c in _CONTROLLERS}), None

    def create(self, call: str, *, memory_bytes: int | None, max_processes: int) -> list[str]:
        """Makes the call's groups with its limits; their directories.

        Raises:
            OSError: A group could not be made or limited.
        """
        directories = sorted({os.path.join(parent, call) for parent in self.parents.values()})
        for directory in directories:
            os.mkdir(directory)
        memory = os.path.join(self.parents["memory"], call)
        pids = os.path.join(self.parents["pids"], call)
        if self.version == 1:
            if memory_bytes is not None:
                _write(memory, "memory.limit_in_bytes", memory_bytes)
                with contextlib.suppress(OSError):  # only with swap accounting
                    _write(memory, "memory.memsw.limit_in_bytes", memory_bytes)
        elif memory_bytes is not None:
            _write(memory, "memory.max", memory_bytes)
            with contextlib.suppress(OSError):
                _write(memory, "memory.swap.max", 0)
        _write(pids, "pids.max", max_processes)
        return directories

    def oom_killed(self, call: str) -> bool:
        """Whether the kernel's OOM killer killed a process of the call."""
        memory = os.path.join(self.parents["memory"], call)
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            with open(os.path.join(memory, name)) as file:
                for line in file:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self, directories: list[str]) -> list[str]:
        """Removes the call's groups; those still busy (processes exiting), to retry."""
        busy = []
        for directory in directories:
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                busy.append(directory)
        return busy

    def close(self) -> None:
        """Removes the zygote's own directories (when empty)."""
        for directory in set(self.parents.values()):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def sweep_stale(parent: str) -> None:
    """Removes the groups of zygotes that are gone (killed before they could clean up).

    Only ``llmatic-<pid>`` folders whose process no longer exists, and within them only
    call groups that hold no process; never raises.
    """
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        match = _ZYGOTE_GROUP.fullmatch(entry)
        if match is None or _alive(int(match[1])):
            continue
        folder = os.path.join(parent, entry)
        with contextlib.suppress(OSError):
            for call in os.listdir(folder):
                if os.path.isdir(os.path.join(folder, call)):
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(folder, call))  # refused while processes live
            os.rmdir(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_and_remove(directories: list[str], timeout_s: float = 2.0) -> None:
    """SIGKILLs every process in a dead zygote's call groups, then removes them (and the
    zygote's folder, once empty). The parent's last resort; never raises."""
    until = time.monotonic() + timeout_s
    for directory in directories:
        while time.monotonic() < until:
            try:
                with open(os.path.join(directory, "cgroup.procs")) as file:
                    pids = [int(line) for line in file if line.strip()]
            except (OSError, ValueError):
                break
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        for path in (directory, os.path.dirname(directory)):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def join(directories: list[str]) -> None:
    """Moves this process into the call's groups (before it forks anything).

    Raises:
        OSError: Joining failed.
    """
    for directory in directories:
        with open(os.path.join(directory, "cgroup.procs"), "w") as file:
            file.write("0")


def _write(directory: str, name: str, value: int) -> None:
    with open(os.path.join(directory, name), "w") as file:
        file.write(str(value))


def _memberships() -> dict[str, str]:
    """``{controller: path}`` from /proc/self/cgroup; ``""`` is the v2 hierarchy."""
    result: dict[str, str] = {}
    with open("/proc/self/cgroup") as file:
        for line in file:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                result[controller] = path
    return result


def _mounts() -> dict[str, str]:
    """``{controller: mount point}`` of cgroup v1 hierarchies, and ``"cgroup2"``."""
    result: dict[str, str] = {}
    with open("/proc/self/mountinfo") as file:
        for line in file:
            fields = line.split()
            separator = fields.index("-")
            fstype, options = fields[separator + 1], fields[separator + 3]
            mountpoint = fields[4]
            if fstype == "cgroup2":
                result.setdefault("cgroup2", mountpoint)
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option in _CONTROLLERS:
                        result.setdefault(option, mountpoint)
    return result
