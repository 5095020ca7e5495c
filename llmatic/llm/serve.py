"""An OpenAI-compatible HTTP server over :class:`TransformersLLM`, batching across clients.

``python -m llmatic.llm.serve --model smollm2-135m --port 8000`` serves ``/v1/models``,
``/v1/completions`` and ``/v1/chat/completions`` on loopback. Requests that arrive within
``--max-wait-ms`` of each other are sampled in one batch, so several searches (a Hydra
multirun of seeds, SLURM array jobs) share one loaded model and its batching; point them
at it with ``llm=openai llm.base_url=http://127.0.0.1:8000/v1``.

What it honours: ``prompt`` (a string or a list), ``messages`` (through the model's chat
template), ``max_tokens``, ``temperature`` (0 means nearly greedy), ``stop`` (a string or
a list) and ``n`` = 1. Sampling is seeded once per server (``--seed``), not per request.

Constrained decoding: a regex in ``structured_outputs.regex`` (vLLM's field, what
``llm.structured_output=llmatic`` or ``vllm`` sends), ``guided_regex`` (older vLLM) or
``regex`` (SGLang) restricts every sample of the request to texts that match it in full,
with the decoding of the in-process backend (:mod:`llmatic.llm.wire` reads it). Only the
subset that llmatic writes is read: literal characters, escapes, groups and ``|``; any
other regex, an EBNF grammar or another kind of structured output is a 400 that says so.

Errors answer with OpenAI's ``{"error": {"message": ...}}``: 400 for a bad request, 500
when generation fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmatic.llm.base import Generation, GenerationRequest
from llmatic.llm.transformers_backend import TransformersLLM
from llmatic.llm.wire import RegexConstraint, RegexError, RegexLanguage, compile_regex

log = logging.getLogger(__name__)

#: The temperature a request of temperature 0 gets (the sampler needs one > 0).
GREEDY_TEMPERATURE = 1e-4


@dataclass
class _Job:
    """Prompts of one HTTP request, sampled under one ``(max_tokens, stop)`` setting."""

    prompts: list[str]
    temperature: float
    max_tokens: int
    stop: tuple[str, ...]
    regex: RegexLanguage | None = None  # every prompt's sample must match it in full
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread that gathers jobs for up to ``max_wait_s`` and samples them together.

    Args:
        llm: The backend; only the worker thread calls it.
        max_batch: Most prompts gathered into one batch.
        max_wait_s: How long the first job of a batch waits for company.
    """

    def __init__(self, llm: TransformersLLM, *, max_batch: int, max_wait_s: float) -> None:
        self.llm = llm
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.jobs: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._work, name="llm-batcher", daemon=True).start()

    def submit(self, job: _Job) -> list[Generation]:
        """Blocks until ``job`` is sampled; returns one generation per prompt."""
        self.jobs.put(job)
        return job.future.result()

    def _work(self) -> None:
        while True:
            batch = [self.jobs.get()]
            deadline = time.monotonic() + self.max_wait_s
            while sum(len(j.prompts) for j in batch) < self.max_batch:
                try:
                    batch.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            # Jobs with the same limits run in one call; the backend's limits are per call.
            groups: dict[tuple[int, tuple[str, ...]], list[_Job]] = {}
            for job in batch:
                groups.setdefault((job.max_tokens, job.stop), []).append(job)
            for (max_tokens, stop), jobs in groups.items():
                self._run(jobs, max_tokens, stop)

    def _run(self, jobs: Sequence[_Job], max_tokens: int, stop: tuple[str, ...]) -> None:
        requests = [
            GenerationRequest(
                prompt=p,
                temperature=job.temperature,
                # One constraint per sample: it keeps the sample's own decoding state.
                constraint=RegexConstraint(job.regex) if job.regex is not None else None,
            )
            for job in jobs
            for p in job.prompts
        ]
        try:
            self.llm.max_new_tokens, self.llm.stop = max_tokens, stop
            out = self.llm.generate(requests)
        except Exception as err:  # noqa: BLE001 - the HTTP handler reports it as a 500
            for job in jobs:
                job.future.set_exception(err)
            return
        for job in jobs:
            job.future.set_result(out[: len(job.prompts)])
            out = out[len(job.prompts) :]


class _BadRequest(ValueError):
    pass


def make_handler(batcher: Batcher, model_name: str, default_max_tokens: int):
    """The request handler class of a server for ``batcher``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.rstrip("/") == "/v1/models":
                self._reply(
                    200, {"object": "list", "data": [{"id": model_name, "object": "model"}]}
                )
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            chat = self.path.rstrip("/") == "/v1/chat/completions"
            if not chat and self.path.rstrip("/") != "/v1/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                job = self._job(body, chat)
            except (ValueError, _BadRequest) as err:
                self._reply(400, {"error": {"message": str(err), "type": "invalid_request_error"}})
                return
            try:
                out = batcher.submit(job)
            except Exception as err:  # noqa: BLE001
                self._reply(500, {"error": {"message": f"generation failed: {err}"}})
                return
            self._reply(200, _response(out, job, model_name, chat))

        def _job(self, body: Any, chat: bool) -> _Job:
            if not isinstance(body, dict):
                raise _BadRequest("the body must be a JSON object")
            if int(body.get("n", 1)) != 1:
                raise _BadRequest("only n=1 is supported")
            if chat:
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages:
                    raise _BadRequest("messages must be a non-empty list")
                system = next((m["content"] for m in messages if m.get("role") == "system"), None)
                user = "\n\n".join(m["content"] for m in messages if m.get("role") == "user")
                prompts = [batcher.llm.format_chat(user, system=system)]
            else:
                prompt = body.get("prompt")
                prompts = [prompt] if isinstance(prompt, str) else prompt
                if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                    raise _BadRequest("prompt must be a string or a list of strings")
            stop = body.get("stop") or ()
            stop = (stop,) if isinstance(stop, str) else tuple(stop)
            temperature = float(body.get("temperature", 1.0))
            max_tokens = int(body.get("max_tokens") or default_max_tokens)
            if temperature < 0 or max_tokens < 1:
                raise _BadRequest("need temperature >= 0 and max_tokens >= 1")
            return _Job(
                prompts=prompts,
                temperature=temperature or GREEDY_TEMPERATURE,
                max_tokens=max_tokens,
                stop=stop,
                regex=_structured_regex(body),
            )

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


#: Structured-output fields that take a regex: vLLM's, older vLLM's, SGLang's.
_REGEX_FIELDS = ("structured_outputs.regex", "guided_regex", "regex")
#: Other structured-output fields of those servers, which this one does not read.
_OTHER_FIELDS = (
    "guided_grammar",
    "guided_json",
    "guided_choice",
    "ebnf",
    "json_schema",
    "structural_tag",
)
#: Kinds of constraint in vLLM's ``structured_outputs`` other than ``regex`` (its other
#: keys are options, e.g. ``disable_fallback``, which need no constraint and are ignored).
_OTHER_STRUCTURED = ("json", "grammar", "choice", "structural_tag", "json_object")


def _structured_regex(body: dict) -> RegexLanguage | None:
    """The compiled regex a request's structured-output field carries, if any.

    Raises:
        _BadRequest: Two fields, another kind of structured output, or a regex outside
            the subset :func:`~llmatic.llm.wire.compile_regex` reads.
    """
    found: dict[str, Any] = {}
    structured = body.get("structured_outputs")
    if structured is not None:
        if not isinstance(structured, dict):
            raise _BadRequest('structured_outputs must be an object, e.g. {"regex": "..."}')
        others = [k for k in _OTHER_STRUCTURED if structured.get(k) not in (None, False)]
        if others:
            raise _BadRequest(
                f"structured_outputs.{others[0]} is not supported; this server takes "
                "structured_outputs.regex only"
            )
        if structured.get("regex") is not None:
            found["structured_outputs.regex"] = structured["regex"]
    for name in _REGEX_FIELDS[1:]:
        if body.get(name) is not None:
            found[name] = body[name]
    other = next((name for name in _OTHER_FIELDS if body.get(name) is not None), None)
    if other is not None:
        raise _BadRequest(f"{other} is not supported; this server takes a regex only")
    if len(found) > 1:
        raise _BadRequest(f"send one structured output, got {', '.join(found)}")
    if not found:
        return None
    ((name, pattern),) = found.items()
    if not isinstance(pattern, str):
        raise _BadRequest(f"{name} must be a string")
    try:
        return compile_regex(pattern)
    except RegexError as err:
        raise _BadRequest(f"{name}: {err}") from None


def _response(out: list[Generation], job: _Job, model_name: str, chat: bool) -> dict:
    choices = []
    for index, generation in enumerate(out):
        finish = "length" if generation.num_tokens >= job.max_tokens else "stop"
        if chat:
            message = {"role": "assistant", "content": generation.text}
            choices.append({"index": index, "message": message, "finish_reason": finish})
        else:
            choices.append({"index": index, "text": generation.text, "finish_reason": finish})
    completion_tokens = sum(g.num_tokens for g in out)
    prompt_tokens = sum(g.prompt_tokens for g in out)
    return {
        "id": f"llmatic-{time.monotonic_ns()}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="as llm.model takes it")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=32, help="most prompts per batch")
    parser.add_argument("--max-wait-ms", type=float, default=50.0)
    parser.add_argument("--max-tokens", type=int, default=256, help="when a request has none")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    llm = TransformersLLM(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        seed=args.seed,
        num_threads=args.threads,
    )
    batcher = Batcher(llm, max_batch=args.batch_size, max_wait_s=args.max_wait_ms / 1000)
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(batcher, args.model, args.max_tokens)
    )
    log.info("serving %s on http://%s:%d/v1", args.model, args.host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
