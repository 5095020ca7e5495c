"""Trusted targets for the sandbox tests: each takes hostile code from the payload and runs it.

This mimics how the project uses the sandbox: the target is trusted project code, the
payload carries the untrusted source, and the target executes it.
"""

from __future__ import annotations

import os
from typing import Any

#: The pid of the process that imported this module: the zygote's if it was preloaded.
LOADED_IN_PID = os.getpid()


def run_code(payload: dict[str, Any]) -> dict[str, Any]:
    """Executes ``payload["code"]``; the code's ``result`` variable is the return value."""
    scope: dict[str, Any] = {"payload": payload, "result": {}}
    exec(payload["code"], scope)  # noqa: S102 - the point of the exercise
    return scope["result"]


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Returns the payload and where this module was imported."""
    return {
        "payload": payload,
        "loaded_in_pid": LOADED_IN_PID,
        "pid": os.getpid(),
        "ppid": os.getppid(),
    }


def train_cnn(payload: dict[str, Any]) -> dict[str, Any]:
    """Builds the network in ``payload["code"]`` and trains it for a few steps."""
    import torch

    from llmatic.network_code import instantiate

    torch.manual_seed(0)
    net = instantiate(payload["code"], "Net", {"torch": torch, "nn": torch.nn}, 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    inputs = torch.randn(64, 3, 32, 32)
    labels = torch.randint(0, 10, (64,))
    losses = []
    for _ in range(payload.get("steps", 3)):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return {"losses": losses, "params": sum(p.numel() for p in net.parameters())}


def inspect_cell_unchecked(payload: dict[str, Any]) -> dict[str, Any]:
    """``inspect_cell`` without the static check: shows what the sandbox alone holds back."""
    from llmatic.nb201.inspect import inspect_cell

    return inspect_cell(payload, static_check=False)


def train_code_unchecked(payload: dict[str, Any]) -> dict[str, Any]:
    """``train_code`` without the static check: the training path's walls alone."""
    from llmatic.benchmarks.digits import train_code

    return train_code(payload, static_check=False)


#: What :func:`remember` was given (in the zygote, by ``Sandbox(setup=...)``).
REMEMBERED: dict[str, Any] | None = None


def remember(payload: dict[str, Any]) -> None:
    """Set-up call: keeps ``payload`` for every child; ``{"fail": msg}`` raises instead."""
    global REMEMBERED
    if "fail" in payload:
        raise ValueError(payload["fail"])
    REMEMBERED = {**payload, "pid": os.getpid()}


def recall(payload: dict[str, Any]) -> dict[str, Any]:
    """What the zygote's set-up left in this module, and this child's pid."""
    return {"remembered": REMEMBERED, "pid": os.getpid()}


def transform_attached(payload: dict[str, Any]) -> dict[str, Any]:
    """Reads the attached file ``src``, writes it reversed and upper-cased to ``dst``."""
    from llmatic.sandbox import attached

    with open(attached("src"), "rb", closefd=False) as source:
        data = source.read()
    with open(attached("dst"), "wb", closefd=False) as target:
        target.write(data[::-1].upper())
    return {"read": len(data), "pid": os.getpid()}


def write_attached(payload: dict[str, Any]) -> dict[str, Any]:
    """Writes ``payload["bytes"]`` bytes to the attached file ``payload["name"]``, in
    chunks of 64 KiB, then sleeps ``payload.get("sleep", 0)`` seconds; a refused write
    raises (the call reports it).
    """
    import time

    from llmatic.sandbox import attached

    fd = attached(payload["name"])
    remaining = int(payload["bytes"])
    while remaining > 0:
        remaining -= os.write(fd, b"w" * min(remaining, 1 << 16))
    time.sleep(float(payload.get("sleep", 0)))
    return {"written": int(payload["bytes"])}


def sleep_then_echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``payload["seconds"]``, then returns ``{"value": payload["value"]}``."""
    import time

    time.sleep(payload["seconds"])
    return {"value": payload["value"]}
