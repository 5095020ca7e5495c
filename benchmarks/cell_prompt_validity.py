"""How often the embedded LLM edits an NB201 cell into a valid, changed cell, per prompt format.

For 8 random parent cells and 4 edit instructions, each prompt format is sampled at each
temperature; every sample is extracted, instantiated (C=4) and mapped back to an arch
string. Formats:

- ``full``: completion format, the model writes the whole class after the prefill
  ``class Cell(nn.Module):``;
- ``full_nonl``: ``full`` with the prefill's trailing newline left to the model;
- ``init``: the same prompt, prefilled up to ``self.edge_0_1 = OPS["``: the model writes
  the six edge lines only and the standard ``forward`` is appended;
- ``chat``: the same content as a user message through the chat template, the assistant's
  answer prefilled like ``init`` (inside a python fence).

Also measures raw throughput (tokens/s) per batch size. Prints a table and writes JSON.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cell_prompt_validity.py [--quick]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from llmatic.errors import CandidateError  # noqa: E402
from llmatic.llm.base import GenerationRequest  # noqa: E402
from llmatic.llm.extraction import extract_class_code  # noqa: E402
from llmatic.llm.models import EMBEDDED_MODEL, resolve_model  # noqa: E402
from llmatic.llm.transformers_backend import TransformersLLM  # noqa: E402
from llmatic.nb201.cell import CELL_PREAMBLE, EDGES, arch_to_code, format_arch, parse_arch  # noqa: E402
from llmatic.nb201.mapping import cell_to_arch  # noqa: E402
from llmatic.nb201.ops import OP_NAMES, OPS  # noqa: E402
from llmatic.network_code import instantiate  # noqa: E402

INSTRUCTIONS = (
    "Replace one operation of the above cell with a different one to improve it.",
    "Use more convolutions in the above cell.",
    "Add a skip connection to the above cell.",
    "Improve the above cell.",
)
FULL_PREFILL = "class Cell(nn.Module):\n"
# The same without the newline: this tokenizer spells newline + indentation as one token
# ("\n    "), so a prefill ending in a bare "\n" leaves the model after a token it rarely saw
# followed by indentation (it then tends to write column-0 comments).
FULL_NONL_PREFILL = "class Cell(nn.Module):"
INIT_PREFILL = (
    "class Cell(nn.Module):\n    def __init__(self, C):\n        super().__init__()\n"
    '        self.edge_0_1 = OPS["'
)
_FULL_STOP = ("\nclass ", '\n"""', "\n#", "\nif __name__", "\n\n\n")
FORMATS = {
    # name: (prefill the model continues, stop strings, max new tokens)
    "full": (FULL_PREFILL, _FULL_STOP, 280),
    "full_nonl": (FULL_NONL_PREFILL, _FULL_STOP, 280),
    "init": (INIT_PREFILL, ("\n\n", "def "), 160),
    "chat": (INIT_PREFILL, ("\n\n", "def ", "```"), 160),
}
# Names a cell never needs; code using them is not executed by this benchmark (the search
# runs candidates in its sandbox, this script does not).
_UNSAFE_NAMES = {
    "os",
    "sys",
    "subprocess",
    "open",
    "exec",
    "eval",
    "__import__",
    "shutil",
    "socket",
}


def random_arch(rng: random.Random) -> str:
    return format_arch({edge: rng.choice(OP_NAMES) for edge in EDGES})


def completion_prompt(parent: str, instruction: str) -> str:
    return f'{CELL_PREAMBLE}\n{arch_to_code(parent)}\n"""{instruction}"""\n'


def chat_user_message(parent: str, instruction: str) -> str:
    return f"{CELL_PREAMBLE}\n{arch_to_code(parent)}\n{instruction}"


def standard_forward(arch: str) -> str:
    code = arch_to_code(arch)
    return code[code.index("    def forward") :]


_FORWARD = standard_forward("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def class_source(fmt: str, text: str) -> str:
    """The class the sample wrote: prefill + continuation (+ the standard forward)."""
    prefill = FORMATS[fmt][0]
    if fmt.startswith("full"):
        return prefill + text
    # The model wrote edge lines only; anything it started after them is dropped.
    return prefill + text.rstrip() + "\n\n" + _FORWARD


def _is_unsafe(code: str) -> bool:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
            if any((m or "").split(".")[0] not in ("torch", "math") for m in modules):
                return True
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in _UNSAFE_NAMES:
                return True
    return False


def _alarm(signum, frame):
    raise TimeoutError("instantiation took too long")


def evaluate(source: str, truncated: bool) -> tuple[str | None, str]:
    """Returns (child arch or None, outcome): ``valid`` or the failure kind."""
    try:
        code = extract_class_code(source, class_name="Cell", truncated=truncated)
        if _is_unsafe(code):
            return None, "unsafe_not_run"
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(5)
        try:
            cell = instantiate(code, "Cell", {"torch": torch, "nn": nn, "OPS": OPS}, 4)
            return cell_to_arch(cell), "valid"
        finally:
            signal.alarm(0)
    except CandidateError as err:
        return None, err.kind
    except Exception as err:  # tracing or a timeout: not the search's own error kinds
        return None, type(err).__name__


def build_requests(llm: TransformersLLM, fmt: str, parents, temperature: float, samples: int):
    pairs = [(p, i) for p in parents for i in INSTRUCTIONS]
    pairs = [pairs[k % len(pairs)] for k in range(samples)]
    requests = []
    for parent, instruction in pairs:
        if fmt == "chat":
            prompt = llm.format_chat(chat_user_message(parent, instruction))
            prefill = "```python\n" + FORMATS[fmt][0]
        else:
            prompt = completion_prompt(parent, instruction)
            prefill = FORMATS[fmt][0]
        requests.append(GenerationRequest(prompt=prompt, temperature=temperature, prefill=prefill))
    return pairs, requests


def run_setting(fmt: str, temperature: float, parents, args) -> dict:
    _, stop, max_new = FORMATS[fmt]
    llm = TransformersLLM(
        max_new_tokens=max_new,
        stop=stop,
        batch_size=args.batch_size,
        seed=args.seed,
        num_threads=args.gen_threads,
    )
    pairs, requests = build_requests(llm, fmt, parents, temperature, args.samples)
    start = time.perf_counter()
    generations = llm.generate(requests)
    seconds = time.perf_counter() - start
    outcomes: Counter = Counter()
    changed, edges_changed, none_child, none_parent, examples = 0, [], [], [], []
    for (parent, _), gen in zip(pairs, generations, strict=True):
        source = class_source(fmt, gen.text)
        child, outcome = evaluate(source, truncated=gen.num_tokens >= max_new)
        outcomes[outcome] += 1
        if child is None:
            if len(examples) < 2:
                examples.append({"outcome": outcome, "text": gen.text[:400]})
            continue
        before, after = parse_arch(parent), parse_arch(child)
        diff = sum(before[e] != after[e] for e in EDGES)
        changed += diff > 0
        edges_changed.append(diff)
        none_child.append(sum(after[e] == "none" for e in EDGES) / len(EDGES))
        none_parent.append(sum(before[e] == "none" for e in EDGES) / len(EDGES))
    n, valid = len(generations), outcomes["valid"]
    tokens = sum(g.num_tokens for g in generations)
    return {
        "format": fmt,
        "temperature": temperature,
        "samples": n,
        "valid": valid,
        "valid_rate": valid / n,
        "changed": changed,
        "changed_rate_of_valid": changed / valid if valid else None,
        "mean_edges_changed": sum(edges_changed) / valid if valid else None,
        "none_share_child": sum(none_child) / valid if valid else None,
        "none_share_parent": sum(none_parent) / valid if valid else None,
        "tokens_per_sample": tokens / n,
        "seconds_per_sample": seconds / n,
        "tokens_per_second": tokens / seconds,
        "outcomes": dict(outcomes),
        "invalid_examples": examples,
    }


def throughput(parents, args) -> list[dict]:
    """Tokens/s for one batched generate call per batch size, with no stop strings."""
    rows = []
    for threads in args.threads:
        for batch_size in args.throughput_batch_sizes:
            llm = TransformersLLM(
                max_new_tokens=args.throughput_tokens,
                batch_size=batch_size,
                seed=1,
                num_threads=threads,
            )
            _, requests = build_requests(llm, "init", parents, 0.8, batch_size)
            start = time.perf_counter()
            out = llm.generate(requests)
            seconds = time.perf_counter() - start
            tokens = sum(g.num_tokens for g in out)
            rows.append(
                {
                    "threads": threads,
                    "batch_size": batch_size,
                    "tokens": tokens,
                    "seconds": seconds,
                    "tokens_per_second": tokens / seconds,
                }
            )
            print(
                f"  threads={threads} batch={batch_size:3d}: {tokens / seconds:7.1f} tok/s "
                f"({tokens} tokens, {seconds:.1f} s)",
                flush=True,
            )
    return rows


def load_times(args) -> dict:
    times = {}
    if args.gguf_timing:
        tmp = Path(tempfile.mkdtemp(prefix="llmatic-gguf-"))
        try:
            start = time.perf_counter()
            resolve_model(EMBEDDED_MODEL, cache_dir=tmp)
            times["gguf_convert_and_save_s"] = time.perf_counter() - start
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    TransformersLLM()  # default cache; converts once if missing, else loads safetensors
    times["backend_first_construction_s"] = time.perf_counter() - start
    start = time.perf_counter()
    TransformersLLM()
    times["backend_second_construction_s"] = time.perf_counter() - start
    return times


def fmt_num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--samples", type=int, default=32, help="samples per format and temperature"
    )
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch CPU threads for the throughput runs",
    )
    parser.add_argument(
        "--gen-threads",
        type=int,
        default=1,
        help="torch CPU threads for the validity runs (1 is fastest on a busy 2-core machine)",
    )
    parser.add_argument("--throughput-batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--throughput-tokens", type=int, default=32)
    parser.add_argument("--no-gguf-timing", dest="gguf_timing", action="store_false")
    parser.add_argument("--quick", action="store_true", help="4 samples, one temperature")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "cell_prompt_validity.json"
    )
    args = parser.parse_args()
    if args.quick:
        args.samples, args.temperatures, args.gguf_timing = 4, args.temperatures[:1], False
        args.throughput_batch_sizes = [1, 4]

    rng = random.Random(args.seed)
    parents = [random_arch(rng) for _ in range(8)]
    started = time.perf_counter()
    load_avg_start = os.getloadavg()
    print("load times ...", flush=True)
    loads = load_times(args)
    print("  " + ", ".join(f"{k}={v:.2f}" for k, v in loads.items()), flush=True)

    results = []
    for fmt in args.formats:
        for temperature in args.temperatures:
            row = run_setting(fmt, temperature, parents, args)
            results.append(row)
            print(
                f"  {fmt:9s} T={temperature}: valid {row['valid']}/{row['samples']}, "
                f"{row['tokens_per_sample']:.0f} tok/sample, "
                f"{row['seconds_per_sample']:.2f} s/sample, "
                f"outcomes {row['outcomes']}",
                flush=True,
            )
    print("throughput ...", flush=True)
    speed = throughput(parents, args)

    header = (
        f"{'format':9} {'T':>4} {'valid':>7} {'changed':>8} {'edges':>6} {'none':>10} "
        f"{'tok/smp':>8} {'s/smp':>6}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        none = f"{fmt_num(r['none_share_child'], '.2f')}/{fmt_num(r['none_share_parent'], '.2f')}"
        print(
            f"{r['format']:9} {r['temperature']:4.1f} {r['valid']:>3}/{r['samples']:<3} "
            f"{r['changed']:>4}/{r['valid']:<3} {fmt_num(r['mean_edges_changed'], '.2f'):>6} "
            f"{none:>10} {r['tokens_per_sample']:8.0f} {r['seconds_per_sample']:6.2f}"
        )
    print(
        "(changed: of the valid ones; edges: mean edges changed per valid child; "
        "none: share of 'none' edges in valid children / in their parents)"
    )

    payload = {
        "model": EMBEDDED_MODEL,
        "parents": parents,
        "instructions": list(INSTRUCTIONS),
        "formats": {
            k: {"prefill": v[0], "stop": list(v[1]), "max_new_tokens": v[2]}
            for k, v in FORMATS.items()
        },
        "batch_size": args.batch_size,
        "seed": args.seed,
        "gen_threads": args.gen_threads,
        "cpu_count": os.cpu_count(),
        "load_average_start_end": [load_avg_start, os.getloadavg()],
        "load_times": loads,
        "results": results,
        "throughput": speed,
        "total_seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out} ({payload['total_seconds']:.0f} s in all)")


if __name__ == "__main__":
    main()
