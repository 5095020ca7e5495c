"""Sampling from a local causal LM with Hugging Face transformers, in batches.

A micro-batch of requests is sampled together by :func:`llmatic.llm.decoding.sample`:
prompts that share a prefix (the same parent under several instructions) run it once,
text a request's constraint forces is appended without a model step per token, and every
row samples at its own temperature until a stop string, end-of-sequence or its
constraint's end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, TopKLogitsWarper, TopPLogitsWarper

from llmatic.devices import cpu_has_native_bf16, resolve_device
from llmatic.llm.base import CounterState, Generation, GenerationRequest, cut_at_stop
from llmatic.llm.constraints import VocabularyTrie
from llmatic.llm.decoding import Row, sample
from llmatic.llm.models import EMBEDDED_MODEL, resolve_model

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

# Loaded (model, tokenizer) pairs, keyed by (model folder, device, dtype): a process loads a
# model once however many backends it builds (one per experiment, one per test, ...).
_LOADED: dict[tuple[str, str, str], tuple[torch.nn.Module, object]] = {}
_LOAD_LOCK = threading.Lock()


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``"auto"`` -> bfloat16 on CUDA and on CPUs with native bf16 matmuls, else float32.

    Native means AMX or AVX512-BF16 (Xeon since Sapphire Rapids / Cooper Lake, Zen 4+):
    there SmolLM2 samples 2x faster in bfloat16 than in float32, and its next-token
    distribution stays within 1.5 % total variation (``docs/llm.md``). Elsewhere bf16 is
    emulated and slower than float32.
    """
    if dtype == "auto":
        if device.startswith("cuda") or (device == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def _grouped_query_sdpa(device: str) -> contextlib.AbstractContextManager:
    """On CPU, lets transformers' SDPA attention share key/value heads (``enable_gqa``)
    instead of copying them per query head at every step, which cost ~20 % of sampling.

    transformers enables it only without an attention mask, because CUDA kernels then
    fall back to the slow path; the CPU kernel takes the mask. The switch is
    transformers' own ``TRANSFORMERS_SDPA_FORCE_GQA``, set only while we sample.
    """
    if device != "cpu":
        return contextlib.nullcontext()
    return mock.patch.dict(os.environ, {"TRANSFORMERS_SDPA_FORCE_GQA": "1"})


def load_model(
    path: str | Path, *, device: str, dtype: torch.dtype
) -> tuple[torch.nn.Module, object]:
    """Returns the (model, tokenizer) in folder ``path``, loading it once per process."""
    key = (str(Path(path).resolve()), device, str(dtype))
    with _LOAD_LOCK:
        if key not in _LOADED:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            # Left padding keeps every prompt's last token at the end, where generation starts.
            tokenizer.padding_side = "left"
            # transformers 5 renamed torch_dtype to dtype.
            dtype_arg = (
                "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
            )
            model = AutoModelForCausalLM.from_pretrained(
                path, local_files_only=True, **{dtype_arg: dtype}
            )
            _LOADED[key] = (model.to(device).eval(), tokenizer)
        return _LOADED[key]


class TransformersLLM(CounterState):
    """An :class:`~llmatic.llm.base.LLMBackend` running a local causal LM with transformers.

    Args:
        model: ``"smollm2-135m"`` (embedded, no download), a local folder or ``.gguf`` file,
            or a Hugging Face id already in the local cache (see
            :func:`~llmatic.llm.models.resolve_model`).
        cache_dir: Where converted GGUF models are cached; the default user cache when None.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"auto"`` (bfloat16 on CUDA and on CPUs with native bf16, else float32),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        max_new_tokens: Most tokens generated per sample.
        stop: Stop strings; a sample ends at the first one it produces, which is cut off.
        batch_size: Most sequences sampled in one ``generate`` call.
        seed: Seeds sampling; the same sequence of calls gives the same outputs.
        top_p: Nucleus sampling mass, applied after each row's temperature (1.0 = off).
        top_k: Keep only the k most likely tokens, after the temperature (0 = off).
        num_threads: CPU threads torch uses while generating; None leaves torch's setting.
            Where other processes keep the CPUs busy (the search trains candidates while it
            samples), 1 thread was 5-10x faster than 2 on a 2-core machine: torch's threads
            wait for each other at every one of the many small operations.

    Attributes:
        total_tokens: Tokens generated so far by this instance (all samples).
        total_prompt_tokens: Prompt tokens (with prefill) of all samples so far, each row
            counted in full even where rows shared a prefix's computation.
        total_seconds: Wall-clock seconds spent in :meth:`generate` so far.
        total_samples: Samples generated so far.

    Raises:
        ModelNotFoundError: The model is not available offline.
        ValueError: A bad device, dtype or sampling setting.
    """

    #: Counters saved by :meth:`state_dict` (the first seeds the sampling).
    _STATE_FIELDS = (
        "_calls",
        "total_tokens",
        "total_seconds",
        "total_samples",
        "total_prompt_tokens",
    )

    def __init__(
        self,
        *,
        model: str = EMBEDDED_MODEL,
        cache_dir: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_new_tokens: int = 350,
        stop: Sequence[str] = (),
        batch_size: int = 16,
        seed: int = 0,
        top_p: float = 1.0,
        top_k: int = 0,
        num_threads: int | None = None,
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if not 0.0 < top_p <= 1.0 or top_k < 0:
            raise ValueError(f"need 0 < top_p <= 1 and top_k >= 0, got {top_p}, {top_k}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model_path = resolve_model(model, cache_dir=cache_dir)
        self.model, self.tokenizer = load_model(
            self.model_path, device=self.device, dtype=self.dtype
        )
        self.max_new_tokens = max_new_tokens
        self.stop = tuple(stop)
        self.batch_size = batch_size
        self.seed = seed
        self.top_p = top_p
        self.top_k = top_k
        self.num_threads = num_threads
        self.total_tokens = 0
        self.total_prompt_tokens = 0
        self.total_seconds = 0.0
        self.total_samples = 0
        self._calls = 0
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self._eos_ids = {int(e) for e in eos if e is not None} | {self.tokenizer.eos_token_id}
        self._eos_ids.discard(None)
        self._trie: VocabularyTrie | None = None

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer has a chat template (instruct models do)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format_chat(self, user: str, *, system: str | None = None) -> str:
        """The prompt for one user message, ending where the assistant's answer begins.

        Raises:
            ValueError: The model has no chat template.
        """
        if not self.has_chat_template:
            raise ValueError(
                f"model {self.model_path} has no chat template; use a completion prompt"
            )
        messages = [{"role": "user", "content": user}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per wall-clock second over all calls so far."""
        return self.total_tokens / self.total_seconds if self.total_seconds else 0.0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Samples one continuation per request, in order, ``batch_size`` rows per call."""
        start = time.perf_counter()
        out: list[Generation] = []
        threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            with _grouped_query_sdpa(self.device):
                for first in range(0, len(requests), self.batch_size):
                    out.extend(self._generate_batch(requests[first : first + self.batch_size]))
        finally:
            torch.set_num_threads(threads)
        self.total_seconds += time.perf_counter() - start
        self.total_samples += len(out)
        self.total_tokens += sum(g.num_tokens for g in out)
        self.total_prompt_tokens += sum(g.prompt_tokens for g in out)
        return out

    def _batch_seed(self) -> int:
        """A seed for the next micro-batch, mixed from (seed, number of batches so far)."""
        digest = hashlib.sha256(f"{self.seed}:{self._calls}".encode()).digest()
        self._calls += 1
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)

    def _token_ids(self, text: str) -> list[int]:
        """A prompt's token ids, with the tokenizer's special tokens unless already there."""
        bos = self.tokenizer.bos_token
        # A chat-formatted prompt already spells out its BOS token; do not add a second.
        special = not (bos and text.startswith(bos))
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _vocabulary_trie(self) -> VocabularyTrie:
        """The tokenizer's vocabulary as a trie of decoded strings (built once, ~1 s)."""
        if self._trie is None:
            special = set(self.tokenizer.all_special_ids)
            strings = [
                "" if i in special else self.tokenizer.decode([i])
                for i in range(len(self.tokenizer))
            ]
            self._trie = VocabularyTrie(strings)
        return self._trie

    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        rows = [
            Row(
                prompt_ids=self._token_ids(r.prompt + r.prefill),
                temperature=float(r.temperature),
                constraint=r.constraint,
            )
            for r in requests
        ]
        # Truncation comes after the temperature, as in transformers' own ordering.
        warpers = []
        if self.top_k:
            warpers.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=self.top_p))
        generator = torch.Generator().manual_seed(self._batch_seed())
        sample(
            self.model,
            rows,
            tokenize=lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"],
            decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            trie=self._vocabulary_trie(),
            eos_ids=self._eos_ids,
            pad_id=self.tokenizer.pad_token_id,
            max_new_tokens=self.max_new_tokens,
            stop=self.stop,
            warpers=warpers,
            generator=generator,
        )
        return [
            Generation(
                text=cut_at_stop(row.text, self.stop),
                num_tokens=len(row.generated),
                prompt_tokens=len(row.prompt_ids),
            )
            for row in rows
        ]
