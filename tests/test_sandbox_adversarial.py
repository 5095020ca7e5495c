"""Hostile network code against the static check and, with the check bypassed, the sandbox.

Every program is an NB201 ``Cell`` (what the search's generated code is) with hostile
lines in its constructor, its forward pass or at the top. Each one goes through the real
path (:meth:`CellEvaluator.arch_of`: the static check in this process, then the sandbox,
where the child checks again) and must end as a recorded failure of the expected kind.
Those the static check stops run again with the check bypassed (a test-only target), to
show the wall behind the filter. After every run the sandbox must still serve a normal
call correctly, and nothing may have changed outside: no file in a fake home or project
folder (world-writable, so only the sandbox can stop a write there) nor in the real ones,
no process left, no working directory left, no connection to a loopback listener, no
secret in what came back, the zygote alive. docs/sandbox.md tabulates the cases.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from llmatic.errors import CandidateError
from llmatic.evaluation import CellEvaluator
from llmatic.nb201.cell import arch_to_code
from llmatic.sandbox import Sandbox, SandboxLimits, SandboxResult, check_code

try:
    import sandbox_targets
except ImportError:  # tests/ became a package
    from tests import sandbox_targets

TARGETS = sandbox_targets.__name__
ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
#: What a normal call after each hostile one must map (a different cell from ARCH).
CONTROL_ARCH = "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|"
SECRET_NAME = "LLMATIC_TEST_SECRET"
SECRET = "adversarial-" + uuid.uuid4().hex
#: A unique name for files the hostile code tries to create in the real home and project.
ESCAPE_NAME = f".llmatic-adversarial-{uuid.uuid4().hex[:12]}"
REPO = Path(__file__).resolve().parents[1]
WALL_S = 2.0


def cell(*, top: str = "", init: str = "", forward: str = "") -> str:
    """The cell of ARCH with hostile lines at the top, in ``__init__`` and in ``forward``."""
    code = arch_to_code(ARCH)
    if init:
        head = "        super().__init__()\n"
        code = code.replace(head, head + textwrap.indent(textwrap.dedent(init), " " * 8))
    if forward:
        first = "        x1 = self.edge_0_1(x0)\n"
        code = code.replace(first, textwrap.indent(textwrap.dedent(forward), " " * 8) + first)
    return textwrap.dedent(top) + code


# Placeholders, filled in per run: @HOME@ and @PROJECT@ are world-writable fake folders
# (holding marker.txt), @REAL_HOME@ and @REAL_PROJECT@ unique paths in the real ones,
# @PORT@ and @UDP_PORT@ loopback listeners (TCP, UDP), @TEST_PID@ this process, @B64@ a
# base64 escape script.
ESCAPE_SCRIPT = (
    "import os\n"
    "os.system('touch @PROJECT@/pwned @REAL_PROJECT@')\n"
    "open('@HOME@/pwned', 'w').write('x')\n"
)


@dataclass(frozen=True)
class Hostile:
    """One hostile program and what must become of it.

    Args:
        id: Test id.
        code: The cell, with placeholders.
        checked: Failure kind through the real path (static check, then sandbox).
        bypassed: Outcomes allowed with the static check bypassed (a failure kind, or
            ``"ok"`` when the code runs to the end but its attempts fail); empty when
            the case needs no bypass (the static check does not stop it).
        stopped_by: What stops it behind the static check (for the docs table).
    """

    id: str
    code: str
    checked: str
    bypassed: frozenset[str] = frozenset()
    stopped_by: str = ""


def hostile(
    id: str, code: str, checked: str, bypassed: set[str] | None = None, stopped_by: str = ""
) -> Hostile:
    return Hostile(id, code, checked, frozenset(bypassed or ()), stopped_by)


SPIN = "def spin():\n    while True:\n        pass\n"

CASES = [
    hostile(
        "loop-in-init",
        cell(init="while True:\n    pass\n"),
        "timeout",
        stopped_by="wall-clock limit",
    ),
    hostile(
        "loop-in-forward",
        cell(forward="while True:\n    pass\n"),
        "timeout",
        stopped_by="wall-clock limit",
    ),
    hostile(
        "sleep-past-deadline",
        cell(top="import time\n", init="time.sleep(100)\n"),
        "forbidden_code",
        {"timeout"},
        "wall-clock limit",
    ),
    hostile(
        "fork-bomb-counted",
        cell(
            top="import os, time\n",
            init="""
            n = 0
            while True:
                try:
                    if os.fork() == 0:
                        time.sleep(1000)
                except OSError:
                    break
                n += 1
            raise RuntimeError(f'forked {n} processes, then the kernel said no')
            """,
        ),
        "forbidden_code",
        {"build_error"},
        "RLIMIT_NPROC (fork fails with EAGAIN), group kill afterwards",
    ),
    hostile(
        "fork-bomb-exponential",
        cell(
            top="import os\n",
            init="""
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """,
        ),
        "forbidden_code",
        {"timeout"},
        "RLIMIT_NPROC, then wall-clock limit and group kill",
    ),
    hostile(
        "fork-bomb-setsid-escape",
        cell(
            top="import os, time\n",
            init="""
            for _ in range(8):
                if os.fork() == 0:
                    os.setsid()
                    time.sleep(1000)
            """,
        ),
        "forbidden_code",
        {"ok"},
        "zygote kills orphans that left the process group",
    ),
    hostile(
        "fork-bomb-torch-multiprocessing",
        cell(
            top="import torch.multiprocessing as mp\n" + SPIN,
            init="""
            while True:
                try:
                    mp.Process(target=spin).start()
                except OSError:
                    pass
            """,
        ),
        "forbidden_code",
        {"timeout"},
        "RLIMIT_NPROC, then wall-clock limit and group kill",
    ),
    hostile(
        "thread-bomb",
        cell(
            top="import threading\n",
            init="""
            while True:
                threading.Thread(target=threading.Event().wait, daemon=True).start()
            """,
        ),
        "forbidden_code",
        {"build_error"},
        "RLIMIT_NPROC (threads count): can't start new thread",
    ),
    hostile(
        "memory-bomb-bytearray",
        cell(init="x = bytearray(100 * 2**30)\n"),
        "out_of_memory",
        stopped_by="RLIMIT_AS",
    ),
    hostile(
        "memory-bomb-torch-empty",
        cell(init="x = torch.empty(2**40, dtype=torch.uint8)\n"),
        "out_of_memory",
        stopped_by="RLIMIT_AS",
    ),
    hostile(
        "memory-bomb-growing",
        cell(
            forward="xs = []\nwhile True:\n    xs.append(torch.empty(2**28, dtype=torch.uint8))\n"
        ),
        "out_of_memory",
        stopped_by="RLIMIT_AS",
    ),
    hostile(
        "recursion-bomb",
        cell(top="def f(n):\n    return f(n + 1)\n", init="f(0)\n"),
        "build_error",
        stopped_by="Python's recursion limit",
    ),
    hostile(
        "recursion-segfault",
        # Through map() every level takes C stack: the C stack overflows, not the heap.
        cell(
            top="import sys\ndef f(n):\n    return list(map(f, [n + 1]))\n",
            init="sys.setrecursionlimit(10**8)\nf(0)\n",
        ),
        "forbidden_code",
        {"crashed"},
        "crash of the child only (SIGSEGV)",
    ),
    hostile(
        "segfault-ctypes",
        cell(top="import ctypes\n", init="ctypes.string_at(0)\n"),
        "forbidden_code",
        {"crashed"},
        "crash of the child only (SIGSEGV)",
    ),
    hostile(
        "segfault-faulthandler",
        cell(top="import faulthandler\n", init="faulthandler._sigsegv()\n"),
        "forbidden_code",
        {"crashed"},
        "crash of the child only (SIGSEGV)",
    ),
    hostile(
        "signal-alarm",
        cell(top="import signal\n", init="signal.alarm(1)\nwhile True:\n    pass\n"),
        "forbidden_code",
        {"crashed"},
        "crash of the child only (SIGALRM)",
    ),
    hostile(
        "write-home",
        cell(init="open('@HOME@/pwned', 'w').write('x')\nopen('@REAL_HOME@', 'w').write('x')\n"),
        "forbidden_code",
        {"build_error"},
        "Landlock (writes only in the call's directory)",
    ),
    hostile(
        "write-project",
        cell(
            init="open('@REAL_PROJECT@', 'w').write('x')\n"
            "open('@PROJECT@/model.py', 'w').write('x')\n"
        ),
        "forbidden_code",
        {"build_error"},
        "Landlock (writes only in the call's directory)",
    ),
    hostile(
        "delete-files",
        cell(top="import os\n", init="os.remove('@PROJECT@/marker.txt')\n"),
        "forbidden_code",
        {"build_error"},
        "Landlock (no removal outside)",
    ),
    hostile(
        "os-system",
        cell(
            top="import os\n", init="os.system('touch @PROJECT@/pwned @REAL_PROJECT@; sleep 100')\n"
        ),
        "forbidden_code",
        {"timeout"},
        "Landlock (inherited by the shell), then wall-clock limit",
    ),
    hostile(
        "socket-to-loopback",
        cell(
            top="import socket\n",
            init="socket.create_connection(('127.0.0.1', @PORT@), timeout=1).send(b'x')\n",
        ),
        "forbidden_code",
        {"build_error"},
        "Landlock TCP rules (and the network namespace behind them)",
    ),
    hostile(
        "udp-to-loopback",
        cell(
            top="import socket\n",
            init="socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
            "('127.0.0.1', @UDP_PORT@))\n",
        ),
        "forbidden_code",
        {"build_error"},
        "network namespace: its loopback is down (Landlock does not cover UDP)",
    ),
    hostile(
        "fill-the-disk",
        cell(init="with open('big.bin', 'wb') as f:\n    f.write(bytes(2**27))\n"),
        "forbidden_code",
        {"build_error"},
        "RLIMIT_FSIZE: the write fails with EFBIG",
    ),
    hostile(
        "read-secrets",
        cell(
            top="import os\n",
            init="""
            found, denied = [], []
            sources = {'environ': '\\n'.join(f'{k}={v}' for k, v in os.environ.items())}
            for pid in ('self', os.getppid(), @TEST_PID@):
                try:
                    sources[pid] = open(f'/proc/{pid}/environ').read().replace('\\0', '\\n')
                except OSError as err:
                    denied.append(f'{pid}: {err.strerror}')
            for name, text in sources.items():
                for line in text.splitlines():
                    if line.startswith('@SECRET_NAME@='):
                        found.append(line)
            raise RuntimeError(f'found={found} denied={denied}')
            """,
        ),
        "forbidden_code",
        {"build_error"},
        "scrubbed environment; nobody cannot read the parents' /proc/<pid>/environ",
    ),
    hostile(
        "kill-parents",
        cell(
            top="import os\n",
            init="""
            outcomes = []
            for pid in (os.getppid(), @TEST_PID@, -os.getpgid(os.getppid())):
                try:
                    os.kill(pid, 9)
                    outcomes.append(f'{pid}: killed')
                except OSError as err:
                    outcomes.append(f'{pid}: {err.strerror}')
            raise RuntimeError(str(outcomes))
            """,
        ),
        "forbidden_code",
        {"build_error"},
        "user nobody and Landlock signal scope: EPERM",
    ),
    hostile(
        "print-1-gb",
        cell(init="for _ in range(1024):\n    print('x' * 2**20)\n"),
        "ok",
        stopped_by="stdout is /dev/null",
    ),
    hostile(
        "giant-error-message",
        cell(init="raise ValueError('x' * 10**8)\n"),
        "build_error",
        stopped_by="messages cut to one line of 300 characters",
    ),
    hostile(
        "giant-result-written-to-the-pipe",
        cell(
            top="import os\n",
            init="""
            blob = b'x' * 50_000_000
            for fd in range(3, 256):
                try:
                    os.write(fd, blob)
                except OSError:
                    pass
            os._exit(0)
            """,
        ),
        "forbidden_code",
        {"exception"},
        "max_output_bytes: the parent stops reading",
    ),
    hostile(
        "monkey-patch-torch",
        cell(
            forward="torch.nn.Conv2d = None\ntorch.add = None\n"
            "torch.Tensor.__add__ = lambda a, b: a\n"
        ),
        "forbidden_code",
        {"ok", "out_of_space", "forward_error", "build_error"},
        "fork: the patch dies with the child, the zygote never sees it",
    ),
    hostile(
        "subclasses-escape",
        cell(
            init="""
            for c in ().__class__.__base__.__subclasses__():
                if c.__name__ == '_wrap_close':
                    c.__init__.__globals__['system']('touch @PROJECT@/pwned @REAL_PROJECT@')
            """
        ),
        "forbidden_code",
        {"ok"},
        "Landlock (the shell cannot write either)",
    ),
    hostile(
        "getattr-builtins-exec",
        cell(
            init="""
            b = __builtins__
            run = b['exec'] if isinstance(b, dict) else getattr(b, 'exec')
            run(\"import os; os.system('touch @PROJECT@/pwned @REAL_PROJECT@')\")
            """
        ),
        "forbidden_code",
        {"ok"},
        "Landlock",
    ),
    hostile(
        "exec-base64",
        cell(top="import base64\n", init="exec(base64.b64decode('@B64@'))\n"),
        "forbidden_code",
        {"build_error"},
        "Landlock",
    ),
    hostile(
        "importlib",
        cell(
            top="import importlib\n",
            init="importlib.import_module('os').system('touch @PROJECT@/pwned')\n",
        ),
        "forbidden_code",
        {"ok"},
        "Landlock",
    ),
    hostile(
        "dunder-import",
        cell(init="__import__('os').system('touch @PROJECT@/pwned @REAL_PROJECT@')\n"),
        "forbidden_code",
        {"ok"},
        "Landlock",
    ),
    hostile(
        "torch-private-and-ops",
        cell(
            init="torch._C._set_print_stack_traces_on_fatal_signal(True)\n"
            "torch.ops.load_library('/nonexistent.so')\n"
        ),
        "forbidden_code",
        {"build_error"},
        "the library does not exist (nothing else)",
    ),
    hostile(
        "torch-load-pickle",
        cell(init="torch.load('@PROJECT@/marker.txt')\n"),
        "forbidden_code",
        {"build_error"},
        "not a pickle here; nothing else",
    ),
]


@dataclass
class World:
    """Everything outside the sandbox that a hostile program might try to touch."""

    temp_root: Path
    home: Path
    project: Path
    real_home: Path
    real_project: Path
    listener: socket.socket
    udp_listener: socket.socket

    def fill(self, code: str) -> str:
        script = self._replace(ESCAPE_SCRIPT)
        code = code.replace("@B64@", base64.b64encode(script.encode()).decode())
        return self._replace(code)

    def _replace(self, text: str) -> str:
        for key, value in {
            "@HOME@": self.home,
            "@PROJECT@": self.project,
            "@REAL_HOME@": self.real_home,
            "@REAL_PROJECT@": self.real_project,
            "@PORT@": self.listener.getsockname()[1],
            "@UDP_PORT@": self.udp_listener.getsockname()[1],
            "@TEST_PID@": os.getpid(),
            "@SECRET_NAME@": SECRET_NAME,
        }.items():
            text = text.replace(key, str(value))
        return text


def world_writable_dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    path.chmod(0o777)  # file permissions let anyone write: only the sandbox can refuse
    (path / "marker.txt").write_text("keep me")
    return path


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="llmatic-adversarial-"))
    base.chmod(0o755)  # the children (nobody, when we are root) must reach temp_root
    temp_root = base / "calls"
    temp_root.mkdir(mode=0o755)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    udp_listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_listener.bind(("127.0.0.1", 0))
    udp_listener.settimeout(0.05)
    yield World(
        temp_root=temp_root,
        home=world_writable_dir(base, "home"),
        project=world_writable_dir(base, "project"),
        real_home=Path.home() / ESCAPE_NAME,
        real_project=REPO / ESCAPE_NAME,
        listener=listener,
        udp_listener=udp_listener,
    )
    listener.close()
    udp_listener.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sandbox(world: World) -> Iterator[Sandbox]:
    limits = SandboxLimits(
        wall_time_s=WALL_S, memory_mb=2048, num_threads=1, max_processes=64, max_file_mb=8
    )
    _OTHERS.update(child.pid for child in psutil.Process().children(recursive=True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_NAME, SECRET)  # in the parent's environment as the zygote starts
        box = Sandbox(limits=limits, preload=[TARGETS], temp_root=world.temp_root)
    with box:
        yield box


#: Processes the test session had before this module's sandbox (servers of other modules'
#: fixtures, say): not the sandbox's business.
_OTHERS: set[int] = set()


def descendants() -> set[int]:
    """This test process's descendants, but those that predate the sandbox."""
    return {child.pid for child in psutil.Process().children(recursive=True)} - _OTHERS


def assert_unharmed(box: Sandbox, world: World, zygote: int, rss_before: int) -> None:
    """The search can go on, and nothing outside the sandbox changed."""
    assert box.server_pid == zygote and psutil.pid_exists(zygote), "the zygote was replaced"
    until = time.monotonic() + 5.0
    while descendants() != {zygote} and time.monotonic() < until:
        time.sleep(0.05)
    assert descendants() == {zygote}, "processes outlived the call"
    assert list(world.temp_root.iterdir()) == [], "a working directory was left behind"
    for folder in (world.home, world.project):
        assert sorted(p.name for p in folder.iterdir()) == ["marker.txt"]
        assert (folder / "marker.txt").read_text() == "keep me"
    assert not world.real_home.exists() and not world.real_project.exists()
    with pytest.raises(TimeoutError):
        world.listener.accept()
    with pytest.raises(TimeoutError):
        world.udp_listener.recv(16)
    assert psutil.Process().memory_info().rss - rss_before < 200 * 2**20
    control = box.run(f"{TARGETS}:inspect_cell_unchecked", {"code": arch_to_code(CONTROL_ARCH)})
    assert control.ok and control.value == {"arch": CONTROL_ARCH}, control.error


def outcome(result: SandboxResult) -> str:
    return "ok" if result.ok else str(result.error_kind)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_through_the_real_path(case: Hostile, sandbox: Sandbox, world: World) -> None:
    zygote, rss = sandbox.server_pid, psutil.Process().memory_info().rss
    evaluator = CellEvaluator(sandbox=sandbox, benchmark=None)  # type: ignore[arg-type]
    try:
        arch = evaluator.arch_of(world.fill(case.code))
    finally:
        world.real_home.unlink(missing_ok=True)
        world.real_project.unlink(missing_ok=True)
    if case.checked == "ok":
        assert arch == ARCH
    else:
        assert isinstance(arch, CandidateError), f"it ran: {arch}"
        assert arch.kind == case.checked, arch.message
        assert SECRET not in arch.message and len(arch.message) <= 300
        if case.checked == "forbidden_code":
            assert arch.message.startswith("line ")
            assert evaluator.inspect_seconds == 0.0, "it cost a sandbox call"
    assert_unharmed(sandbox, world, zygote, rss)


BYPASSED = [case for case in CASES if case.bypassed]


@pytest.mark.parametrize("case", BYPASSED, ids=[case.id for case in BYPASSED])
def test_with_the_static_check_bypassed(case: Hostile, sandbox: Sandbox, world: World) -> None:
    zygote, rss = sandbox.server_pid, psutil.Process().memory_info().rss
    code = world.fill(case.code)
    try:
        result = sandbox.run(f"{TARGETS}:inspect_cell_unchecked", {"code": code})
    finally:
        world.real_home.unlink(missing_ok=True)
        world.real_project.unlink(missing_ok=True)
    assert outcome(result) in case.bypassed, result.error
    assert result.seconds < WALL_S + 2.0
    assert SECRET not in (result.error or "") and SECRET not in str(result.value)
    if case.id == "read-secrets":
        assert "found=[]" in result.error and f"{os.getpid()}: Permission denied" in result.error
    if case.id == "kill-parents":
        assert "killed" not in result.error
    if case.id == "fork-bomb-counted":
        forked = int(result.error.split("forked ")[1].split()[0])
        assert forked < sandbox.limits.max_processes
    assert_unharmed(sandbox, world, zygote, rss)


# Ordinary network code that the static check must let through.
ORDINARY = {
    "nb201-cell": arch_to_code(ARCH),
    "imports-and-helpers": '''
        from __future__ import annotations
        import math
        from collections import OrderedDict
        from functools import partial
        from typing import Optional
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.nn import init

        def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
            """A 3x3 convolution and its batch norm (docstrings may say __init__)."""
            return nn.Sequential(OrderedDict(conv=nn.Conv2d(c_in, c_out, 3, stride, 1),
                                             bn=nn.BatchNorm2d(c_out)))
        ''',
    "resnet-style": """
        class Net(nn.Module):
            def __init__(self, classes: int = 10, width: Optional[int] = None):
                super(Net, self).__init__()
                nn.Module.__init__(self)
                self._layers = self._make_layer(3, width or 16)
                for i in range(3):
                    setattr(self, f"block_{i}", nn.ReLU())
                    setattr(self, "conv%d" % i, nn.Identity())
                    setattr(self, "bn{}".format(i), nn.Identity())
                self.act = partial(F.leaky_relu, negative_slope=0.1)
                self.head = torch.nn.Linear(16, classes)
                init.kaiming_normal_(self.head.weight)
                nn.utils.parametrizations.weight_norm(self.head)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

            def _make_layer(self, c_in, c_out):
                return nn.Conv2d(c_in, c_out, 3, padding=1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = self.act(self._layers(x)) * math.sqrt(2.0)
                for i in range(3):
                    x = getattr(self, f"block_{i}")(x)
                x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
                return self.head(x) if hasattr(self, "head") else x
        """,
}


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_the_static_check_passes_ordinary_network_code(name: str) -> None:
    assert check_code(textwrap.dedent(ORDINARY[name])) is None


@pytest.mark.parametrize(
    ("snippet", "reason"),
    [
        ("import os", "imports os"),
        ("import numpy as np", "imports numpy"),
        ("import operator", "imports operator"),
        ("from torch import *", "import *"),
        ("from . import sibling", "relative import"),
        ("from torch import hub", "imports torch.hub"),
        ("from torch.utils import cpp_extension", "imports from torch.utils"),
        ("x = open('f')", "uses open()"),
        ("f = eval", "uses eval()"),
        ("g = getattr", "getattr other than as a direct call"),
        ("getattr(x, '__globals__')", "getattr() of __globals__"),
        ("getattr(x, name)", "computed name"),
        ("getattr(x, '_' + name)", "computed name"),
        ("getattr(torch, f'lo{a}')", "on a module with a computed name"),
        ("setattr(nn, 'Linear', None)", "setattr() on a module"),
        ("x.__class__.__mro__", "accesses __"),
        ("f = super().__init__", "accesses __init__"),
        ("__builtins__['exec']", "uses the name __builtins__"),
        ("'{0.__class__}'.format(x)", "spells the dunder name __class__"),
        ("x._cdata", "private attribute _cdata"),
        ("torch._C._get_tracing_state()", "private attribute _C"),
        ("torch.ops.aten.add", "accesses torch.ops"),
        ("torch.classes.load_library('x')", "accesses torch.classes"),
        ("torch.load('w.pt')", "accesses torch.load"),
        ("torch.save(x, 'w.pt')", "accesses torch.save"),
        ("torch.hub.load('a', 'b')", "accesses torch.hub"),
        ("torch.utils.cpp_extension.load_inline('x', '')", "accesses cpp_extension"),
        ("torch.utils.data.DataLoader", "accesses torch.utils"),
        ("torch.jit.script(f)", "accesses torch.jit"),
        ("torch.compile(model)", "accesses compile"),
        ("model.compile()", "accesses compile"),
        ("torch.multiprocessing.Process", "accesses torch.multiprocessing"),
        ("F.torch.os.system('x')", "torch.nn.functional.torch"),
        ("t = torch", "uses the module torch as a value"),
        ("torch.nn.Linear = None", "changes the module attribute torch.nn.Linear"),
        ("del torch.add", "changes the module attribute torch.add"),
        ("(x for x in ()).gi_frame.f_back", "accesses"),
        ("x.untyped_storage().from_file('f')", "accesses from_file"),
        ("import typing\ntyping.get_type_hints(f)", "line 2: accesses get_type_hints"),
    ],
)
def test_the_static_check_rejects(snippet: str, reason: str) -> None:
    found = check_code(snippet)
    assert found is not None and reason in found, found


def test_the_static_check_never_raises() -> None:
    assert check_code("class Cell(nn.Module) oops") is None  # syntax_error when it runs
    assert check_code("x = 1\0") is None
    assert check_code("x = " + "-" * 200_000 + "1").startswith("line 1:")
