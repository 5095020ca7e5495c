"""The free-form space: whole networks written by the LLM, keyed by their graph, trained
as their own code in the sandbox."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest
from hydra import compose, initialize_config_dir

from llmatic.benchmarks.digits import check_train_result
from llmatic.errors import CandidateError
from llmatic.run import ConfigError, run_experiment, validate_config
from llmatic.sandbox import Sandbox, SandboxLimits
from llmatic.spaces import FreeformSpace
from llmatic.spaces.freeform_inspect import check_identify_result, identify_network

try:
    import sandbox_targets
    from conftest import ScriptedLLM
    from test_sandbox_adversarial import FORGE
except ImportError:  # tests/ became a package
    from tests import sandbox_targets
    from tests.conftest import ScriptedLLM
    from tests.test_sandbox_adversarial import FORGE

CONF = str(Path(__file__).resolve().parents[1] / "conf")
REPO = Path(__file__).resolve().parents[1]
SHAPE = {"input_shape": [1, 8, 8], "num_classes": 10}
SEED = FreeformSpace(input_shape=(1, 8, 8), num_classes=10).seed_code()
PREFILL = "class Net(nn.Module):\n"

#: A valid network other than the seed.
CONV = """class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        return self.fc1(torch.flatten(x, 1))
"""
#: CONV with other names, a comment, a docstring and another layout: the same network.
CONV_TWIN = '''class Net(nn.Module):
    """A renamed copy."""
    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(1, 8, kernel_size=3, padding=1)  # same layer
        self.head = nn.Linear(512, 10)
    def forward(self, inputs):
        hidden = F.relu(self.features(inputs))
        return self.head(torch.flatten(hidden, 1))
'''
MLP = """class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))
"""
WRONG_SHAPE = MLP.replace("nn.Linear(32, 10)", "nn.Linear(32, 7)")
NAN = MLP.replace("return self.fc2(", "return float('nan') * self.fc2(")
BROKEN = "class Net(nn.Module):\n    def __init__(self)\n        pass\n"


def completion(code: str) -> str:
    """What a model writes after the prefilled class line."""
    return code.removeprefix(PREFILL)


def identify(code: str) -> dict:
    return check_identify_result(identify_network({"code": code, **SHAPE}))


def test_the_key_ignores_names_comments_and_formatting():
    assert identify(CONV)["key"] == identify(CONV_TWIN)["key"]
    keys = {identify(code)["key"] for code in (SEED, CONV, MLP)}
    assert len(keys) == 3
    assert identify(CONV)["traced"]


def test_an_untraceable_network_is_keyed_by_its_normalised_code():
    branch = "        if x.sum() > 0:\n            x = -x\n"
    branchy = MLP.replace("        return self.fc2(", branch + "        return self.fc2(")
    first = identify(branchy)
    assert not first["traced"]
    assert identify(branchy.replace("if x", "# a comment\n        if x"))["key"] == first["key"]


def test_the_seed_fits_the_input_and_is_measured():
    cifar = FreeformSpace(input_shape=(3, 32, 32), num_classes=10).seed_code()
    assert "nn.Conv2d(3, 1, 1)" in cifar and "nn.Linear(1024, 10)" in cifar
    measures = identify(SEED)["measures"]
    assert measures["depth"] == 2 and measures["width_to_depth"] == 5.0
    assert 3.0 < measures["log10_flops"] < 3.3


def test_a_wrong_output_shape_is_its_own_failure_kind():
    with pytest.raises(CandidateError) as err:
        identify_network({"code": WRONG_SHAPE, **SHAPE})
    assert err.value.kind == "wrong_output_shape"


@pytest.mark.parametrize(
    "value",
    [
        {"key": "0" * 31 + "g", "traced": True, "measures": {}},
        {"key": "0" * 64, "traced": True, "measures": {}},
        {"key": "0" * 32, "traced": 1, "measures": {}},
        {"key": "0" * 32, "traced": True, "measures": {}, "evil": 1},
    ],
)
def test_the_parent_rejects_a_malformed_identity(value):
    with pytest.raises(ValueError):
        check_identify_result(value)


def compose_freeform(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose("config", overrides=["+exp=freeform_digits", *overrides])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("llm.scope=edges", "set llm.scope=class"),
    ],
)
def test_what_the_space_cannot_do_is_a_config_error(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_freeform(override))


@pytest.mark.parametrize("search", ["random", "rea"])
def test_the_baselines_search_the_grammars_networks(search, tmp_path):
    overrides = [f"search={search}", "search.budget=8", "benchmark.epochs=1"]
    if search == "rea":
        overrides += ["search.population_size=3", "search.tournament_size=2"]
    summary = run_experiment(compose_freeform(*overrides, "output.plots=false"), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    proposed = [row for row in rows if row["operator"] == search]
    assert summary["evaluations"] == 8
    assert {row["status"] for row in proposed} <= {"evaluated", "duplicate", "skipped"}
    assert all(row["code"].startswith("class Net(nn.Module):") for row in proposed)
    # Identified in the sandbox like the LLM's code: graph keys, not texts.
    assert all(len(row["arch"]) == 32 for row in proposed if row["status"] != "skipped")
    if search == "rea":  # past its population, REA mutates its members
        children = [row for row in proposed if row["parent_ids"]]
        assert children
        assert all(row["code"] != rows[row["parent_ids"][0]]["code"] for row in children)


def test_a_short_run_trains_the_candidates_own_code(tmp_path):
    script = [completion(c) for c in (CONV, CONV_TWIN, BROKEN, WRONG_SHAPE, NAN, MLP)]
    cfg = compose_freeform(
        "search.budget=4",
        "search.init_children=6",
        "search.batch_size=4",
        "benchmark.epochs=1",
        "output.plots=false",
    )
    summary = run_experiment(cfg, tmp_path, llm=ScriptedLLM(script))
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    by_code = {row["code"]: row for row in rows[:7]}
    assert rows[0]["code"] == SEED
    seed, conv = by_code[SEED], by_code[CONV]
    assert seed["status"] == "evaluated" and conv["status"] == "evaluated"
    assert conv["objective"] > 50.0  # trained for real: digits, one epoch
    twin = by_code[CONV_TWIN]
    assert twin["status"] == "duplicate" and twin["duplicate_of"] == conv["id"]
    assert not twin["charged"]
    kinds = {row["error_kind"] for row in rows[:7]}
    assert {"syntax_error", "wrong_output_shape", "training_error"} <= kinds
    assert by_code[MLP]["status"] == "evaluated"
    assert summary["evaluations"] == 4
    assert len({row["arch"] for row in rows if row["charged"]}) == 4
    # Valid: code that got a key (the broken and wrong-shape ones did not).
    assert 0.0 < summary["valid_code_rate"] < 1.0
    assert summary["failure_kinds"]["training_error"] >= 1


# Hostile code in ``forward`` while the network trains, with the static check bypassed
# (a test-only target): the sandbox alone must hold it.
SECRET = "freeform-secret-" + uuid.uuid4().hex
ESCAPE = f".llmatic-freeform-{uuid.uuid4().hex[:12]}"


def hostile(top: str, body: str) -> str:
    """MLP whose forward runs ``body`` once it trains (not while it is probed)."""
    guarded = "if self.training and torch.is_grad_enabled():\n" + textwrap.indent(body, "    ")
    code = MLP.replace(
        "    def forward(self, x):\n",
        "    def forward(self, x):\n" + textwrap.indent(guarded, " " * 8),
    )
    return textwrap.dedent(top) + code


CASES = {
    "fork-bomb": (
        hostile(
            "import os\n",
            "n = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        raise RuntimeError(f'forked {n} processes')\n    if pid == 0:\n"
            "        while True:\n            pass\n    n += 1\n",
        ),
        {"forward_error", "crashed", "timeout", "out_of_memory"},
    ),
    "read-files": (
        hostile("", "raise RuntimeError(open('@SECRET_FILE@').read())\n"),
        {"forward_error"},
    ),
    "write-outside": (
        hostile(
            "",
            "for path in ('@OUTSIDE@/pwned', '@REAL_PROJECT@'):\n"
            "    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\n",
        ),
        {"ok", "forward_error"},
    ),
    "forge-result": (
        hostile(FORGE, "forge({'val_accuracy': 1e9})\n"),
        {"bad_result", "crashed"},
    ),
}


@pytest.fixture(scope="module")
def training_sandbox():
    limits = SandboxLimits(
        wall_time_s=30, memory_mb=4096, num_threads=1, max_processes=64, disk_mb=16
    )
    preload = [
        "llmatic.benchmarks.digits",
        "llmatic.benchmarks._digits_data",
        "llmatic.spaces.freeform_inspect",
        "llmatic.measures",
        "llmatic.training",
        sandbox_targets.__name__,
    ]
    with Sandbox(limits=limits, preload=preload) as box:
        yield box


TRAIN = {"epochs": 1, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0, "seed": 0}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_code_in_forward_is_contained_while_training(name, training_sandbox, tmp_path):
    code, allowed = CASES[name]
    secret_file, outside = tmp_path / "secret.txt", tmp_path / "outside"
    secret_file.write_text(SECRET)
    outside.mkdir()
    outside.chmod(0o777)  # only the sandbox can stop a write here
    real_project = REPO / ESCAPE
    code = (
        code.replace("@SECRET_FILE@", str(secret_file))
        .replace("@OUTSIDE@", str(outside))
        .replace("@REAL_PROJECT@", str(real_project))
    )
    box = training_sandbox
    zygote = box.server_pid
    try:
        result = box.run(
            f"{sandbox_targets.__name__}:train_code_unchecked",
            {"code": code, "device": "cpu", **TRAIN},
            check=check_train_result,
        )
    finally:
        exists = real_project.exists()
        real_project.unlink(missing_ok=True)
    outcome = "ok" if result.ok else result.error_kind
    assert outcome in allowed, result.error
    assert SECRET not in (result.error or "") and SECRET not in str(result.value)
    assert not exists and list(outside.iterdir()) == []
    assert box.server_pid == zygote and psutil.pid_exists(zygote)
    children = {p.pid for p in psutil.Process(zygote).children(recursive=True)}
    assert not children, "processes outlived the call"
    control = box.run(
        f"{sandbox_targets.__name__}:train_code_unchecked",
        {"code": SEED, "device": "cpu", **TRAIN},
        check=check_train_result,
    )
    assert control.ok, control.error
