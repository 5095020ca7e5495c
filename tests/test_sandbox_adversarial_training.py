"""The hostile programs of tests/test_sandbox_adversarial.py on the free-form training path.

There every program is an NB201 cell that the sandbox builds and maps. Here the same
hostile lines (its module-level ``top``, and its ``__init__`` or ``forward`` body) go into
the ``forward`` of a free-form network that runs once the network trains: the first
training step, not the probe or the measurement (tests/test_freeform.py's ``hostile``
guard), through :func:`llmatic.benchmarks.digits.train_code` with the static check
bypassed (a test-only target). The sandbox is the adversarial file's (same limits and
world, both plans) preloading what training needs, and each result must pass the same
checks as there (:func:`assert_held`), with the kinds that only the path changes mapped
(:data:`TRAINING_KIND`); afterwards nothing outside may have changed and a control
network must train.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import psutil
import pytest

from llmatic.benchmarks.digits import check_train_result
from llmatic.sandbox import Sandbox, SandboxResult

try:
    import sandbox_targets
    import test_sandbox_adversarial as adversarial
    from test_freeform import SEED, TRAIN, hostile
except ImportError:  # tests/ became a package
    from tests import sandbox_targets
    from tests import test_sandbox_adversarial as adversarial
    from tests.test_freeform import SEED, TRAIN, hostile

TARGET = f"{sandbox_targets.__name__}:train_code_unchecked"
#: What a training call needs in the zygote, so that a call fits the 2 s wall clock.
PRELOAD = [
    "llmatic.benchmarks.digits",
    "llmatic.benchmarks._digits_data",
    "llmatic.spaces.freeform_inspect",
    "llmatic.measures",
    "llmatic.training",
    "llmatic.devices",
    "llmatic.network_code",
    sandbox_targets.__name__,
]
#: The cell path's outcome -> the training path's, where only the path makes them differ.
TRAINING_KIND: dict[str, str | None] = {
    # What the hostile lines raise fails the build of a cell (its __init__), but here they
    # run in forward, and _train_and_score reports whatever forward raises as forward_error.
    "build_error": "forward_error",
    # Nothing maps a free-form network to a space: the training path cannot report it.
    "out_of_space": None,
}
#: Cases whose hostile lines have nothing to act on in a free-form network's forward.
SKIPPED = {
    "str-subclass-op-name": "it sets op_name on the cell's edge for the NB201 mapping to "
    "read back; a free-form network has no edges and training reads no name back",
}
CASES = [
    pytest.param(case, marks=pytest.mark.skip(reason=SKIPPED[case.id]), id=case.id)
    if case.id in SKIPPED
    else pytest.param(case, id=case.id)
    for case in adversarial.BYPASSED
]

world = adversarial.world  # the same fixture (a World of this module's own)


@pytest.fixture(scope="module", params=["private-root", "host-root"])
def sandbox(world: adversarial.World, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The adversarial file's sandbox, both plans, preloading what training needs."""
    private_root = request.param == "private-root"
    with adversarial.hostile_sandbox(world, private_root, PRELOAD) as box:
        yield box


def training_network(case: adversarial.Hostile) -> str:
    """A free-form network whose ``forward`` runs the case's lines once, as it trains.

    Once, like a constructor: a body that succeeds would run again at every step, and
    what it leaves (processes, files) would pile up past limits the cell path never
    meets, a different outcome for a reason of repetition, not of the path.
    """
    body = case.lines.init + case.lines.forward
    once = "if not self.__dict__.get('hostile_ran'):\n    self.hostile_ran = True\n"
    return hostile(case.lines.top, once + textwrap.indent(body, "    "))


def train(box: Sandbox, code: str) -> SandboxResult:
    payload = {"code": code, "device": "cpu", **TRAIN}
    return box.run(TARGET, payload, check=check_train_result)


def test_the_hostile_lines_run_only_while_the_network_trains(sandbox: Sandbox) -> None:
    """The wrapper is live, and in training only: the probe's batch is 2, the
    measurement's 1, a training step's TRAIN["batch_size"]."""
    lines = adversarial.cell(init="raise RuntimeError(f'reached with {len(x)} inputs')\n")
    case = adversarial.hostile("raise", lines, "build_error")
    result = train(sandbox, training_network(case))
    assert result.error_kind == "forward_error", result.error
    assert result.error == f"RuntimeError: reached with {TRAIN['batch_size']} inputs"


@pytest.mark.parametrize("case", CASES)
def test_in_forward_while_training(
    case: adversarial.Hostile, sandbox: Sandbox, world: adversarial.World
) -> None:
    zygote, rss = sandbox.server_pid, psutil.Process().memory_info().rss
    code = world.fill(training_network(case))
    assert "@" not in code, "a placeholder was left unfilled"
    try:
        result = train(sandbox, code)
    finally:
        world.real_home.unlink(missing_ok=True)
        world.real_project.unlink(missing_ok=True)
    allowed = {TRAINING_KIND.get(kind, kind) for kind in case.bypassed} - {None}
    if case.id == "fork-bomb-counted":
        # Forking up to the process cap in every forward pass can outlast the 2 s wall
        # limit on a loaded machine: then the limit is what holds it.
        allowed.add("timeout")
    adversarial.assert_held(case, frozenset(allowed), result, sandbox, world)
    adversarial.assert_nothing_outside_changed(sandbox, world, zygote, rss)
    control = train(sandbox, SEED)
    assert control.ok, control.error
    assert control.value["val_accuracy"] > 10.0  # it learned: a fresh child, torch intact
