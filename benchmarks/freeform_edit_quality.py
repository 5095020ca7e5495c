"""Free-form networks: are the embedded model's edits valid, new, better than a classic mutation?

The measurement of issue 11's grammar (:mod:`llmatic.spaces.freeform_grammar`), in the
setting of ``+exp=freeform_digits``: the same config, space, prompts, LLM, sandbox and
training (6 epochs on scikit-learn's digits), built by the same factories as the search.

Parents: LLMatic's seed, and ``--parents - 1`` networks reached from it by 1-4 classic
mutations in a row (a fixed seed) that train to at least ``--min-val`` % validation
accuracy (80 by default: improving on a network that did not learn is easy). Operators,
from the same parents:

- ``llm``: the default LLM mutation, i.e. the free-form prompter with the grammar, at the
  search's initial temperature; ``--samples`` per parent, cycling through LLMatic's 13
  mutation prompts (sample ``g`` over all parents uses prompt ``g mod 13``);
- ``llm-free``: the same prompts without the grammar (``llm.constrained=false``; what the
  grammar buys), ``--free-samples`` in all;
- ``classic``: one random edit of one layer or setting
  (:func:`~llmatic.spaces.freeform_grammar.mutate_spec`), as many as ``llm``.

Per operator: valid (the code builds and trains in the sandbox), changed (valid and not
the parent's network: a different graph key), better (valid and a higher validation
accuracy than its parent), mean change of validation accuracy, and for the LLM the tokens
and seconds per sample. ``better`` of ``llm`` is compared with ``classic`` by Fisher's exact
test (two-sided).

Usage::

    python -m benchmarks.freeform_edit_quality [--parents 16] [--samples 8] [--free-samples 16]
        [--out PATH] [OVERRIDE ...]     # e.g. llm.prompt_format=chat

Writes ``benchmarks/results/freeform_edit_quality.{json,md}`` and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from benchmarks.edit_quality import fisher
from llmatic.errors import CandidateError
from llmatic.run.build import (
    BENCHMARK_PRELOAD,
    build_benchmark,
    build_llm,
    build_prompt_settings,
    build_space,
)
from llmatic.run.config import sandbox_limits
from llmatic.sandbox import Sandbox
from llmatic.spaces.freeform_grammar import mutate_spec, parse_spec, write_spec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def make_parents(
    space: Any, count: int, rng: np.random.Generator, score: Any, min_val: float
) -> list[str]:
    """The seed and ``count - 1`` trained networks 1-4 classic mutations away from it.

    A network joins only if it trains to at least ``min_val`` % validation accuracy
    (``score(code)`` trains it): beating a parent that did not learn says nothing.
    """
    grammar, prefill = space.grammar, "class Net(nn.Module):\n"
    seed = space.seed_code()
    parents, tried = [seed], {seed}
    while len(parents) < count:
        spec = parse_spec(grammar, seed[len(prefill) :])
        for _ in range(int(rng.integers(1, 5))):
            spec = mutate_spec(grammar, spec, rng=rng)
        code = prefill + write_spec(grammar, spec)
        if code in tried:
            continue
        tried.add(code)
        row = score(code)
        if row["valid"] and row["val"] >= min_val:
            parents.append(code)
    return parents


def evaluate(space: Any, bench: Any, sandbox: Sandbox, code: str, cache: dict) -> dict:
    """Key (sandbox) and training (sandbox) of ``code``, once per code."""
    if code not in cache:
        row: dict[str, Any] = {"valid": False}
        try:
            call = space.identify_call(code=code)
            identity = sandbox.run(call.target, call.payload, check=call.check)
            if not identity.ok:
                raise CandidateError(identity.error_kind or "exception", identity.error or "")
            result = space.evaluate(benchmark=bench, key=space.key_of(identity.value), code=code)
            row = {
                "valid": True,
                "key": space.key_of(identity.value),
                "val": result.objective,
                "measures": result.measures,
            }
        except CandidateError as err:
            row["error_kind"] = err.kind
        cache[code] = row
    return cache[code]


def summarise(name: str, children: list[dict], parents: dict[str, dict]) -> dict[str, Any]:
    """Rates of one operator's children (``{"parent", "code", "tokens", "seconds"}``)."""
    n = len(children)
    valid = [c for c in children if c["eval"]["valid"]]
    changed = [c for c in valid if c["eval"]["key"] != parents[c["parent"]]["key"]]
    better = [c for c in valid if c["eval"]["val"] > parents[c["parent"]]["val"]]
    deltas = [c["eval"]["val"] - parents[c["parent"]]["val"] for c in valid]
    tokens = [c["tokens"] for c in children if c.get("tokens") is not None]
    seconds = [c["seconds"] for c in children if c.get("seconds") is not None]
    return {
        "operator": name,
        "samples": n,
        "valid": len(valid),
        "changed": len(changed),
        "improved": len(better),  # the key edit_quality.fisher reads
        "distinct": len({c["eval"].get("key") for c in valid}),
        "mean_delta_val": statistics.fmean(deltas) if deltas else None,
        "tokens_per_sample": statistics.fmean(tokens) if tokens else None,
        "seconds_per_sample": statistics.fmean(seconds) if seconds else None,
    }


def sample_llm(
    space: Any, llm: Any, cfg: Any, parents: list[str], per_parent: int, *, constrained: bool
) -> list[dict]:
    """``per_parent`` LLM mutations of each parent, prompts cycled; one batch call."""
    settings = dataclasses.replace(build_prompt_settings(cfg, llm), constrained=constrained)
    prompter = space.prompter(settings, avoid=set())
    prompts = prompter.mutation_prompts
    jobs = [(p, g % len(prompts)) for g, p in enumerate(parents * per_parent)]
    jobs.sort(key=lambda job: parents.index(job[0]))  # rows of one parent share a prefix
    temperature = float(cfg.search.temperature.initial)
    requests = [prompter.mutation(p, prompts[k], temperature) for p, k in jobs]
    start = time.perf_counter()
    generations = llm.generate(requests)
    elapsed = time.perf_counter() - start
    total_tokens = sum(g.num_tokens for g in generations) or 1
    children = []
    for (parent, prompt_id), request, generation in zip(jobs, requests, generations, strict=True):
        try:
            code = prompter.to_code(request, generation)
        except CandidateError:
            code = None
        children.append(
            {
                "parent": parent,
                "prompt_id": prompt_id,
                "code": code,
                "tokens": generation.num_tokens,
                # A batch's time, shared among its rows by their tokens.
                "seconds": elapsed * generation.num_tokens / total_tokens,
            }
        )
    return children


def markdown(rows: list[dict], test: dict | None, meta: dict) -> str:
    def pct(k: int, n: int) -> str:
        return f"{100 * k / n:.0f} % ({k}/{n})" if n else "n/a"

    def num(x: float | None, spec: str) -> str:
        return "n/a" if x is None else format(x, spec)

    lines = [
        "# Free-form edit quality (digits, `+exp=freeform_digits`)",
        "",
        f"`{meta['command']}`: {meta['parents']} parents (the seed, {meta['seed_val']:.1f} % "
        f"val, and networks 1-4 classic mutations from it with {meta['parent_vals']} % val), "
        f"{meta['samples']} LLM samples each at temperature "
        f"{meta['temperature']}; {meta['llm']}; {meta['cpus']} CPUs; "
        f"{meta['seconds']:.0f} s in all.",
        "",
        "| operator | samples | valid | changed | better than parent | distinct | "
        "mean Δ val (pts) | tokens/sample | s/sample |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['operator']} | {r['samples']} | {pct(r['valid'], r['samples'])} | "
            f"{pct(r['changed'], r['samples'])} | {pct(r['improved'], r['samples'])} | "
            f"{r['distinct']} | {num(r['mean_delta_val'], '+.2f')} | "
            f"{num(r['tokens_per_sample'], '.0f')} | {num(r['seconds_per_sample'], '.3f')} |"
        )
    if test:
        lines += [
            "",
            f"`llm` against `classic`, better-than-parent among valid children: Fisher's "
            f"exact test, odds ratio {test['odds_ratio']:.2f}, p = {test['p_value']:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parents", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8, help="LLM samples per parent")
    parser.add_argument("--free-samples", type=int, default=16, help="unconstrained, in all")
    parser.add_argument("--min-val", type=float, default=80.0, help="parents' least val %%")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. llm.prompt_format=chat"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "freeform_edit_quality")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(
            "config", overrides=["+exp=freeform_digits", f"seed={args.seed}", *args.overrides]
        )
    rng = np.random.default_rng(args.seed)
    space = build_space(cfg)
    llm = build_llm(cfg, space=space)
    grammar, prefill = space.grammar, "class Net(nn.Module):\n"
    cache: dict[str, dict] = {}
    limits = sandbox_limits(cfg)
    with Sandbox(limits=limits, preload=(*space.sandbox_preload, *BENCHMARK_PRELOAD)) as box:
        bench = build_benchmark(cfg, box)

        def score(code: str) -> dict:
            return evaluate(space, bench, box, code, cache)

        parents = make_parents(space, args.parents, rng, score, args.min_val)
        parent_rows = {p: score(p) for p in parents}
        llm_children = sample_llm(space, llm, cfg, parents, args.samples, constrained=True)
        free_per_parent = max(1, args.free_samples // len(parents))
        free_children = sample_llm(space, llm, cfg, parents, free_per_parent, constrained=False)
        classic_children = [
            {
                "parent": c["parent"],
                "code": prefill
                + write_spec(
                    grammar,
                    mutate_spec(grammar, parse_spec(grammar, c["parent"][len(prefill) :]), rng=rng),
                ),
            }
            for c in llm_children
        ]
        for c in [*llm_children, *free_children, *classic_children]:
            c["eval"] = (
                score(c["code"])
                if c["code"] is not None
                else {"valid": False, "error_kind": "no_code"}
            )
    rows = [
        summarise("llm", llm_children, parent_rows),
        summarise("llm-free", free_children, parent_rows),
        summarise("classic", classic_children, parent_rows),
    ]
    test = fisher(rows[0], rows[2])
    meta = {
        "command": "python -m benchmarks.freeform_edit_quality "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "parents": len(parents),
        "seed_val": parent_rows[parents[0]]["val"],
        "parent_vals": ", ".join(f"{parent_rows[p]['val']:.1f}" for p in parents[1:]),
        "samples": args.samples,
        "temperature": float(cfg.search.temperature.initial),
        "llm": f"{cfg.llm.model} ({cfg.llm.backend})",
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "seconds": time.perf_counter() - start,
    }
    report = {
        "meta": meta,
        "rows": rows,
        "fisher_llm_vs_classic": test,
        "parents": [{"code": p, **parent_rows[p]} for p in parents],
        "children": {
            "llm": [_row(c) for c in llm_children],
            "llm-free": [_row(c) for c in free_children],
            "classic": [_row(c) for c in classic_children],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    text = markdown(rows, test, meta)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return report


def _row(child: dict) -> dict:
    return {
        "parent": child["parent"],
        "prompt_id": child.get("prompt_id"),
        "code": child["code"],
        "tokens": child.get("tokens"),
        **{k: v for k, v in child["eval"].items() if k != "measures"},
    }


if __name__ == "__main__":
    main()
