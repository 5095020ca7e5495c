"""The sandbox's parts on their own: result checks, tree removal, the seccomp program."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from llmatic.benchmarks.digits import check_train_result
from llmatic.nb201.inspect import check_inspect_result
from llmatic.sandbox import Sandbox, SandboxLimits, _seccomp, results
from llmatic.sandbox._cleanup import remove_tree

try:
    import sandbox_targets
except ImportError:  # tests/ became a package
    from tests import sandbox_targets

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def test_an_arch_result_is_rebuilt_from_its_parts() -> None:
    checked = check_inspect_result({"arch": ARCH})
    assert checked == {"arch": ARCH} and type(checked["arch"]) is str


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {},
        {"arch": 12345},
        {"arch": None},
        {"arch": [ARCH]},
        {"arch": ARCH + "x" * 4000},  # data carried out in the string
        {"arch": "|conv~0|+|a~0|b~1|+|c~0|d~1|e~2|"},
        {"arch": ARCH, "evil": 1},
        {"arch": ARCH.replace("none", "open('/etc/shadow')")},
    ],
)
def test_an_arch_result_the_target_never_returns_is_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        check_inspect_result(value)  # type: ignore[arg-type]


def test_a_training_result_is_checked_number_by_number() -> None:
    measures = dict.fromkeys(
        ("flops", "depth", "width", "params", "width_to_depth", "log10_flops"), 1.0
    )
    good = {
        "val_accuracy": 90.0,
        "test_accuracy": 89,
        "train_loss": 0.3,
        "train_seconds": 2.0,
        "measures": measures,
    }
    assert check_train_result(good)["test_accuracy"] == 89.0
    for key, bad in [
        ("val_accuracy", float("nan")),
        ("val_accuracy", 101.0),
        ("val_accuracy", True),
        ("train_seconds", -1.0),
        ("measures", {**measures, "extra": 1.0}),
        ("measures", "x" * 100),
    ]:
        with pytest.raises(ValueError):
            check_train_result({**good, key: bad})


def test_text_and_numbers_must_be_exact_builtins() -> None:
    class Sly(str):
        pass

    with pytest.raises(ValueError):
        results.text(Sly("x"), max_chars=10)
    with pytest.raises(ValueError):
        results.number(False)
    assert results.number(3, low=0, high=5) == 3.0


def test_a_check_that_raises_becomes_bad_result() -> None:
    def refuse(value: dict) -> dict:
        raise KeyError("arch")

    with Sandbox(limits=SandboxLimits(wall_time_s=10.0), preload=[sandbox_targets.__name__]) as box:
        result = box.run(f"{sandbox_targets.__name__}:echo", {"n": 1}, check=refuse)
        kept = box.run(f"{sandbox_targets.__name__}:echo", {"n": 2}, check=lambda v: v)
    assert (result.ok, result.error_kind, result.value) == (False, "bad_result", None)
    assert "never returns" in result.error
    assert kept.ok and kept.value["payload"] == {"n": 2}


def test_remove_tree_survives_depth_long_names_and_closed_folders(tmp_path: Path) -> None:
    root = tmp_path / "call"
    root.mkdir()
    here = os.open(root, os.O_RDONLY)
    try:
        for _ in range(2000):  # far past PATH_MAX and Python's recursion limit
            os.mkdir("d" * 200, dir_fd=here)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = inner
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=here))
    finally:
        os.close(here)
    closed = root / "closed" / "inner"
    closed.mkdir(parents=True)
    (closed / "file").write_text("x")
    closed.chmod(0)
    closed.parent.chmod(0)
    assert remove_tree(str(root)) is True
    assert not root.exists()
    assert remove_tree(str(root)) is True  # already gone: fine


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_seccomp_program_is_well_formed(machine: str) -> None:
    program = _seccomp.build_program(machine)
    instructions = [struct.unpack("HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    assert len(instructions) < 4096  # BPF_MAXINSNS
    for index, (code, true, false, _) in enumerate(instructions):
        if code in (0x15, 0x45, 0x35):  # conditional jumps stay inside the program
            assert index + 1 + max(true, false) < len(instructions)
    assert instructions[-1][0] == 0x06  # ends with returns


# CUDA children, tested on the CPU (the GPU path's twin): what changes with cuda=True is
# that the address space is left uncapped (CUDA's start-up reserves tens of GB of it), so
# the cgroup must still hold host memory, and the device cap must be queued for CUDA's
# start-up.
RUN = f"{sandbox_targets.__name__}:run_code"
LIMITS_CODE = (
    "import resource, torch\n"
    "result = {'address_space': resource.getrlimit(resource.RLIMIT_AS)[0],\n"
    "          'queued': len(torch.cuda._queued_calls)}\n"
)


def test_a_cuda_child_has_no_address_space_cap_but_its_cgroup_still_holds() -> None:
    cpu_limits = SandboxLimits(wall_time_s=20.0, memory_mb=512, num_threads=1)
    with Sandbox(limits=cpu_limits, preload=["torch", sandbox_targets.__name__]) as box:
        cpu = box.run(RUN, {"code": LIMITS_CODE})
    cuda_limits = SandboxLimits(wall_time_s=20.0, memory_mb=512, num_threads=1, cuda=True)
    try:
        box = Sandbox(limits=cuda_limits, preload=["torch", sandbox_targets.__name__])
    except RuntimeError as err:  # a machine without a cgroup per call: refused, not unguarded
        assert "cgroup" in str(err)
        pytest.skip(f"no cgroup per call here: {err}")
    with box:
        cuda = box.run(RUN, {"code": LIMITS_CODE})
        bomb = box.run(RUN, {"code": "x = b'x' * (2 * 1024**3)\nresult = {}\n"})
    assert cpu.ok and cuda.ok, (cpu.error, cuda.error)
    assert cpu.value["address_space"] == 512 * 1024 * 1024
    assert cuda.value["address_space"] == -1  # RLIM_INFINITY
    assert cuda.value["queued"] == cpu.value["queued"] + 1  # the device-memory cap
    assert bomb.error_kind == "out_of_memory", bomb.error


def test_cuda_children_without_a_cgroup_are_refused_unless_uncapped() -> None:
    limits = SandboxLimits(wall_time_s=10.0, cuda=True, confine=False)  # no cgroups then
    with pytest.raises(RuntimeError, match="memory_mb=None"):
        Sandbox(limits=limits)
    uncapped = SandboxLimits(wall_time_s=10.0, cuda=True, confine=False, memory_mb=None)
    with Sandbox(limits=uncapped, preload=[sandbox_targets.__name__]) as box:
        assert box.run(f"{sandbox_targets.__name__}:echo", {"n": 1}).ok


@pytest.mark.parametrize("fraction", [0.0, 1.5, float("nan")])
def test_the_gpu_memory_fraction_must_be_a_share(fraction: float) -> None:
    with pytest.raises(ValueError, match="gpu_memory_fraction"):
        SandboxLimits(gpu_memory_fraction=fraction)


def test_a_setup_call_runs_once_in_the_zygote_and_every_child_inherits_it() -> None:
    name = sandbox_targets.__name__
    setup = [(f"{name}:remember", {"rows": [1, 2, 3]})]
    with Sandbox(limits=SandboxLimits(wall_time_s=10.0), preload=[name], setup=setup) as box:
        first = box.run(f"{name}:recall", {})
        second = box.run(f"{name}:recall", {})
        zygote = box.server_pid
    assert first.ok and second.ok, (first.error, second.error)
    for result in (first, second):
        assert result.value["remembered"]["rows"] == [1, 2, 3]
        assert result.value["remembered"]["pid"] == zygote  # loaded there, not per call
        assert result.value["pid"] != zygote  # and used in a child


def test_a_failing_setup_call_stops_the_sandbox_with_its_message() -> None:
    from llmatic.sandbox import SandboxSetupError

    name = sandbox_targets.__name__
    setup = [(f"{name}:remember", {"fail": "data set not found in /nowhere: put it there"})]
    with pytest.raises(SandboxSetupError, match="data set not found in /nowhere: put it there"):
        Sandbox(limits=SandboxLimits(wall_time_s=10.0), preload=[name], setup=setup)
