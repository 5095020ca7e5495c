"""Golden runs: seeded NB201-table searches write exactly the candidates they always wrote.

Each case runs a short search through the real Hydra config and ``run_experiment`` (the
scripted LLM for LLMatic; random search; REA) on the shared NAS-Bench-201 table and
compares every candidate's identity, code, architecture, outcome and objectives with
``tests/golden/``. Refactoring the search space must not change a single one of them.

After an intended change of behaviour, regenerate the files with
``LLMATIC_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_nb201.py`` and say
why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from llmatic.run import run_experiment

CONF = str(Path(__file__).resolve().parents[1] / "conf")
GOLDEN = Path(__file__).resolve().parent / "golden"
SHARED_CSV = Path(__file__).resolve().parents[2] / "shared/data/nasbench201/nb201.csv"

#: What a candidate is, without timings or token counts.
FIELDS = (
    "id",
    "operator",
    "parent_ids",
    "prompt_id",
    "temperature",
    "code",
    "arch",
    "status",
    "error_kind",
    "duplicate_of",
    "charged",
    "objective",
    "test_objective",
    "measures",
)

COMMON = ("benchmark=nasbench201", "output.plots=false", "seed=3")

#: name -> overrides. LLMatic: the initial phase, then three mutation + crossover batches,
#: with the fake LLM's broken samples (failures) and without steering (duplicates).
CASES = {
    "llmatic": (
        "llm=scripted",
        "search.budget=14",
        "search.batch_size=4",
        "search.init_children=3",
        "search.avoid_evaluated=false",
    ),
    # Two operations (64 cells): repeats, recorded as duplicates.
    "random": (
        "search=random",
        "search.budget=10",
        "search.batch_size=4",
        "search.ops=[none,skip_connect]",
    ),
    # Past the population of 10: tournaments and one-edge mutations.
    "rea": (
        "search=rea",
        "search.budget=14",
        "search.batch_size=2",
        "search.ops=[none,skip_connect,nor_conv_3x3]",
    ),
}


def golden_candidates(run_dir: Path) -> list[dict]:
    lines = (run_dir / "candidates.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in FIELDS} for line in lines]


@pytest.mark.parametrize("name", sorted(CASES))
def test_nb201_run_writes_the_golden_candidates(name, tmp_path):
    if not SHARED_CSV.exists():
        pytest.skip(f"shared NB201 table absent at {SHARED_CSV}")
    overrides = [*COMMON, f"benchmark.table={SHARED_CSV}", *CASES[name]]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    run_experiment(cfg, tmp_path)
    got = golden_candidates(tmp_path)
    path = GOLDEN / f"nb201_{name}.json"
    if os.environ.get("LLMATIC_WRITE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(path.read_text())
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert mine == theirs, f"candidate {theirs['id']} differs"
