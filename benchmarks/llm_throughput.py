"""LLM throughput on NAS-Bench-201 cell prompts: the reference code's way against ours.

Same prompts (mutations of 4 parent cells under the 6 configured instructions), in one run:

(a) ``reference``: the public LLMatic code's way: load the model, generate one sample
    (free text, up to 350 new tokens, stop at a blank line), repeat.
(b) ``batched``: :class:`~llmatic.llm.transformers_backend.TransformersLLM` as the search
    uses it: loaded once, all requests of an ``ask`` in one call, shared prompt prefixes,
    the edge-lines grammar with jump-forward over its fixed text.
(b') ``batched_free``: the same backend without the grammar (free text, like (a)), to
    separate what batching does from what the grammar does.
(c) ``server``: :class:`~llmatic.llm.openai_backend.OpenAICompatibleLLM` against an
    OpenAI-compatible server (free text): ``--server-url``, or one started on loopback,
    ``python -m llmatic.llm.serve`` (default) or ``llama_cpp.server`` (``--server
    llama_cpp``, needs ``llama-cpp-python[server]``).
(c') ``server_constrained``: the same server with constrained decoding: each request's
    edge-lines grammar sent as a regex (``structured_output``, see
    :mod:`llmatic.llm.wire`); ``--structured-output`` names the field (``llmatic`` for
    our server, ``vllm``, ``vllm_legacy``, ``sglang``; ``none`` skips the row).

For each: candidates per minute, generated tokens per second, the share of *valid* samples
(the first six lines written are the edge lines of a cell in the request's grammar: known
operations, well-formed, 1 or 2 edges changed from the parent), and for (b) and (b') the
model's arithmetic rate against this CPU's measured matmul rate in the same dtype (how
close the backend gets to the compute limit). (a) runs in float32, as the reference does;
(b) and (b') in ``--dtype`` (``auto``: what the search uses, see ``docs/llm.md``).
Figures go to ``benchmarks/results/llm_throughput.{json,md}``.

Usage: ``python -m benchmarks.llm_throughput [--samples 64] [--reference-samples 6]
[--threads N] [--dtype auto|float32|bfloat16] [--server-url URL | --server
llmatic|llama_cpp] [--structured-output llmatic|vllm|vllm_legacy|sglang|none]
[--server-only]``
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PARENTS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
)
REFERENCE_MAX_NEW_TOKENS = 350


def requests_for(prompter, count: int) -> list:
    """``count`` mutation requests cycling over parents x instructions, temperatures 0.5-1."""
    from llmatic.nb201.cell import arch_to_code

    instructions = prompter.mutation_prompts
    return [
        prompter.mutation(
            arch_to_code(PARENTS[i % len(PARENTS)]),
            instructions[(i // len(PARENTS)) % len(instructions)],
            0.5 + 0.5 * (i % 7) / 6,
        )
        for i in range(count)
    ]


def valid_share(requests: list, texts: list[str]) -> float:
    """The share of ``texts`` whose first six lines are a text of the grammar of the
    constrained request at the same position (what a valid edit of that parent is)."""
    from llmatic.llm.wire import compile_regex

    valid = 0
    for request, text in zip(requests, texts, strict=True):
        edges = "\n".join(text.split("\n")[:6]) + "\n"
        valid += compile_regex(request.constraint.to_regex()).fullmatch(edges)
    return valid / len(texts)


def matmul_gflops(threads: int, dtype: torch.dtype = torch.float32) -> float:
    """This CPU's matmul rate (GFLOP/s) in ``dtype`` at ``threads`` threads: the limit."""
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - start) / 1e9


class TokenMeter:
    """Counts the tokens a model runs (with and without padding) through a forward hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.slots = 0
        self.real = 0
        self.handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.slots += ids.numel()
        self.real += int(mask[:, -ids.shape[1] :].sum()) if mask is not None else ids.numel()

    def close(self) -> None:
        self.handle.remove()


def run_reference(
    model_path: Path, requests: list, stop: list[str], threads: int, grammars: list
) -> dict:
    """(a): reload the model for every sample, generate one sample at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmatic.llm.base import cut_at_stop

    torch.set_num_threads(threads)
    tokens, texts, start = 0, [], time.perf_counter()
    for i, request in enumerate(requests):
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True).eval()
        inputs = tokenizer(request.prompt + request.prefill, return_tensors="pt")
        torch.manual_seed(i)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                do_sample=True,
                temperature=request.temperature,
                top_k=0,
                max_new_tokens=REFERENCE_MAX_NEW_TOKENS,
                stop_strings=stop,
                tokenizer=tokenizer,
                pad_token_id=tokenizer.eos_token_id,
            )
        prompt_length = inputs["input_ids"].shape[1]
        tokens += out.shape[1] - prompt_length
        text = tokenizer.decode(out[0, prompt_length:], skip_special_tokens=True)
        texts.append(cut_at_stop(text, stop))
    seconds = time.perf_counter() - start
    return _rates(len(requests), tokens, seconds, valid=valid_share(grammars, texts))


def run_batched(llm, requests: list, *, parameters: int, peak: float, grammars: list) -> dict:
    """(b)/(b'): one ``generate`` call for all requests (micro-batches of its batch size)."""
    meter = TokenMeter(llm.model)
    tokens0, seconds0 = llm.total_tokens, llm.total_seconds
    try:
        out = llm.generate(requests)
    finally:
        meter.close()
    seconds = llm.total_seconds - seconds0
    valid = valid_share(grammars, [g.text for g in out])
    result = _rates(len(requests), llm.total_tokens - tokens0, seconds, valid=valid)
    # ~2 FLOPs per weight per token run (attention over the context comes on top).
    achieved = 2 * parameters * meter.slots / seconds / 1e9
    result.update(
        model_tokens_run=meter.real,
        model_token_slots=meter.slots,
        model_gflops=achieved,
        share_of_matmul_peak=achieved / peak,
    )
    return result


def run_server(
    url: str,
    model: str,
    requests: list,
    stop: list[str],
    concurrency: int,
    structured_output: str = "none",
) -> dict:
    """(c): the OpenAI-compatible backend, free text like (a); (c') with
    ``structured_output``: each request's grammar sent as a regex."""
    from llmatic.llm.openai_backend import OpenAICompatibleLLM

    if structured_output == "none":
        requests_sent = [
            r.__class__(prompt=r.prompt, temperature=r.temperature, prefill=r.prefill)
            for r in requests
        ]
    else:
        requests_sent = requests
    llm = OpenAICompatibleLLM(
        base_url=url,
        model=model,
        max_new_tokens=150,
        stop=stop,
        max_concurrency=concurrency,
        timeout_s=600,
        structured_output=structured_output,
    )
    start = time.perf_counter()
    out = llm.generate(requests_sent)
    seconds = time.perf_counter() - start
    valid = valid_share(requests, [g.text for g in out])
    return _rates(len(out), sum(g.num_tokens for g in out), seconds, valid=valid)


@contextlib.contextmanager
def local_server(kind: str, threads: int) -> Iterator[str]:
    """A model server on a free loopback port serving the embedded model; yields its /v1 URL.

    ``kind``: ``llmatic`` (``python -m llmatic.llm.serve``, batching across requests) or
    ``llama_cpp`` (``llama_cpp.server`` on the GGUF; needs ``llama-cpp-python[server]``).
    """
    from llmatic.llm.models import embedded_gguf_path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if kind == "llmatic":
        command = [sys.executable, "-m", "llmatic.llm.serve", "--threads", str(threads)]
    else:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path())]
        command += ["--n_ctx", "4096", "--n_threads", str(threads)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = tempfile.NamedTemporaryFile("w", prefix=f"{kind}_server_", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {kind} server exited; see {log.name}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/models", timeout=2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _rates(samples: int, tokens: int, seconds: float, *, valid: float) -> dict:
    return {
        "samples": samples,
        "tokens": int(tokens),
        "seconds": seconds,
        "candidates_per_minute": samples / seconds * 60,
        "samples_per_second": samples / seconds,
        "tokens_per_second": tokens / seconds,
        "valid": valid,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64, help="for (b), (b') and (c)")
    parser.add_argument("--reference-samples", type=int, default=6, help="for (a)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--server-url", help="an OpenAI-compatible /v1 URL for (c)")
    parser.add_argument(
        "--server",
        choices=["llmatic", "llama_cpp"],
        default="llmatic",
        help="the local server (c) starts when no --server-url is given",
    )
    parser.add_argument("--server-model", default="smollm2-135m")
    parser.add_argument(
        "--structured-output",
        choices=["llmatic", "vllm", "vllm_legacy", "sglang", "none"],
        default=None,
        help="the field (c') sends the grammar in: llmatic for our server (the default "
        "without --server-url), none to skip (c') (the default with --server-url)",
    )
    parser.add_argument(
        "--dtype", default="auto", help="of (b), (b') and the peak: auto, float32, bfloat16"
    )
    parser.add_argument(
        "--server-only", action="store_true", help="re-measure (c) only, into the last results"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llmatic.llm.models import EMBEDDED_MODEL
    from llmatic.llm.transformers_backend import TransformersLLM, resolve_dtype
    from llmatic.nb201.prompts import STOP, CellPrompter

    prompts = yaml.safe_load((ROOT / "conf" / "prompts" / "nb201_cell.yaml").read_text())
    prompter = CellPrompter(mutation_prompts=prompts["mutation"], crossover_prompt="")
    free_prompter = CellPrompter(
        mutation_prompts=prompts["mutation"], crossover_prompt="", constrained=False
    )
    stop = list(STOP["edges"])
    requests = requests_for(prompter, args.samples)
    if args.server_only:
        results = json.loads((RESULTS / "llm_throughput.json").read_text())
        _measure_server(results, args, requests, stop)
        _write(results)
        return 0
    dtype = resolve_dtype(args.dtype, "cpu")
    peak = matmul_gflops(args.threads, dtype)
    results: dict = {
        "dtype": str(dtype).removeprefix("torch."),
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "matmul_gflops": peak,
        "model": EMBEDDED_MODEL,
    }
    common = dict(stop=stop, seed=0, num_threads=args.threads, batch_size=32)
    llm = TransformersLLM(max_new_tokens=150, dtype=args.dtype, **common)
    # Weights a token's forward pass multiplies by: all but the input embedding (a lookup;
    # SmolLM2 ties it to the LM head, which runs for one position per row and step only).
    embedding = llm.model.get_input_embeddings().weight
    parameters = sum(p.numel() for p in llm.model.parameters() if p is not embedding)
    results["weights_per_token"] = parameters
    print(f"matmul {peak:.0f} GFLOP/s at {args.threads} threads; {parameters / 1e6:.0f}M weights")

    results["reference"] = run_reference(
        llm.model_path,
        requests_for(free_prompter, args.reference_samples),
        stop,
        args.threads,
        requests_for(prompter, args.reference_samples),
    )
    print("reference", results["reference"], flush=True)
    results["batched"] = run_batched(
        llm, requests, parameters=parameters, peak=peak, grammars=requests
    )
    print("batched", results["batched"], flush=True)
    free = requests_for(free_prompter, args.samples)
    results["batched_free"] = run_batched(
        llm, free, parameters=parameters, peak=peak, grammars=requests
    )
    print("batched_free", results["batched_free"], flush=True)

    _measure_server(results, args, requests, stop)
    _write(results)
    return 0


def _measure_server(results: dict, args: argparse.Namespace, requests: list, stop: list) -> None:
    """(c) against ``--server-url`` or a local server; a failure is recorded, not raised."""
    from llmatic.llm.openai_backend import LLMServerError

    if args.server_url:
        server = contextlib.nullcontext(args.server_url)
    elif args.server == "llama_cpp" and importlib.util.find_spec("llama_cpp") is None:
        results["server"] = "skipped: llama-cpp-python[server] is not installed"
        return
    else:
        server = local_server(args.server, args.threads)
    results["server_kind"] = args.server_url or args.server
    structured = args.structured_output or ("none" if args.server_url else args.server)
    if structured == "llama_cpp":  # it reads none of the regex fields
        structured = "none"
    results["server_structured_output"] = structured
    results["server_constrained"] = "skipped: --structured-output none"
    try:
        with server as url:
            results["server"] = run_server(url, args.server_model, requests, stop, 32)
            print("server", results["server"], flush=True)
            if structured != "none":
                results["server_constrained"] = run_server(
                    url, args.server_model, requests, stop, 32, structured
                )
    except (LLMServerError, RuntimeError) as err:
        failed = f"failed: {str(err).splitlines()[0][:200]}"
        for key in ("server", "server_constrained"):
            if not isinstance(results.get(key), dict):
                results[key] = failed
    print("server_constrained", results["server_constrained"], flush=True)


def _write(results: dict) -> None:
    """Speed-ups against (a), then the JSON and Markdown results."""
    reference = results["reference"]["candidates_per_minute"]
    for key in ("batched", "batched_free", "server", "server_constrained"):
        if isinstance(results.get(key), dict):
            results[key]["speedup_per_candidate"] = (
                results[key]["candidates_per_minute"] / reference
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "llm_throughput.md").write_text(_table(results))
    print(_table(results))


def _table(results: dict) -> str:
    lines = [
        f"SmolLM2-135M in {results.get('dtype', 'float32')} for (b) and (b'), "
        f"{results['threads']} threads, matmul peak in that dtype "
        f"{results['matmul_gflops']:.0f} GFLOP/s.",
        "",
        "| way | samples | candidates/min | tokens/s | valid | x (a) per candidate | "
        "model GFLOP/s (share of peak) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "reference": "(a) reload + one sample",
        "batched": "(b) batched, grammar + jump-forward",
        "batched_free": "(b') batched, free text",
        "server": f"(c) OpenAI-compatible server ({results.get('server_kind', 'none')}), free text",
        "server_constrained": (
            f"(c') the same server, grammar sent as a regex "
            f"({results.get('server_structured_output', 'none')})"
        ),
    }
    for key, name in names.items():
        r = results.get(key, "not measured")
        if not isinstance(r, dict):
            lines.append(f"| {name} | {r} | | | | | |")
            continue
        speedup = r.get("speedup_per_candidate", 1.0)
        rate = (
            f"{r['model_gflops']:.0f} ({r['share_of_matmul_peak']:.0%})"
            if "model_gflops" in r
            else ""
        )
        valid = f"{r['valid']:.0%}" if "valid" in r else ""
        lines.append(
            f"| {name} | {r['samples']} | {r['candidates_per_minute']:.1f} | "
            f"{r['tokens_per_second']:.0f} | {valid} | {speedup:.1f}x | {rate} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
