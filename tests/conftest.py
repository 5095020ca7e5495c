"""Shared test helpers: a scripted LLM double and cell-code completions."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmatic.llm.base import Generation, GenerationRequest
from llmatic.nb201.cell import CELL_FORWARD, EDGES, arch_to_code, format_arch
from llmatic.nb201.ops import OP_NAMES

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def edges_completion(arch: str) -> str:
    """What a perfect model writes after the ``edges`` prefill for ``arch``."""
    code = arch_to_code(arch)
    body = code[: code.index(CELL_FORWARD)]
    return body.split('self.edge_0_1 = OPS["', 1)[1] + "\n"


class ScriptedLLM:
    """A deterministic LLM double: returns its script in order, cycling.

    Attributes:
        calls: The requests of every ``generate`` call, one list per call.
    """

    def __init__(self, script: Sequence[str]) -> None:
        self.script = list(script)
        self.calls: list[list[GenerationRequest]] = []
        self._next = 0
        self.total_seconds = 0.0
        self.total_tokens = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.calls.append(list(requests))
        out = []
        for _ in requests:
            text = self.script[self._next % len(self.script)]
            self._next += 1
            out.append(Generation(text=text, num_tokens=len(text.split())))
            self.total_tokens += len(text.split())
        return out


@pytest.fixture
def scripted_llm():
    return ScriptedLLM


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A synthetic NB201 table of the whole cell space (random CIFAR-10 accuracies)."""
    archs = [
        format_arch(dict(zip(EDGES, ops, strict=True)))
        for ops in itertools.product(OP_NAMES, repeat=len(EDGES))
    ]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "arch": archs,
            "cifar10_val": rng.uniform(10.0, 95.0, len(archs)).round(3),
            "cifar10_test": rng.uniform(10.0, 95.0, len(archs)).round(3),
        }
    )
    path = tmp_path_factory.mktemp("nb201") / "table.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def llmatic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llmatic.llm.serve`` on a free loopback port; yields its /v1 URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llmatic.llm.serve", "--port", str(port)]
    command += ["--threads", "1", "--max-wait-ms", "100"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180  # the first use converts the GGUF (~20 s)
        while True:
            if process.poll() is not None:
                pytest.fail(f"llmatic.llm.serve exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/models", timeout=2):
                break
            if time.monotonic() > deadline:
                pytest.fail("llmatic.llm.serve did not answer /v1/models within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
