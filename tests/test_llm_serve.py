"""``llmatic.llm.serve`` without a model: the batcher (jobs that arrive together share one
generate call) and the structured-output fields of its HTTP handler."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from llmatic.llm.base import Generation
from llmatic.llm.serve import Batcher, _Job, make_handler
from llmatic.llm.wire import RegexConstraint


class RecordingLLM:
    """Answers each prompt with itself reversed; records every generate call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[str, ...], list[str]]] = []
        self.max_new_tokens, self.stop = 1, ()

    def generate(self, requests):
        self.calls.append((self.max_new_tokens, self.stop, [r.prompt for r in requests]))
        return [Generation(text=r.prompt[::-1], num_tokens=len(r.prompt)) for r in requests]


def test_concurrent_jobs_are_batched_and_answered_in_order():
    llm = RecordingLLM()
    batcher = Batcher(llm, max_batch=8, max_wait_s=1.0)
    answers: dict[int, list[str]] = {}

    def ask(i: int, prompts: list[str], max_tokens: int) -> None:
        job = _Job(prompts=prompts, temperature=1.0, max_tokens=max_tokens, stop=("\n",))
        answers[i] = [g.text for g in batcher.submit(job)]

    threads = [
        threading.Thread(target=ask, args=(0, ["ab", "cd"], 5)),
        threading.Thread(target=ask, args=(1, ["ef"], 5)),
        threading.Thread(target=ask, args=(2, ["gh"], 9)),  # other limits: its own call
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert answers == {0: ["ba", "dc"], 1: ["fe"], 2: ["hg"]}
    assert sorted((n, len(prompts)) for n, _, prompts in llm.calls) == [(5, 3), (9, 1)]
    assert all(stop == ("\n",) for _, stop, _ in llm.calls)


# --- structured outputs over HTTP (the handler, with a model double) --------------------------


class WalkingLLM:
    """Answers each constrained request with the first text of its constraint; records them."""

    def __init__(self) -> None:
        self.requests: list = []
        self.max_new_tokens, self.stop = 1, ()

    def generate(self, requests):
        self.requests.extend(requests)
        out = []
        for r in requests:
            text = ""
            while r.constraint is not None and (options := r.constraint.continuations(text)):
                text += options[0]
            out.append(Generation(text=text, num_tokens=max(1, len(text))))
        return out


@pytest.fixture
def handler_url():
    llm = WalkingLLM()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), make_handler(Batcher(llm, max_batch=8, max_wait_s=0.01), "m", 16)
    )
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/completions", llm
    server.shutdown()
    server.server_close()


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    "field",
    [
        {"structured_outputs": {"regex": "(a|b)c"}},  # vLLM's, what llmatic sends
        {"guided_regex": "(a|b)c"},  # older vLLM's
        {"regex": "(a|b)c"},  # SGLang's
        {"structured_outputs": {"regex": "(a|b)c", "disable_fallback": False}},  # an option
    ],
)
def test_each_servers_regex_field_constrains_the_sample(handler_url, field):
    url, llm = handler_url
    status, answer = post(url, {"prompt": "p", "max_tokens": 4, **field})
    assert status == 200 and answer["choices"][0]["text"] == "ac"
    assert isinstance(llm.requests[-1].constraint, RegexConstraint)
    assert llm.requests[-1].constraint.to_regex() == "(a|b)c"


def test_no_field_means_no_constraint(handler_url):
    url, llm = handler_url
    assert post(url, {"prompt": "p"})[0] == 200
    assert llm.requests[-1].constraint is None


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"regex": "a+"}, "regex: unsupported syntax '\\+' at position 1"),
        ({"guided_regex": "(ab"}, "guided_regex: unclosed group"),
        ({"regex": 3}, "regex must be a string"),
        ({"structured_outputs": {"grammar": "root ::= 'a'"}}, "structured_outputs.grammar is"),
        ({"ebnf": "root ::= 'a'"}, "ebnf is not supported; this server takes a regex only"),
        ({"guided_json": {}}, "guided_json is not supported"),
        ({"regex": "a", "guided_regex": "a"}, "send one structured output"),
        ({"structured_outputs": "a"}, "structured_outputs must be an object"),
    ],
)
def test_other_structured_outputs_are_a_400_that_says_why(handler_url, field, message):
    url, llm = handler_url
    status, answer = post(url, {"prompt": "p", **field})
    assert status == 400
    assert re.search(message, answer["error"]["message"]), answer["error"]["message"]
    assert "\n" not in answer["error"]["message"]
    assert llm.requests == []  # refused before sampling
