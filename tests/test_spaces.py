"""The search-space seam: the NB201 space's settings, and an evaluator that knows no space."""

from __future__ import annotations

import numpy as np
import pytest

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.candidate import CandidateStore
from llmatic.evaluation import Evaluator
from llmatic.nb201.cell import arch_to_code, parse_arch
from llmatic.sandbox import SandboxResult
from llmatic.spaces import Nb201Space, Proposal, SandboxCall, SearchSpace

SEED = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"seed_arch": "nonsense"}, "seed_arch"), ({"seed_arch": SEED, "ops": ["none"]}, "ops")],
)
def test_nb201_space_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Nb201Space(**kwargs)


def test_nb201_baseline_moves_stay_in_the_space():
    space = Nb201Space(seed_arch=SEED, ops=["none", "skip_connect"])
    rng = np.random.default_rng(0)
    for _ in range(20):
        parent = space.random_network(rng=rng)
        child = space.mutate_network(code=parent.code, key=parent.key, rng=rng)
        assert child.key != parent.key
        assert set(parse_arch(child.key).values()) <= {"none", "skip_connect"}
        assert parent.code == arch_to_code(parent.key)
        assert parent.code.startswith("class Cell(nn.Module):")


class WordSpace(SearchSpace):
    """A toy space: a network's key is its first word; the benchmark scores keys."""

    name = "words"

    def seed_code(self) -> str:
        return "seed"

    def stop(self, *, scope: str) -> tuple[str, ...]:
        return ()

    def prompter(self, settings, *, avoid):  # pragma: no cover - no LLM here
        raise NotImplementedError

    def identify_call(self, *, code: str) -> SandboxCall:
        return SandboxCall(target="words:first", payload={"code": code}, check=dict)

    def key_of(self, identity: dict) -> str:
        return identity["first"]

    def random_network(self, *, rng: np.random.Generator) -> Proposal:
        key = str(rng.integers(10))
        return Proposal(code=key, key=key)

    def mutate_network(self, *, code: str, key: str, rng: np.random.Generator) -> Proposal:
        return Proposal(code=key + "'", key=key + "'")


class WordSandbox:
    """Runs nothing: answers ``words:first`` as the child would."""

    def __init__(self) -> None:
        self.calls = 0

    def run(self, target: str, payload: dict, *, check) -> SandboxResult:
        self.calls += 1
        value = check({"first": payload["code"].split()[0]})
        return SandboxResult(ok=True, value=value, error_kind=None, error=None, seconds=0.0)


class LengthBenchmark:
    name = "length"

    def evaluate(self, arch: str) -> ArchEvaluation:
        return ArchEvaluation(float(len(arch)), 0.0, {}, seconds=0.0)


def test_evaluator_identifies_and_deduplicates_by_the_spaces_key(monkeypatch):
    # The static check is the sandbox's business, not the seam's: the words are no networks.
    monkeypatch.setattr("llmatic.evaluation.check_code", lambda code: None)
    store, sandbox = CandidateStore(), WordSandbox()
    evaluator = Evaluator(space=WordSpace(), sandbox=sandbox, benchmark=LengthBenchmark())
    codes = ["alpha = 1", "alpha  =  1", "alpha = 2", "beta = 1"]  # 2nd: same normalised code
    candidates = [store.new("mutation", code=code) for code in codes]
    evaluator.evaluate(candidates, budget=10)
    assert [c.status for c in candidates] == ["evaluated", "duplicate", "duplicate", "evaluated"]
    assert [c.arch for c in candidates] == ["alpha", "alpha", "alpha", "beta"]
    assert evaluator.evaluations == 2 and set(evaluator.evaluated_keys) == {"alpha", "beta"}
    assert sandbox.calls == 3  # normalised code is identified once
