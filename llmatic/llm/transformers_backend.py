"""Sampling from a local causal LM with Hugging Face transformers, in batches.

Every request in a batch has its own temperature: one ``model.generate`` call samples a
whole micro-batch, and :class:`RowTemperatureLogitsProcessor` divides each row's logits
by that row's temperature. Each row stops as soon as it has produced a stop string.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from llmatic.devices import resolve_device
from llmatic.llm.base import Generation, GenerationRequest, cut_at_stop
from llmatic.llm.constraints import ConstrainedLogitsProcessor, VocabularyTrie
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
    """``"auto"`` -> bfloat16 on CUDA, float32 elsewhere (CPU matmuls are fastest in fp32)."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


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


class RowTemperatureLogitsProcessor(LogitsProcessor):
    """Divides each row's logits by that row's own temperature.

    Args:
        temperatures: Shape (batch,) or (batch, 1); all > 0.
    """

    def __init__(self, temperatures: torch.Tensor) -> None:
        self.temperatures = temperatures.reshape(-1, 1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Scores (batch, vocab) divided row-wise; ``input_ids`` (batch, length) is unused."""
        return scores / self.temperatures.to(device=scores.device, dtype=scores.dtype)


class _StopStrings(StoppingCriteria):
    """Marks a row finished once its generated text holds a stop string or it emitted EOS.

    Also records how many tokens each row generated until it finished
    (:attr:`finished_at`), because finished rows are padded afterwards.
    """

    def __init__(
        self,
        tokenizer: object,
        stop: Sequence[str],
        prompt_length: int,
        eos_ids: set[int],
        batch: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_length = prompt_length
        self.eos_ids = eos_ids
        self.finished_at: list[int | None] = [None] * batch
        # A stop string completed by the newest token lies in the last len(stop) tokens
        # (every token decodes to >= 1 character); a margin covers tokens that decode to none.
        self.window = 2 * max((len(s) for s in self.stop), default=0) + 4

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs
    ) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_length :]
        length = generated.shape[1]
        for row, done in enumerate(self.finished_at):
            if done is not None:
                continue
            if int(generated[row, -1]) in self.eos_ids:
                self.finished_at[row] = length
            elif self.stop:
                tail = self.tokenizer.decode(
                    generated[row, -self.window :], skip_special_tokens=True
                )
                if any(s in tail for s in self.stop):
                    self.finished_at[row] = length
        done = [d is not None for d in self.finished_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class TransformersLLM:
    """An :class:`~llmatic.llm.base.LLMBackend` running a local causal LM with transformers.

    Args:
        model: ``"smollm2-135m"`` (embedded, no download), a local folder or ``.gguf`` file,
            or a Hugging Face id already in the local cache (see
            :func:`~llmatic.llm.models.resolve_model`).
        cache_dir: Where converted GGUF models are cached; the default user cache when None.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"``, ``"bfloat16"``
            or ``"float16"``.
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
        total_seconds: Wall-clock seconds spent in :meth:`generate` so far.
        total_samples: Samples generated so far.

    Raises:
        ModelNotFoundError: The model is not available offline.
        ValueError: A bad device, dtype or sampling setting.
    """

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
            for first in range(0, len(requests), self.batch_size):
                out.extend(self._generate_batch(requests[first : first + self.batch_size]))
        finally:
            torch.set_num_threads(threads)
        self.total_seconds += time.perf_counter() - start
        self.total_samples += len(out)
        self.total_tokens += sum(g.num_tokens for g in out)
        return out

    def _batch_seed(self) -> int:
        """A seed for the next micro-batch, mixed from (seed, number of batches so far)."""
        digest = hashlib.sha256(f"{self.seed}:{self._calls}".encode()).digest()
        self._calls += 1
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)

    def _encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        bos = self.tokenizer.bos_token
        rows = [
            # A chat-formatted prompt already spells out its BOS token; do not add a second.
            self.tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]
            for text in texts
        ]
        batch = self.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
        return {key: value.to(self.device) for key, value in batch.items()}

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
        inputs = self._encode([r.prompt + r.prefill for r in requests])
        prompt_length = inputs["input_ids"].shape[1]
        temperatures = torch.tensor([float(r.temperature) for r in requests], dtype=torch.float32)
        processors = LogitsProcessorList()
        if any(r.constraint is not None for r in requests):
            # The grammar first: the temperature then shapes the model's preferences
            # among the allowed tokens only.
            processors.append(
                ConstrainedLogitsProcessor(
                    [r.constraint for r in requests],
                    trie=self._vocabulary_trie(),
                    decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
                    prompt_length=prompt_length,
                    eos_id=self.tokenizer.eos_token_id,
                )
            )
        processors.append(RowTemperatureLogitsProcessor(temperatures))
        # Truncation comes after the temperature, as in transformers' own ordering; generate's
        # built-in warpers are switched off below because they would run before ours.
        if self.top_k:
            processors.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p=self.top_p))
        stopper = _StopStrings(
            self.tokenizer, self.stop, prompt_length, self._eos_ids, len(requests)
        )
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            # Seeding inside a forked RNG keeps the caller's global RNG state untouched.
            torch.manual_seed(self._batch_seed())
            sequences = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=self.max_new_tokens,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([stopper]),
                pad_token_id=self.tokenizer.pad_token_id,
            )
        generated = sequences[:, prompt_length:].cpu()
        results = []
        for row in range(len(requests)):
            length = stopper.finished_at[row] or generated.shape[1]
            text = self.tokenizer.decode(generated[row, :length], skip_special_tokens=True)
            results.append(Generation(text=cut_at_stop(text, self.stop), num_tokens=int(length)))
        return results
