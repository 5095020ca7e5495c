"""Tests of ``Sandbox.run(files=...)``: files a call may read or write, passed as descriptors."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llmatic.sandbox import Sandbox, SandboxLimits, SandboxResult, attached

try:
    import sandbox_targets
except ImportError:  # tests/ became a package
    from tests import sandbox_targets

TARGETS = sandbox_targets.__name__
RUN_CODE = f"{TARGETS}:run_code"
TRANSFORM = f"{TARGETS}:transform_attached"
WRITE = f"{TARGETS}:write_attached"
#: The cap on a file the child writes (``max_file_mb``), in bytes.
CAP = 1024 * 1024
#: The sandboxes the tests run against: the full plan, the fallback, no confinement.
PLANS = {
    "private_root": SandboxLimits(wall_time_s=10.0, memory_mb=2048, max_file_mb=1),
    "host_root": SandboxLimits(wall_time_s=10.0, memory_mb=2048, max_file_mb=1, private_root=False),
    "unconfined": SandboxLimits(wall_time_s=10.0, memory_mb=2048, max_file_mb=1, confine=False),
}


@pytest.fixture(scope="module")
def temp_root() -> Iterator[Path]:
    """Where the calls' directories and the tests' files go: ``nobody`` can reach it."""
    root = Path(tempfile.mkdtemp(prefix="llmatic-test-sandbox-files-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=list(PLANS))
def box(request: pytest.FixtureRequest, temp_root: Path) -> Iterator[Sandbox]:
    with Sandbox(limits=PLANS[request.param], preload=[TARGETS], temp_root=temp_root) as sandbox:
        yield sandbox


@pytest.fixture
def folder(temp_root: Path) -> Iterator[Path]:
    """A fresh folder for one test's files, world-writable: only the sandbox can refuse."""
    path = Path(tempfile.mkdtemp(dir=temp_root))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fd_targets(pid: int) -> list[str]:
    """Where the descriptors of process ``pid`` lead."""
    links = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            links.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return links


def transform(box: Sandbox, source: Path, target: Path) -> SandboxResult:
    return box.run(TRANSFORM, {}, files={"src": (source, "r"), "dst": (target, "w")})


def test_a_call_reads_one_file_and_writes_another(box: Sandbox, folder: Path) -> None:
    source, target = folder / "parent.pt", folder / "child.pt"
    data = bytes(range(256)) + b"weights of the parent"
    source.write_bytes(data)
    result = transform(box, source, target)
    assert result.ok, result.error
    assert result.value["read"] == len(data)
    assert target.read_bytes() == data[::-1].upper()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert source.read_bytes() == data  # untouched
    # A "w" file is truncated: a second call leaves only what it wrote.
    source.write_bytes(b"ab")
    assert transform(box, source, target).ok
    assert target.read_bytes() == b"BA"


def test_a_write_past_the_file_size_cap_fails(box: Sandbox, folder: Path) -> None:
    target = folder / "big"
    result = box.run(WRITE, {"name": "out", "bytes": 2 * CAP}, files={"out": (target, "w")})
    assert not result.ok and result.error_kind == "exception"
    assert "File too large" in result.error, result.error  # EFBIG
    assert 0 < target.stat().st_size <= CAP
    # Within the cap it works.
    result = box.run(WRITE, {"name": "out", "bytes": CAP}, files={"out": (target, "w")})
    assert result.ok, result.error
    assert target.stat().st_size == CAP


def test_a_read_file_cannot_be_written(box: Sandbox, folder: Path) -> None:
    source = folder / "parent.pt"
    source.write_bytes(b"keep me")
    result = box.run(WRITE, {"name": "src", "bytes": 10}, files={"src": (source, "r")})
    assert not result.ok and "Bad file descriptor" in result.error, result.error
    assert source.read_bytes() == b"keep me"


def test_an_unknown_name_is_a_lookup_error_in_the_child(box: Sandbox) -> None:
    result = box.run(WRITE, {"name": "nope", "bytes": 1})
    assert not result.ok and "LookupError" in result.error and "'nope'" in result.error
    with pytest.raises(LookupError, match="no file 'x'"):
        attached("x")  # not a sandboxed call


# Untrusted code that has a read-only descriptor and looks for a way to write: to the
# descriptor, to the file by its path or through /proc, to the file's directory.
HUNT_FOR_A_WAY_TO_WRITE = """
import errno, os
from llmatic.sandbox import attached
fd = attached("src")
link = os.readlink(f"/proc/self/fd/{fd}")
info = os.fstat(fd)
folder = os.path.dirname(link.replace(" (deleted)", ""))
attempts = {}

def attempt(label, action):
    try:
        action()
        attempts[label] = "done"
    except OSError as err:
        attempts[label] = errno.errorcode.get(err.errno, str(err.errno))

def reopen(path, flags):
    os.close(os.open(path, flags, 0o666))

attempt("write the descriptor", lambda: os.write(fd, b"x"))
attempt("truncate the descriptor", lambda: os.ftruncate(fd, 0))
attempt("chmod the descriptor", lambda: os.fchmod(fd, 0o777))
attempt("reopen it for writing", lambda: reopen(f"/proc/self/fd/{fd}", os.O_WRONLY))
attempt("reopen it read-write", lambda: reopen(f"/proc/self/fd/{fd}", os.O_RDWR))
attempt("open its path for writing", lambda: reopen(link, os.O_WRONLY | os.O_APPEND))
attempt("open the folder", lambda: reopen(folder, os.O_RDONLY | os.O_DIRECTORY))
attempt("create in the folder", lambda: reopen(folder + "/planted", os.O_WRONLY | os.O_CREAT))
attempt("create beside the descriptor", lambda: os.close(
    os.open("planted", os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=fd)))
attempt("create through /proc", lambda: reopen(
    f"/proc/self/fd/{fd}/../planted", os.O_WRONLY | os.O_CREAT))
attempt("rename it", lambda: os.rename(link, link + ".moved"))
attempt("unlink it", lambda: os.unlink(link))
attempt("mkdir in the folder", lambda: os.mkdir(folder + "/planted-dir"))
result = {"link": link, "inode": info.st_ino, "attempts": attempts}
"""


def test_hostile_code_gets_no_write_access_through_a_read_file(box: Sandbox, folder: Path) -> None:
    isolation = box.isolation
    if not isolation.landlock_abi:
        # Without Landlock a reopen through /proc/self/fd is bound by the file's
        # permissions only, and this file is world-writable (see docs/sandbox.md).
        pytest.skip("no Landlock for this plan: write access is bound by file permissions")
    source = folder / "parent.pt"
    source.write_bytes(b"the parent's weights")
    source.chmod(0o666)
    before = sorted(os.listdir(folder))
    result = box.run(RUN_CODE, {"code": HUNT_FOR_A_WAY_TO_WRITE}, files={"src": (source, "r")})
    assert result.ok, result.error
    assert result.value["inode"] == source.stat().st_ino
    assert set(result.value["attempts"].values()).isdisjoint({"done"}), result.value
    assert sorted(os.listdir(folder)) == before
    assert source.read_bytes() == b"the parent's weights"
    assert stat.S_IMODE(source.stat().st_mode) == 0o666


def test_the_parent_leaks_no_descriptor(box: Sandbox, folder: Path) -> None:
    source, target = folder / "parent.pt", folder / "child.pt"
    source.write_bytes(b"x" * 1000)
    assert transform(box, source, target).ok  # the zygote is up
    before = open_fds()
    for index in range(20):
        if index % 5 == 4:  # failures on the trusted side close what was opened
            with pytest.raises(FileNotFoundError):
                box.run(TRANSFORM, {}, files={"src": (source, "r"), "b": (folder / "no", "r")})
            with pytest.raises(ValueError):
                box.run(TRANSFORM, {}, files={"src": (source, "r"), "dst": (source, "w")})
        elif index % 5 == 3:  # a failing call
            result = box.run(WRITE, {"name": "out", "bytes": 2 * CAP}, files={"out": (target, "w")})
            assert not result.ok
        else:
            result = transform(box, source, target)
            assert result.ok, result.error
    assert open_fds() == before
    # Nor does the zygote keep a copy.
    assert not [link for link in fd_targets(box.server_pid) if str(folder) in link]


def test_only_the_child_holds_the_descriptors(box: Sandbox, folder: Path) -> None:
    target = folder / "child.pt"
    results: list[SandboxResult] = []
    payload = {"name": "out", "bytes": 5, "sleep": 1.5}
    thread = threading.Thread(
        target=lambda: results.append(box.run(WRITE, payload, files={"out": (target, "w")}))
    )
    thread.start()
    try:
        until = time.monotonic() + 10.0
        while not (target.exists() and target.stat().st_size == 5):
            assert time.monotonic() < until, "the child never wrote"
            time.sleep(0.02)
        children = psutil.Process(box.server_pid).children(recursive=True)
        held = [link for child in children for link in fd_targets(child.pid)]
        assert str(target) in held
        assert str(target) not in fd_targets(box.server_pid)
    finally:
        thread.join()
    assert results[0].ok, results[0].error


def test_concurrent_calls_each_get_their_own_files(box: Sandbox, folder: Path) -> None:
    failures: list[str] = []

    def work(tag: str) -> None:
        for index in range(4):
            source, target = folder / f"{tag}-{index}.in", folder / f"{tag}-{index}.out"
            data = f"{tag} {index} ".encode() * 100
            source.write_bytes(data)
            result = transform(box, source, target)
            if not result.ok or target.read_bytes() != data[::-1].upper():
                failures.append(f"{tag} {index}: {result.error}")

    threads = [threading.Thread(target=work, args=(tag,)) for tag in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_bad_files_are_refused_before_anything_starts(box: Sandbox, folder: Path) -> None:
    source, target = folder / "parent.pt", folder / "child.pt"
    source.write_bytes(b"parent")
    target.write_bytes(b"earlier")
    for name in ("Big", "1st", "a-b", "x" * 33, "", 7):
        with pytest.raises(ValueError, match="name must match"):
            box.run(TRANSFORM, {}, files={name: (source, "r")})
    with pytest.raises(ValueError, match="at most 4"):
        box.run(TRANSFORM, {}, files={f"f{i}": (source, "r") for i in range(5)})
    for spec in ((source, "rw"), (source, "a"), (source,), source):
        with pytest.raises(ValueError, match="files\\['src'\\]"):
            box.run(TRANSFORM, {}, files={"src": spec})
    with pytest.raises(ValueError, match="not a regular file"):
        box.run(TRANSFORM, {}, files={"src": (folder, "r")})
    with pytest.raises(ValueError, match="also attached"):
        box.run(TRANSFORM, {}, files={"src": (source, "r"), "dst": (source, "w")})
    # A missing "r" file: a clear error, and the "w" file (listed first) is untouched.
    with pytest.raises(FileNotFoundError, match="'src'.*no such file") as caught:
        box.run(TRANSFORM, {}, files={"dst": (target, "w"), "src": (folder / "missing", "r")})
    assert caught.value.filename == str(folder / "missing")
    assert target.read_bytes() == b"earlier"
    with pytest.raises(FileNotFoundError, match="directory does not exist"):
        box.run(TRANSFORM, {}, files={"src": (source, "r"), "dst": (folder / "no" / "x", "w")})
    # A symbolic link as a "w" file is refused, and what it points to is untouched.
    (folder / "link").symlink_to(source)
    with pytest.raises(OSError):
        box.run(TRANSFORM, {}, files={"src": (target, "r"), "dst": (folder / "link", "w")})
    assert source.read_bytes() == b"parent"
    with pytest.raises(ValueError, match="JSON"):  # before any file is touched
        box.run(TRANSFORM, {"x": object()}, files={"dst": (source, "w")})
    assert source.read_bytes() == b"parent"
