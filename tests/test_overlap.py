"""``search.overlap``: the LLM writes batch i+1 while batch i is scored.

The emitters then ask on the archive without the batch in flight: a different search from
the plain loop, but as reproducible (the same with 1 or 3 workers, and when resumed), with
the same accounting, and checkpointed only where nothing is in flight.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from test_resume import BUDGET, check_accounting, interrupt, outcome

from llmatic.checkpoint import CHECKPOINT_FILE, read_header
from llmatic.run import run_experiment

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def compose_cfg(table: Path, *extra: str, search: tuple[str, ...] | None = None):
    """A small LLMatic run with overlap (``search``: other search overrides instead)."""
    if search is None:
        search = ("llm=scripted", "search.init_children=3", "search.overlap=true")
    overrides = [
        "benchmark=nasbench201",
        f"benchmark.table={table}",
        f"search.budget={BUDGET}",
        "search.batch_size=4",
        "output.checkpoint_every=3",
        "output.plots=false",
        *search,
        *extra,
    ]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def overlapped(table, tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("overlapped")
    run_experiment(compose_cfg(table), run_dir)
    result = outcome(run_dir)
    check_accounting(result)
    return run_dir, result


def test_batches_are_asked_ahead_except_where_the_state_is_checkpointed(overlapped):
    run_dir, result = overlapped
    rows = [row for row in metrics(run_dir) if row["phase"] == "main"]
    ahead = {int(row["iteration"]) for row in rows if int(row["in_flight"]) > 0}
    assert ahead, "no batch was asked ahead"
    assert all(iteration % 3 != 0 for iteration in ahead)  # output.checkpoint_every=3
    assert all(int(row["in_flight"]) == 0 for row in metrics(run_dir) if row["phase"] == "init")
    # Nothing asked is left behind: every candidate was evaluated, failed, a duplicate or
    # skipped by the budget, and told.
    assert all(c["status"] != "pending" for c in result["candidates"])


def test_an_overlapped_run_is_the_same_with_three_workers(table, overlapped, tmp_path):
    run_experiment(compose_cfg(table, "evaluator.workers=3"), tmp_path)
    assert outcome(tmp_path) == overlapped[1]


def test_an_overlapped_run_stopped_and_resumed_equals_the_uninterrupted_one(
    table, overlapped, tmp_path, monkeypatch
):
    cfg = compose_cfg(table)
    with monkeypatch.context() as patch:
        interrupt(patch, "score", call=14)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, tmp_path)
    header = read_header(tmp_path / CHECKPOINT_FILE)
    assert not header["finished"] and 0 < header["evaluations"] < BUDGET
    run_experiment(cfg, tmp_path, resume=True)
    assert outcome(tmp_path) == overlapped[1]


def test_asking_ahead_keeps_random_search_unchanged(table, tmp_path):
    """Random search does not read the archive: told late, it proposes the same cells."""
    runs = {}
    for overlap in ("true", "false"):
        run_dir = tmp_path / overlap
        run_experiment(
            compose_cfg(table, search=("search=random", f"+search.overlap={overlap}")),
            run_dir,
        )
        runs[overlap] = [
            (c["arch"], c["status"], c["iteration"])
            for c in map(json.loads, (run_dir / "candidates.jsonl").read_text().splitlines())
        ]
        assert sum(status == "evaluated" for _, status, _ in runs[overlap]) == BUDGET
    assert runs["true"] == runs["false"]
    ahead = [row for row in metrics(tmp_path / "true") if int(row["in_flight"]) > 0]
    assert ahead


def test_the_bandit_pool_asks_ahead_with_its_own_bookkeeping(table, tmp_path):
    run_experiment(
        compose_cfg(table, "search=llmatic_bandit", "search.classic_batch_size=3"), tmp_path
    )
    result = outcome(tmp_path)
    check_accounting(result)
    summary = json.loads((tmp_path / "summary.json").read_text())
    selected = sum(row["selected"] for row in summary["bandit"])
    # UCB1 credited exactly the candidates of the main phase, each once.
    pool = ("mutation", "crossover", "classic")
    main = [c for c in result["candidates"] if c["operator"] in pool]
    assert selected == len(main)
