"""The batcher of ``llmatic.llm.serve``: jobs that arrive together share one generate call."""

from __future__ import annotations

import threading

from llmatic.llm.base import Generation
from llmatic.llm.serve import Batcher, _Job


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
