"""Cost accounting: tokens in and out, LLM seconds and USD per candidate, run and method."""

from __future__ import annotations

import json
import math
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_compare import write_run
from test_experiment import compose_cfg

from llmatic.analysis.comparison import compare, load_run
from llmatic.candidate import Candidate, CandidateStore
from llmatic.debug_llm import ScriptedDebugLLM
from llmatic.errors import ConfigError
from llmatic.llm.base import Generation, GenerationRequest
from llmatic.llm.openai_backend import OpenAICompatibleLLM
from llmatic.llm.serve import Batcher, make_handler
from llmatic.recording import summarize_cost
from llmatic.run import run_experiment, validate_config
from llmatic.run.build import build_llm
from llmatic.run.config import llm_prices

CONF = str(Path(__file__).resolve().parents[1] / "conf")
BUDGET = 12

PRICE_IN, PRICE_OUT = 1.0, 2.0  # USD per million prompt / generated tokens


def overrides(table: Path, *extra: str) -> list[str]:
    return [
        "benchmark=nasbench201",
        f"benchmark.table={table}",
        f"search.budget={BUDGET}",
        "output.plots=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(table, tmp_path_factory) -> tuple[Path, dict, ScriptedDebugLLM]:
    """An LLMatic run with the scripted LLM and prices, and a random search, in one root."""
    root = tmp_path_factory.mktemp("multirun")
    cfg = compose_cfg(
        *overrides(
            table,
            "llm=scripted",
            "llm.delay_s=0.02",  # each call takes measurable time
            "search.batch_size=4",
            "search.init_children=3",
            f"llm.price_per_million_input={PRICE_IN}",
            f"llm.price_per_million_output={PRICE_OUT}",
        )
    )
    llm = build_llm(cfg)
    assert isinstance(llm, ScriptedDebugLLM)
    summary = run_experiment(cfg, root / "llmatic_seed0", llm=llm)
    run_experiment(compose_cfg(*overrides(table, "search=random")), root / "random_seed0")
    return root, summary, llm


def read_candidates(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "candidates.jsonl").read_text().splitlines()]


def test_candidates_carry_their_share_of_the_llm(runs):
    root, _, llm = runs
    candidates = read_candidates(root / "llmatic_seed0")
    made = [c for c in candidates if c["prompt_id"] is not None]
    others = [c for c in candidates if c["prompt_id"] is None]
    assert made and others  # the seed network is no LLM's
    assert all(c["prompt_tokens"] > 0 and c["generation_tokens"] > 0 for c in made)
    assert all(c["llm_seconds"] > 0 for c in made)
    assert all(
        c["prompt_tokens"] == c["generation_tokens"] == c["llm_seconds"] == 0 for c in others
    )
    # Every token the backend counted is on some candidate.
    assert sum(c["prompt_tokens"] for c in made) == llm.total_prompt_tokens
    assert sum(c["generation_tokens"] for c in made) == llm.total_tokens
    # The emitter times the whole call, which holds the backend's own time (and a bit more).
    seconds = sum(c["llm_seconds"] for c in made)
    assert llm.total_seconds <= seconds + 1e-9
    assert seconds == pytest.approx(llm.total_seconds, rel=0.2)
    # A call's seconds are split evenly over its requests: one value per call.
    per_call = {}
    for c in made:
        per_call.setdefault((c["iteration"], c["operator"]), set()).add(c["llm_seconds"])
    assert all(len(values) == 1 for values in per_call.values())


def test_summary_cost_totals_per_candidate_and_per_evaluation(runs):
    root, summary, llm = runs
    assert summary == json.loads((root / "llmatic_seed0" / "summary.json").read_text())
    cost = summary["cost"]
    candidates = read_candidates(root / "llmatic_seed0")
    made = sum(c["prompt_id"] is not None for c in candidates)
    assert cost["prompt_tokens"] == llm.total_prompt_tokens
    assert cost["completion_tokens"] == llm.total_tokens == summary["llm_tokens"]
    assert cost["llm_seconds"] == pytest.approx(sum(c["llm_seconds"] for c in candidates))
    usd = (llm.total_prompt_tokens * PRICE_IN + llm.total_tokens * PRICE_OUT) / 1e6
    assert usd > 0 and cost["usd"] == pytest.approx(usd)
    assert (cost["price_per_million_input"], cost["price_per_million_output"]) == (
        PRICE_IN,
        PRICE_OUT,
    )
    keys = ("prompt_tokens", "completion_tokens", "llm_seconds", "usd")
    assert summary["evaluations"] == BUDGET
    for key in keys:
        assert cost["per_candidate"][key] == pytest.approx(cost[key] / made)
        assert cost["per_evaluation"][key] == pytest.approx(cost[key] / BUDGET)


def test_search_without_llm_costs_nothing(runs):
    root, _, _ = runs
    cost = json.loads((root / "random_seed0" / "summary.json").read_text())["cost"]
    assert cost["prompt_tokens"] == cost["completion_tokens"] == cost["usd"] == 0
    assert cost["per_candidate"] is None
    assert cost["per_evaluation"]["usd"] == 0


def test_summarize_cost_of_a_store_by_hand():
    store = CandidateStore()
    store.new("seed")
    store.new("mutation", prompt_id=0, prompt_tokens=300, generation_tokens=100, llm_seconds=1.5)
    store.new("mutation", prompt_id=1, prompt_tokens=100, generation_tokens=50, llm_seconds=1.5)
    cost = summarize_cost(
        store, evaluations=3, price_per_million_input=0.5, price_per_million_output=4.0
    )
    assert cost["usd"] == pytest.approx((400 * 0.5 + 150 * 4.0) / 1e6)
    assert cost["per_candidate"]["prompt_tokens"] == 200
    assert cost["per_evaluation"]["llm_seconds"] == pytest.approx(1.0)
    assert summarize_cost(CandidateStore(), evaluations=0)["per_evaluation"] is None


def test_old_candidates_without_the_fields_count_zero():
    # A checkpoint written before the fields existed unpickles Candidates without them.
    old = Candidate(id=0, operator="mutation", prompt_id=0, generation_tokens=5)
    del old.prompt_tokens, old.llm_seconds
    assert (old.prompt_tokens, old.llm_seconds) == (0, 0.0)
    assert json.loads(old.to_json())["prompt_tokens"] == 0


def test_prices_are_config_keys_defaulting_to_zero(table):
    cfg = compose_cfg(*overrides(table, "llm=openai"))
    assert llm_prices(cfg) == (0.0, 0.0)
    OmegaConf.set_struct(cfg, False)
    # A run's config.yaml from before the keys existed still loads.
    del cfg.llm["price_per_million_input"]
    del cfg.llm["price_per_million_output"]
    assert llm_prices(cfg) == (0.0, 0.0)
    bad = compose_cfg(*overrides(table, "llm.price_per_million_output=-1"))
    with pytest.raises(ConfigError, match="llm.price_per_million_output"):
        validate_config(bad)


# --- the comparison report ----------------------------------------------------------------


def test_comparison_reports_the_cost_of_real_runs(runs, tmp_path):
    root, summary, _ = runs
    result = compare([root], budgets=[BUDGET], out=tmp_path / "out")
    assert "### Cost (LLM)" in result.markdown
    row = next(line for line in result.markdown.splitlines() if line.startswith("| llmatic | 1/1"))
    assert f"{summary['cost']['prompt_tokens']:,}" in row
    assert "| random | 1/1 | 0 | 0 | 0.0 | 0.00 | 0.00 |" in result.markdown
    frame = pd.read_csv(tmp_path / "out" / "comparison.csv")
    llmatic = frame[frame["method"] == "llmatic"].iloc[0]
    assert llmatic["completion_tokens"] == summary["cost"]["completion_tokens"]
    assert llmatic["usd"] == pytest.approx(summary["cost"]["usd"], abs=1e-4)  # 4 decimals


def with_cost(run_dir: Path, **cost: float) -> Path:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["cost"] = cost
    path.write_text(json.dumps(summary))
    return run_dir


def test_cost_table_mean_std_over_seeds_and_old_runs(tmp_path):
    three = [{"status": "evaluated", "charged": True, "objective": 50.0, "test_objective": 40.0}]
    three *= 3
    for seed, (tokens, usd) in enumerate([(1000, 1.0), (3000, 3.0)]):
        with_cost(
            write_run(tmp_path, method="llmatic", seed=seed, candidates=three),
            prompt_tokens=2 * tokens,
            completion_tokens=tokens,
            llm_seconds=10.0 * (seed + 1),
            usd=usd,
        )
    old = write_run(tmp_path, method="rea", seed=0, candidates=three)  # no cost recorded
    assert all(math.isnan(v) for v in load_run(old).cost.values())
    markdown = compare([tmp_path], budgets=[3], out=tmp_path / "out").markdown
    assert (
        "| llmatic | 2/2 | 2,000 ± 1,414 | 4,000 ± 2,828 | 15.0 ± 7.1 | 2.00 ± 1.41 "
        "| 0.667 ± 0.471 |" in markdown
    )
    assert "| rea | 0/1 | n/a | n/a | n/a | n/a | n/a |" in markdown
    frame = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert frame[frame["method"] == "rea"]["usd"].isna().all()


# --- backends -----------------------------------------------------------------------------


def R(prompt: str, prefill: str = "") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, temperature=0.5, prefill=prefill)


def test_scripted_backend_counts_prompt_words_and_keeps_them_in_its_state():
    llm = ScriptedDebugLLM(seed=1)
    out = llm.generate([R("one two three", prefill=" four"), R("five")])
    assert [g.prompt_tokens for g in out] == [4, 1]
    assert llm.state_dict()["total_prompt_tokens"] == llm.total_prompt_tokens == 5
    resumed = ScriptedDebugLLM(seed=1)
    resumed.load_state_dict(llm.state_dict())
    assert resumed.total_prompt_tokens == 5
    # A checkpoint from before the counter existed still loads; the counter starts at 0.
    old = {k: v for k, v in llm.state_dict().items() if k != "total_prompt_tokens"}
    again = ScriptedDebugLLM(seed=1)
    again.load_state_dict(old)
    assert again._calls == llm._calls and again.total_prompt_tokens == 0


def test_openai_backend_reads_prompt_tokens_or_estimates_them():
    llm = OpenAICompatibleLLM(base_url="http://127.0.0.1:1/v1", model="m")
    request = R("x" * 10, prefill="yy")
    given = llm._parse(
        {"choices": [{"text": "abc"}], "usage": {"prompt_tokens": 42, "completion_tokens": 3}},
        request,
    )
    assert (given.prompt_tokens, given.num_tokens) == (42, 3)
    # No usage: about 4 characters per token, of the prompt with its prefill.
    estimated = llm._parse({"choices": [{"text": "abcde"}]}, request)
    assert (estimated.prompt_tokens, estimated.num_tokens) == (math.ceil(12 / 4), 2)
    chat = OpenAICompatibleLLM(base_url="http://127.0.0.1:1/v1", model="m", endpoint="chat")
    reply = {"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": None}}
    assert chat._parse(reply, R("x" * 9)).prompt_tokens == 3


class CountingLLM:
    """Answers with the prompt reversed; the prompt costs one token per character."""

    max_new_tokens, stop = 1, ()

    def generate(self, requests):
        return [
            Generation(text=r.prompt[::-1], num_tokens=2, prompt_tokens=len(r.prompt))
            for r in requests
        ]


def test_serve_reports_usage_and_the_client_reads_it():
    batcher = Batcher(CountingLLM(), max_batch=8, max_wait_s=0.01)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(batcher, "counting", 16))
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        llm = OpenAICompatibleLLM(base_url=url, model="counting", api_key_env=None)
        out = llm.generate([R("hello", prefill="!!"), R("abc")])
        assert [g.text for g in out] == ["!!olleh", "cba"]
        assert [(g.prompt_tokens, g.num_tokens) for g in out] == [(7, 2), (3, 2)]
        assert llm.total_prompt_tokens == 10 and llm.total_tokens == 4
        assert llm.state_dict()["total_prompt_tokens"] == 10
    finally:
        server.shutdown()
        server.server_close()


def test_serve_usage_sums_a_requests_prompts():
    from llmatic.llm.serve import _Job, _response

    job = _Job(prompts=["a", "b"], temperature=1.0, max_tokens=8, stop=())
    out = [Generation("x", num_tokens=3, prompt_tokens=5), Generation("y", 4, prompt_tokens=6)]
    usage = _response(out, job, "m", chat=False)["usage"]
    assert usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
