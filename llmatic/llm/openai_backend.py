"""Sampling from a remote (or local) server that speaks the OpenAI HTTP API.

Works with anything that serves ``/v1/completions`` or ``/v1/chat/completions``: vLLM,
llama.cpp's server, ``llama_cpp.server``, TGI, OpenAI itself. Only the standard library is
used (``urllib``), so the backend adds no dependency.

Each :class:`~llmatic.llm.base.GenerationRequest` becomes one HTTP request; up to
``max_concurrency`` of them are in flight at once (servers batch concurrent requests
themselves). Transient failures (connection errors, timeouts, HTTP 408/429/500/502/503/504)
are retried with exponential backoff and jitter; anything else fails at once.

Constrained decoding (``structured_output``): a server cannot run our grammars, but vLLM,
SGLang and ``llmatic.llm.serve`` sample under a regex sent with the request. Where a
request's constraint has an exact regex (:func:`llmatic.llm.wire.regex_of`: the NB201 cell
grammar has one), it is sent in the field the setting names:

- ``vllm`` and ``llmatic``: ``"structured_outputs": {"regex": ...}`` (current vLLM; its
  ``guided_*`` fields were removed in 0.12), which ``llmatic.llm.serve`` also reads;
- ``vllm_legacy``: ``"guided_regex": ...`` (vLLM before 0.12);
- ``sglang``: ``"regex": ...``;
- ``none`` (default): nothing; the server samples free text.

A constraint without an exact regex (the free-form network grammar, whose ``forward``
repeats every layer declared: no regex of a useful size says that) is never sent as a wrong
one: the request goes unconstrained, and one log line says so. The candidate's code is
checked by the search either way.

Limitations, by design:

- ``endpoint="chat"`` cannot continue a prefill (the chat API has no portable way to make the
  model continue an assistant message), so a request with a non-empty ``prefill`` raises
  :class:`ValueError` there. The project's prompter uses the completion format with a prefill,
  which needs ``endpoint="completions"``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http.client import HTTPException
from typing import Any

from llmatic.llm.base import CounterState, Generation, GenerationRequest, cut_at_stop
from llmatic.llm.wire import regex_of

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the server is busy, overloaded or restarting.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The OpenAI API takes at most this many stop sequences per request.
MAX_SERVER_STOPS = 4
ENDPOINTS = ("completions", "chat")
#: ``structured_output`` settings: how a constraint's regex goes to the server.
STRUCTURED_OUTPUTS = ("none", "vllm", "vllm_legacy", "sglang", "llmatic")


class LLMServerError(RuntimeError):
    """A request to the LLM server failed for good; the message is one line saying why."""


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` (s) is the server's hint, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAICompatibleLLM(CounterState):
    """An :class:`~llmatic.llm.base.LLMBackend` calling an OpenAI-compatible HTTP server.

    Args:
        base_url: The API root, e.g. ``"http://127.0.0.1:8000/v1"``; ``/completions`` or
            ``/chat/completions`` is appended.
        model: The model name sent to the server.
        api_key_env: Name of the environment variable holding the API key, read once here.
            If it is unset or empty no key is sent (fine for local servers).
        endpoint: ``"completions"`` (prompt + prefill, continued as raw text) or ``"chat"``
            (the prompt as one user message; no prefill, see the module docstring).
        max_new_tokens: Most tokens generated per sample (``max_tokens`` in the API).
        stop: Stop strings. The first 4 are sent to the server (the API's limit); all are
            also cut locally, so the text always ends before the first one.
        max_concurrency: Most requests in flight at once.
        timeout_s: Seconds allowed per socket operation of one attempt (connecting, waiting
            for the response, each read); a server that sends nothing for this long has
            timed out.
        max_retries: Retries per request after a transient failure (0 = one attempt only).
        backoff_s: Wait before the first retry, in seconds; doubled after each further
            retry, scaled by a random factor in [0.5, 1.5) so that concurrent requests do not
            retry in lockstep, and capped at ``max_backoff_s``. A ``Retry-After`` header from
            the server is honoured up to the same cap.
        max_backoff_s: Longest wait between two attempts, in seconds.
        seed: Sampling seed; the i-th request this instance sends gets ``seed + i``, so that
            runs repeat where the server honours seeds and no two samples share a seed.
            None sends no seed.
        structured_output: Which server field carries a request's constraint as a regex:
            ``none``, ``vllm``, ``vllm_legacy``, ``sglang`` or ``llmatic`` (see the
            module docstring).

    Attributes:
        total_tokens: Tokens generated so far by this instance (all samples).
        total_prompt_tokens: Prompt tokens of all samples so far (the server's
            ``usage.prompt_tokens``, else about 4 characters per token).
        total_seconds: Wall-clock seconds spent in :meth:`generate` so far.
        total_samples: Samples generated so far.
        total_retries: Retries made so far (all requests).

    Raises:
        ValueError: A bad endpoint, URL or numeric setting.
    """

    #: Counters saved by :meth:`state_dict` (the first seeds the sampling).
    _STATE_FIELDS = (
        "_sent",
        "total_tokens",
        "total_seconds",
        "total_samples",
        "total_retries",
        "total_prompt_tokens",
    )

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        endpoint: str = "completions",
        max_new_tokens: int = 150,
        stop: Sequence[str] = (),
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        seed: int | None = 0,
        structured_output: str = "none",
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, got {endpoint!r}")
        if structured_output not in STRUCTURED_OUTPUTS:
            raise ValueError(
                f"structured_output must be one of {STRUCTURED_OUTPUTS} (the server kind), "
                f"got {structured_output!r}"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_new_tokens < 1 or max_concurrency < 1 or max_retries < 0:
            raise ValueError(
                "need max_new_tokens >= 1, max_concurrency >= 1 and max_retries >= 0, got "
                f"{max_new_tokens}, {max_concurrency}, {max_retries}"
            )
        if not timeout_s > 0 or backoff_s < 0 or max_backoff_s < 0:
            raise ValueError(
                f"need timeout_s > 0 and backoff_s, max_backoff_s >= 0, got "
                f"{timeout_s}, {backoff_s}, {max_backoff_s}"
            )
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + (
            "/completions" if endpoint == "completions" else "/chat/completions"
        )
        self.model = model
        self.endpoint = endpoint
        self.max_new_tokens = max_new_tokens
        self.stop = tuple(s for s in stop if s)
        self.max_concurrency = max_concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.seed = seed
        self.structured_output = structured_output
        # Which constraint types were sent unconstrained (logged once each).
        self._unsent: set[str] = set()
        self._unsent_lock = threading.Lock()
        if structured_output != "none":
            log.info(
                "llm: constraints with an exact regex go to the server as %s structured "
                "output; others (the free-form grammar) go unconstrained",
                structured_output,
            )
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        # Jitter only spreads retries out; it needs no reproducibility.
        self._jitter = random.Random()
        self._sent = 0
        self._retry_lock = threading.Lock()
        self.total_tokens = 0
        self.total_prompt_tokens = 0
        self.total_seconds = 0.0
        self.total_samples = 0
        self.total_retries = 0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per wall-clock second over all calls so far."""
        return self.total_tokens / self.total_seconds if self.total_seconds else 0.0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Samples one continuation per request, concurrently; results in request order.

        Raises:
            ValueError: A request has a prefill while ``endpoint="chat"``.
            LLMServerError: A request failed for good (a non-transient HTTP error, or a
                transient one after ``max_retries`` retries). Requests not yet sent are
                cancelled; the whole call fails, since the caller expects one result per
                request.
        """
        if self.endpoint == "chat" and any(r.prefill for r in requests):
            raise ValueError(
                "endpoint='chat' cannot continue a prefill; use endpoint='completions' "
                "(llm.prompt_format=completion)"
            )
        if not requests:
            return []
        start = time.perf_counter()
        first_seed = self._sent
        self._sent += len(requests)
        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-http") as pool:
            futures: list[Future[Generation]] = [
                pool.submit(self._sample, request, first_seed + i)
                for i, request in enumerate(requests)
            ]
            try:
                out = [future.result() for future in futures]
            except BaseException:
                # Do not keep sending requests whose batch has already failed.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        self.total_seconds += time.perf_counter() - start
        self.total_samples += len(out)
        self.total_tokens += sum(g.num_tokens for g in out)
        self.total_prompt_tokens += sum(g.prompt_tokens for g in out)
        return out

    def _prompt_text(self, request: GenerationRequest) -> str:
        """What the server is asked to continue (the chat endpoint has no prefill)."""
        if self.endpoint == "completions":
            return request.prompt + request.prefill
        return request.prompt

    def _payload(self, request: GenerationRequest, index: int) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_new_tokens,
            "temperature": float(request.temperature),
            "n": 1,
        }
        if self.endpoint == "completions":
            payload["prompt"] = self._prompt_text(request)
        else:
            payload["messages"] = [{"role": "user", "content": request.prompt}]
        if self.stop:
            payload["stop"] = list(self.stop[:MAX_SERVER_STOPS])
        if self.seed is not None:
            payload["seed"] = self.seed + index
        if request.constraint is not None:
            payload.update(self._structured(request.constraint))
        return payload

    def _structured(self, constraint: object) -> dict[str, Any]:
        """The request fields that carry ``constraint`` (none when it cannot be sent)."""
        regex = regex_of(constraint) if self.structured_output != "none" else None
        if regex is None:
            kind = type(constraint).__name__
            with self._unsent_lock:
                first = kind not in self._unsent
                self._unsent.add(kind)
            if first:
                why = (
                    "llm.structured_output=none"
                    if self.structured_output == "none"
                    else "it has no exact regex"
                )
                log.info("%s constraints go to the server unconstrained: %s", kind, why)
            return {}
        if self.structured_output == "vllm_legacy":
            return {"guided_regex": regex}
        if self.structured_output == "sglang":
            return {"regex": regex}
        return {"structured_outputs": {"regex": regex}}  # vllm, llmatic

    def _sample(self, request: GenerationRequest, index: int) -> Generation:
        body = json.dumps(self._payload(request, index)).encode()
        attempt = 0
        while True:
            try:
                response = self._post(body)
                break
            except _Transient as err:
                if attempt >= self.max_retries:
                    raise LLMServerError(
                        f"POST {self.url} failed after {attempt + 1} attempt(s): {err}"
                    ) from None
                wait = self.backoff_s * 2**attempt * self._jitter.uniform(0.5, 1.5)
                if err.retry_after is not None:
                    wait = max(wait, err.retry_after)
                time.sleep(min(wait, self.max_backoff_s))
                attempt += 1
                with self._retry_lock:
                    self.total_retries += 1
        return self._parse(response, request)

    def _post(self, body: bytes) -> dict[str, Any]:
        """One attempt; returns the decoded JSON, raises _Transient or LLMServerError."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        http_request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = _error_detail(err)
            if err.code in TRANSIENT_STATUSES:
                raise _Transient(f"HTTP {err.code} {detail}", _retry_after(err)) from None
            raise LLMServerError(f"POST {self.url}: HTTP {err.code} {detail}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, HTTPException) as err:
            # URLError wraps connection failures (refused, reset, DNS) and connect timeouts;
            # a read timeout surfaces as TimeoutError, a dropped connection as HTTPException.
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError):
                raise _Transient(f"timed out (timeout_s={self.timeout_s:g})") from None
            raise _Transient(f"{type(reason).__name__}: {_one_line(str(reason))}") from None
        try:
            return json.loads(raw)
        except ValueError:
            head = _one_line(raw[:200].decode(errors="replace"))
            raise LLMServerError(f"POST {self.url}: response is not JSON: {head}") from None

    def _parse(self, response: dict[str, Any], request: GenerationRequest) -> Generation:
        try:
            choice = response["choices"][0]
            raw = choice["text"] if self.endpoint == "completions" else choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMServerError(
                f"POST {self.url}: unexpected response {_one_line(json.dumps(response)[:200])}"
            ) from None
        raw = raw or ""
        usage = response.get("usage") or {}
        num_tokens = usage.get("completion_tokens")
        if not isinstance(num_tokens, int):
            # No usage reported: about 4 characters per token for English and code.
            num_tokens = math.ceil(len(raw) / 4)
        prompt_tokens = usage.get("prompt_tokens")
        if not isinstance(prompt_tokens, int):
            # The same estimate; a chat template's few extra tokens are not counted.
            prompt_tokens = math.ceil(len(self._prompt_text(request)) / 4)
        # The server cut at the stops it was sent; the rest (beyond 4) are cut here.
        return Generation(
            text=cut_at_stop(raw, self.stop), num_tokens=num_tokens, prompt_tokens=prompt_tokens
        )


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_detail(err: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI puts it under ``error.message``), on one line."""
    try:
        raw = err.read()
    except (OSError, HTTPException):
        raw = b""
    text = raw.decode(errors="replace")
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            # OpenAI: {"error": {"message": ...}}; FastAPI servers: {"detail": ...}.
            error = data.get("error", data)
            if isinstance(error, dict):
                error = error.get("message") or error.get("detail") or error
            text = str(error)
    except ValueError:
        pass
    return _one_line(text or err.reason or "")


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    """The ``Retry-After`` header in seconds, if the server sent a number."""
    value = err.headers.get("Retry-After") if err.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential backoff is good enough then
