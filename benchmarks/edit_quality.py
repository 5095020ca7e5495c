"""Are the LLM's cell edits any good? Per prompt, against random mutation, on the same parents.

Reproduces the measurement in the spec's table "How good the edits are" with *our* mutation
operator: NB201 cells written as code, scored by their CIFAR-10 200-epoch validation
accuracy looked up in a NAS-Bench-201 table. Parents: ``--parents`` archs drawn with a
fixed seed among those with validation accuracy in ``[--min-val, --max-val]``.

Operators, all from the same parents:

- ``llm``: the default LLM mutation, i.e. :class:`llmatic.nb201.prompts.CellPrompter`
  (scope ``edges``, completion format, constrained decoding, 1-2 edges changed) with the
  embedded SmolLM2-135M through :class:`~llmatic.llm.transformers_backend.TransformersLLM`,
  for every prompt of ``conf/prompts/nb201_cell.yaml`` (``mutation``) at every
  ``--temperatures``. The samples of one parent cycle through the prompts (sample ``g``
  of the setting, counted over all parents, uses prompt ``g mod #prompts``), so each prompt
  gets the same number of samples but sees a different subset of parents;
- ``llm-unconstrained``: the same with ``constrained=False`` (what the grammar buys), at
  the first temperature and for the first two prompts only;
- ``llm-feedback-K`` (``--feedback K``): the ``llm`` operator with in-context feedback
  (``search.feedback_elites=K``): the prompt also shows K other cells with their
  validation accuracy, worst first: the best K of ``--feedback-pool`` random archs of the
  table (drawn per parent), as the fittest elites of an archive that size would be;
- ``llm-history-K`` (``--history K``): the ``llm`` operator with the parent's own history
  (``search.feedback_elites=K search.feedback_from=children``): the best K of 2K random
  one-edge neighbours of the parent (the children a search would have evaluated), worst
  first, then the parent, each with its validation accuracy;
- ``llm-1edge`` (``--one-edge``): the ``llm`` operator with a trust region of one edge
  (``search.max_changes=1``): the model still chooses which edge changes and to what,
  which is exactly the choice ``random-1`` makes at random;
- ``random-1``: NB201's REA mutation (one edge gets a different operation,
  :func:`llmatic.spaces.nb201.mutate_arch`); ``random-2``: two of them in a row
  (the LLM's trust region of at most 2 edges; it may undo itself).

Per operator (and per prompt for ``llm``): valid rate, unchanged rate (child arch ==
parent arch, among valid), improved-on-parent rate (child val > parent val, among valid),
mean change in val accuracy (among valid), mean edges changed, share of ``none``
operations in the valid children and in their parents, and for the LLM the tokens and
seconds per sample (a batch's time is shared among its rows by their tokens). The improved
rate of each LLM setting is compared with ``random-1`` by Fisher's exact test (two-sided).

Best of N (N = ``--samples``): per parent, the best child among its first N samples of
each setting (random operators: their first N of ``--random-samples``), with the share of
parents it improves on and its mean gain. It compares the operators as a search that
evaluates N children of a parent uses them. ``--render RESULT.json`` recomputes it for a
saved result (the samples are in the JSON) without sampling again.

The generated code is mapped to its arch with :func:`llmatic.nb201.inspect.inspect_cell`
*in this process*, not in the search's sandbox: this benchmark runs our own embedded
model's output only, the constrained outputs are fixed by a grammar up to the operation
names, and the unconstrained ones are constructor lines after a fixed prefill. Do not
point it at a model you do not trust.

Time: the LLM samples ~25-60 tokens/s on a shared 2-core CPU (~110 tokens per sample), so
the defaults (4 LLM samples per parent per temperature instead of the spec's 8, 2 per
parent unconstrained) keep a run near 10 minutes; the random operators are free and get 8.

Usage::

    python -m benchmarks.edit_quality [--table PATH] [--temperatures 0.5 0.9] [--samples 4]
        [--parents 12]
    python -m benchmarks.edit_quality --render benchmarks/results/edit_quality.json

Prints a Markdown table and writes ``benchmarks/results/edit_quality.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmatic.benchmarks.nasbench201 import NasBench201Table
from llmatic.errors import CandidateError
from llmatic.nb201.cell import EDGES, arch_to_code, parse_arch
from llmatic.spaces.nb201 import mutate_arch, neighbour_archs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TABLE = Path("/work/shared/data/nasbench201/nb201.csv")
PROMPTS = ROOT / "conf" / "prompts" / "nb201_cell.yaml"
UNCONSTRAINED_PROMPTS = 2


# ------------------------------------------------------------------------------ sampling


def pick_parents(
    table: NasBench201Table, n: int, lo: float, hi: float, seed: int
) -> list[tuple[str, float]]:
    """``n`` (arch, val) drawn without replacement among archs with ``lo <= val <= hi``."""
    val = table.column("cifar10", "val", "200")
    pool = np.flatnonzero((val >= lo) & (val <= hi))
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} archs with validation accuracy in [{lo}, {hi}]")
    rows = np.random.default_rng(seed).choice(pool, size=n, replace=False)
    archs = table.archs
    return [(archs[r], float(val[r])) for r in sorted(rows)]


def named_edge(instruction: str) -> tuple[int, int] | None:
    """The edge an instruction names (``self.edge_1_3`` -> ``(1, 3)``), if any."""
    found = re.search(r"self\.edge_(\d)_(\d)", instruction)
    return (int(found[1]), int(found[2])) if found else None


def edges_changed(a: str, b: str) -> int:
    pa, pb = parse_arch(a), parse_arch(b)
    return sum(pa[e] != pb[e] for e in EDGES)


def none_share(arch: str) -> float:
    return sum(op == "none" for op in parse_arch(arch).values()) / len(EDGES)


def record(
    table: NasBench201Table,
    parent: tuple[str, float],
    child: str | None,
    error: str | None,
    **extra: Any,
) -> dict[str, Any]:
    """One sample: parent, child arch (None when invalid), their accuracies."""
    arch, val = parent
    out: dict[str, Any] = {"parent": arch, "parent_val": val, "child": child, "error": error}
    if child is not None:
        try:
            out["child_val"] = table.value(child, "cifar10", "val", "200")
        except KeyError:
            out.update(child=None, error="not_in_table")
    return {**out, **extra}


def run_random(
    table: NasBench201Table,
    parents: list[tuple[str, float]],
    steps: int,
    samples: int,
    seed: int,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, steps])
    out = []
    for parent in parents:
        for _ in range(samples):
            child = parent[0]
            for _ in range(steps):
                child = mutate_arch(child, rng)
            out.append(record(table, parent, child, None))
    return out


def run_llm(
    table: NasBench201Table,
    parents: list[tuple[str, float]],
    prompts: Sequence[str],
    crossover: str,
    temperature: float,
    samples: int,
    constrained: bool,
    label: str,
    examples: dict[str, list[tuple[str, float]]] | None = None,
    max_changes: int = 2,
) -> list[dict[str, Any]]:
    """Samples ``samples`` mutations per parent; each sample's prompt cycles through ``prompts``.

    Under the grammar a child changes 1 to ``max_changes`` edges of its parent.
    """
    from llmatic.llm.transformers_backend import TransformersLLM
    from llmatic.nb201.inspect import inspect_cell
    from llmatic.nb201.prompts import STOP, CellPrompter

    prompter = CellPrompter(
        mutation_prompts=prompts,
        crossover_prompt=crossover,
        scope="edges",
        prompt_format="completion",
        constrained=constrained,
        min_changes=1,
        max_changes=max_changes,
    )
    # One backend per setting (the model itself is loaded once per process): each
    # setting's samples do not depend on which settings ran before it.
    llm = TransformersLLM(
        model="smollm2-135m",
        stop=STOP["edges"],
        max_new_tokens=150,
        batch_size=16,
        seed=0,
        num_threads=1,
    )
    jobs = []  # (parent, prompt id, request)
    for p, parent in enumerate(parents):
        for k in range(samples):
            pid = (p * samples + k) % len(prompts)
            shown = (examples or {}).get(parent[0], [])
            request = prompter.mutation(arch_to_code(parent[0]), prompts[pid], temperature, shown)
            jobs.append((parent, pid, request))
    # Same prompt together: rows of a batch then have nearly the same length.
    jobs.sort(key=lambda job: job[1])
    out = []
    for first in range(0, len(jobs), llm.batch_size):
        chunk = jobs[first : first + llm.batch_size]
        start = time.perf_counter()
        generations = llm.generate([request for _, _, request in chunk])
        seconds = time.perf_counter() - start
        tokens = sum(g.num_tokens for g in generations) or 1
        for (parent, pid, request), generation in zip(chunk, generations, strict=True):
            child, error = None, None
            try:
                code = prompter.to_code(request, generation)
                child = inspect_cell({"code": code, "channels": 4, "size": 8})["arch"]
            except CandidateError as err:
                error = err.kind
            out.append(
                record(
                    table,
                    parent,
                    child,
                    error,
                    prompt=pid,
                    named_edge=named_edge(prompts[pid]),
                    tokens=generation.num_tokens,
                    seconds=seconds * generation.num_tokens / tokens,
                    text=generation.text,
                )
            )
        done = first + len(chunk)
        print(f"    {label}: {done}/{len(jobs)} samples, {seconds:.0f} s this batch", flush=True)
    return out


def feedback_examples(
    table: NasBench201Table, parents: list[tuple[str, float]], k: int, pool: int, seed: int
) -> dict[str, list[tuple[str, float]]]:
    """Per parent: the best ``k`` of ``pool`` random archs (not the parent) as code, with
    their validation accuracy, worst first (what ``feedback_elites=k`` shows)."""
    val = table.column("cifar10", "val", "200")
    archs = table.archs
    out = {}
    for i, (arch, _) in enumerate(parents):
        rows = np.random.default_rng([seed, 7, i]).choice(len(archs), size=pool, replace=False)
        best = sorted((r for r in rows if archs[r] != arch), key=lambda r: -val[r])[:k]
        out[arch] = [(arch_to_code(archs[r]), float(val[r])) for r in reversed(best)]
    return out


# ------------------------------------------------------------------------------- summary


def history_examples(
    table: NasBench201Table, parents: list[tuple[str, float]], k: int, seed: int
) -> dict[str, list[tuple[str, float]]]:
    """Per parent: the best ``k`` of ``2k`` random one-edge neighbours (the children a
    search would have evaluated), worst first, then the parent itself, as code with their
    validation accuracy (what ``feedback_from=children`` shows)."""
    out = {}
    for i, (arch, val) in enumerate(parents):
        rng = np.random.default_rng([seed, 11, i])
        neighbours = neighbour_archs(arch)
        picked = rng.choice(len(neighbours), size=min(2 * k, len(neighbours)), replace=False)
        scored = [
            (neighbours[j], table.value(neighbours[j], "cifar10", "val", "200")) for j in picked
        ]
        best = sorted(scored, key=lambda x: -x[1])[:k]
        out[arch] = [(arch_to_code(a), v) for a, v in reversed(best)] + [(arch_to_code(arch), val)]
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    valid = [r for r in rows if r["child"] is not None]
    n, v = len(rows), len(valid)
    deltas = [r["child_val"] - r["parent_val"] for r in valid]
    errors: dict[str, int] = {}
    for r in rows:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    out: dict[str, Any] = {
        "samples": n,
        "valid": v,
        "valid_rate": v / n if n else None,
        "unchanged": sum(r["child"] == r["parent"] for r in valid),
        "improved": sum(d > 0 for d in deltas),
        "mean_change": statistics.fmean(deltas) if deltas else None,
        "median_change": statistics.median(deltas) if deltas else None,
        "mean_edges_changed": (
            statistics.fmean(edges_changed(r["parent"], r["child"]) for r in valid)
            if valid
            else None
        ),
        "none_share_children": (
            statistics.fmean(none_share(r["child"]) for r in valid) if valid else None
        ),
        "none_share_parents": (
            statistics.fmean(none_share(r["parent"]) for r in valid) if valid else None
        ),
        "distinct_children": len({r["child"] for r in valid}),
        # Instruction following, where the prompt names an edge: it changed in the child.
        "named_edge_changed": sum(
            parse_arch(r["child"])[tuple(r["named_edge"])]
            != parse_arch(r["parent"])[tuple(r["named_edge"])]
            for r in valid
            if r.get("named_edge")
        ),
        "named_edge_children": sum(1 for r in valid if r.get("named_edge")),
        "errors": errors,
    }
    out["unchanged_rate"] = out["unchanged"] / v if v else None
    out["improved_rate"] = out["improved"] / v if v else None
    if rows and "tokens" in rows[0]:
        out["tokens_per_sample"] = statistics.fmean(r["tokens"] for r in rows)
        out["seconds_per_sample"] = statistics.fmean(r["seconds"] for r in rows)
    return out


def best_of(recs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Each parent's best child among its first ``n`` samples (an invalid sample scores
    nothing but still counts as one of the ``n``): how many parents it improves on, and the
    mean and median gain of that best child over its parent (accuracy points)."""
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_parent.setdefault(r["parent"], []).append(r)
    gains = []
    for parent_recs in by_parent.values():
        vals = [r["child_val"] for r in parent_recs[:n] if r["child"] is not None]
        if vals:
            gains.append(max(vals) - parent_recs[0]["parent_val"])
    return {
        "n": n,
        "parents": len(by_parent),
        "scored": len(gains),
        "improved": sum(g > 0 for g in gains),
        "mean_gain": statistics.fmean(gains) if gains else None,
        "median_gain": statistics.median(gains) if gains else None,
    }


def best_of_rows(samples: dict[str, list[dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    """:func:`best_of` per setting (``samples`` keyed ``operator`` or ``operator@T``), for
    the settings with at least ``n`` samples of every parent."""
    rows = []
    for key, recs in samples.items():
        operator, _, temperature = key.partition("@")
        counts = Counter(r["parent"] for r in recs)
        if counts and min(counts.values()) >= n:
            rows.append(
                {
                    "operator": operator,
                    "temperature": float(temperature) if temperature else None,
                    **best_of(recs, n),
                }
            )
    return rows


def fisher(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """Fisher's exact test (two-sided) of improved among valid, ``a`` against ``b``."""
    from scipy.stats import fisher_exact

    if not a["valid"] or not b["valid"]:
        return None
    table = [
        [a["improved"], a["valid"] - a["improved"]],
        [b["improved"], b["valid"] - b["improved"]],
    ]
    odds, p = fisher_exact(table, alternative="two-sided")
    return {"table": table, "odds_ratio": float(odds), "p_value": float(p)}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown(
    rows: list[dict[str, Any]],
    tests: list[dict[str, Any]],
    meta: dict,
    best: Sequence[dict[str, Any]] = (),
) -> str:
    head = (
        "| operator | T | prompt | valid | unchanged | improved | mean Δ val | median Δ | "
        "edges changed | none: child / parent | distinct | tok/sample | s/sample |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        s = r["summary"]
        improved = f"{s['improved']}/{s['valid']} ({_pct(s['improved_rate'])})"
        lines.append(
            f"| {r['operator']} | {_num(r['temperature'], '.1f')} | {r['prompt_label']} | "
            f"{s['valid']}/{s['samples']} | {_pct(s['unchanged_rate'])} | {improved} | "
            f"{_num(s['mean_change'], '+.1f')} | {_num(s['median_change'], '+.1f')} | "
            f"{_num(s['mean_edges_changed'], '.2f')} | "
            f"{_pct(s['none_share_children'])} / {_pct(s['none_share_parents'])} | "
            f"{s['distinct_children']} | {_num(s.get('tokens_per_sample'), '.0f')} | "
            f"{_num(s.get('seconds_per_sample'), '.2f')} |"
        )
    failures = "\n".join(
        f"- {r['operator']} T={_num(r['temperature'], '.1f')}: {r['summary']['errors']}"
        for r in rows
        if r["prompt"] is None and r["summary"]["errors"]
    )
    named = "\n".join(
        f"- {r['operator']} T={_num(r['temperature'], '.1f')}: "
        f"{r['summary']['named_edge_changed']}/{r['summary']['named_edge_children']}"
        for r in rows
        if r["prompt"] is None and r["summary"].get("named_edge_children")
    )
    prompts = "\n".join(f"- p{i}: {text}" for i, text in enumerate(meta["prompts"]))
    test_lines = "\n".join(
        f"- {t['operator']} T={t['temperature']} vs random-1: improved "
        f"{t['table'][0][0]}/{sum(t['table'][0])} vs {t['table'][1][0]}/{sum(t['table'][1])}, "
        f"Fisher exact two-sided p = {t['p_value']:.3g}"
        for t in tests
    )
    return (
        f"## Edit quality: NB201 cells, CIFAR-10 200-epoch validation accuracy\n\n"
        f"{meta['parents']} parents with val in [{meta['min_val']}, {meta['max_val']}] "
        f"(seed {meta['seed']}); LLM {meta['samples']} samples per parent per temperature "
        f"(prompts cycled), unconstrained {meta['unconstrained_samples']} per parent, random "
        f"{meta['random_samples']} per parent. Δ in accuracy points; unchanged, improved, Δ, "
        f"edges and none share among valid children. Run time {meta['seconds']:.0f} s.\n\n"
        + head
        + "\n".join(lines)
        + (f"\n\nInvalid samples by failure kind:\n{failures}" if failures else "")
        + (f"\n\nThe edge the prompt names changed in the child:\n{named}" if named else "")
        + f"\n\nPrompts:\n{prompts}\n\nImproved on parent, LLM vs random-1 "
        "(small samples: read the p-values as rough):\n"
        + test_lines
        + "\n"
        + _best_of_markdown(best)
    )


def _best_of_markdown(best: Sequence[dict[str, Any]]) -> str:
    if not best:
        return ""
    n = best[0]["n"]
    lines = "\n".join(
        f"| {b['operator']} | {_num(b['temperature'], '.1f')} | "
        f"{b['improved']}/{b['parents']} ({_pct(b['improved'] / b['parents'])}) | "
        f"{_num(b['mean_gain'], '+.2f')} | {_num(b['median_gain'], '+.2f')} |"
        for b in best
    )
    return (
        f"\nBest of N = {n} per parent (the best child among each parent's first {n} samples; "
        "what an operator gives when N children of one parent are all evaluated):\n\n"
        "| operator | T | parents improved | mean gain of the best | median gain |\n"
        "|---|---|---|---|---|\n" + lines + "\n"
    )


# ---------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument(
        "--samples", type=int, default=4, help="LLM samples per parent and temperature"
    )
    parser.add_argument("--unconstrained-samples", type=int, default=2)
    parser.add_argument("--random-samples", type=int, default=8)
    parser.add_argument("--parents", type=int, default=12)
    parser.add_argument("--min-val", type=float, default=80.0)
    parser.add_argument("--max-val", type=float, default=88.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--feedback", type=int, default=0, help="also run llm-feedback-K with K elites shown"
    )
    parser.add_argument("--feedback-pool", type=int, default=64)
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="also run llm-history-K: the parent's K best of 2K evaluated children, then it",
    )
    parser.add_argument(
        "--one-edge",
        action="store_true",
        help="also run llm-1edge: the grammar lets the model change exactly one edge",
    )
    parser.add_argument(
        "--prompts",
        type=Path,
        default=PROMPTS,
        help="the mutation instructions (a conf/prompts file; default: nb201_cell.yaml)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "edit_quality.json")
    parser.add_argument(
        "--render",
        type=Path,
        help="re-render the Markdown (with the best-of-N section) of a saved JSON result, "
        "without sampling; writes it next to the JSON",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        return render(args.render)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    started = time.perf_counter()
    load_start = os.getloadavg()
    table = NasBench201Table.load(args.table)
    parents = pick_parents(table, args.parents, args.min_val, args.max_val, args.seed)
    config = yaml.safe_load(args.prompts.read_text())
    prompts, crossover = list(config["mutation"]), config["crossover"]
    print(f"{len(parents)} parents, {len(prompts)} prompts", flush=True)

    samples: dict[tuple[str, float | None], list[dict[str, Any]]] = {}
    for steps in (1, 2):
        samples[(f"random-{steps}", None)] = run_random(
            table, parents, steps, args.random_samples, args.seed
        )
    for temperature in args.temperatures:
        print(f"  llm T={temperature} ...", flush=True)
        samples[("llm", temperature)] = run_llm(
            table, parents, prompts, crossover, temperature, args.samples, True, "llm"
        )
    if args.feedback > 0:
        shown = feedback_examples(table, parents, args.feedback, args.feedback_pool, args.seed)
        label = f"llm-feedback-{args.feedback}"
        for temperature in args.temperatures:
            print(f"  {label} T={temperature} ...", flush=True)
            samples[(label, temperature)] = run_llm(
                table, parents, prompts, crossover, temperature, args.samples, True, label, shown
            )
    if args.history > 0:
        shown = history_examples(table, parents, args.history, args.seed)
        label = f"llm-history-{args.history}"
        for temperature in args.temperatures:
            print(f"  {label} T={temperature} ...", flush=True)
            samples[(label, temperature)] = run_llm(
                table, parents, prompts, crossover, temperature, args.samples, True, label, shown
            )
    if args.one_edge:
        for temperature in args.temperatures:
            print(f"  llm-1edge T={temperature} ...", flush=True)
            samples[("llm-1edge", temperature)] = run_llm(
                table,
                parents,
                prompts,
                crossover,
                temperature,
                args.samples,
                True,
                "llm-1edge",
                max_changes=1,
            )
    if args.unconstrained_samples > 0:
        temperature = args.temperatures[0]
        print(f"  llm-unconstrained T={temperature} ...", flush=True)
        samples[("llm-unconstrained", temperature)] = run_llm(
            table,
            parents,
            prompts[:UNCONSTRAINED_PROMPTS],
            crossover,
            temperature,
            args.unconstrained_samples,
            False,
            "llm-unconstrained",
        )

    rows = []
    for (operator, temperature), recs in samples.items():
        rows.append(
            {
                "operator": operator,
                "temperature": temperature,
                "prompt": None,
                "prompt_label": "all",
                "summary": summarise(recs),
            }
        )
        if operator.startswith("llm"):
            for pid in sorted({r["prompt"] for r in recs}):
                rows.append(
                    {
                        "operator": operator,
                        "temperature": temperature,
                        "prompt": pid,
                        "prompt_label": f"p{pid}",
                        "summary": summarise([r for r in recs if r["prompt"] == pid]),
                    }
                )
    base = next(r["summary"] for r in rows if r["operator"] == "random-1")
    tests = []
    for r in rows:
        if r["operator"].startswith("llm") and r["prompt"] is None:
            test = fisher(r["summary"], base)
            if test is not None:
                tests.append({"operator": r["operator"], "temperature": r["temperature"], **test})

    meta = {
        "table": str(args.table),
        "metric": "cifar10_val (200 epochs)",
        "parents": len(parents),
        "min_val": args.min_val,
        "max_val": args.max_val,
        "seed": args.seed,
        "samples": args.samples,
        "unconstrained_samples": args.unconstrained_samples,
        "random_samples": args.random_samples,
        "feedback": args.feedback,
        "feedback_pool": args.feedback_pool,
        "history": args.history,
        "one_edge": args.one_edge,
        "temperatures": args.temperatures,
        "prompts": prompts,
        "prompts_file": str(args.prompts),
        "seconds": time.perf_counter() - started,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    keyed = {f"{op}@{t}" if t is not None else op: recs for (op, t), recs in samples.items()}
    best = best_of_rows(keyed, args.samples)
    md = markdown(rows, tests, meta, best)
    print("\n" + md)
    result = {
        "meta": meta,
        "parent_archs": [{"arch": a, "val": v} for a, v in parents],
        "rows": rows,
        "tests_vs_random_1": tests,
        "best_of": best,
        "samples": keyed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return result


def render(path: Path) -> dict[str, Any]:
    """Recomputes the best-of-N section of a saved result and rewrites its Markdown."""
    result = json.loads(path.read_text())
    result["best_of"] = best_of_rows(result["samples"], result["meta"]["samples"])
    md = markdown(result["rows"], result["tests_vs_random_1"], result["meta"], result["best_of"])
    path.write_text(json.dumps(result, indent=1) + "\n")
    path.with_suffix(".md").write_text(md)
    print(md + f"\nwrote {path} and {path.with_suffix('.md')}")
    return result


if __name__ == "__main__":
    main()
