"""Per-call overhead of :class:`llmatic.sandbox.Sandbox` against calling the target in-process.

Measures, in milliseconds per call (mean, median, 95th percentile):

* a trivial target (returns its payload), in-process and sandboxed, with the target's
  module preloaded in the zygote and without;
* a target that imports torch-using project code, builds a tiny ``nn.Module`` from
  source with :func:`llmatic.network_code.instantiate` and runs one forward pass;

and, once, the zygote's start-up time next to a fresh interpreter's ``import torch``
(which a design without a zygote would pay on every call).

Run with ``python benchmarks/sandbox_overhead.py [--calls N]``; the figures go to
``benchmarks/results/sandbox_overhead.json`` and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How the zygote imports this module: by its package name under ``-m``, else as a script.
_MODULE = __spec__.name if __spec__ is not None else Path(__file__).stem
RESULTS = Path(__file__).resolve().parent / "results" / "sandbox_overhead.json"

TINY_NET = """
class Net(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))
"""


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """The trivial target."""
    return payload


def build_tiny_net(payload: dict[str, Any]) -> dict[str, Any]:
    """The torch target: instantiate the network from source, one forward pass."""
    import torch

    from llmatic.network_code import instantiate

    net = instantiate(payload["code"], "Net", {"torch": torch, "nn": torch.nn}, 10)
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 16, 16))
    return {"shape": list(out.shape), "params": sum(p.numel() for p in net.parameters())}


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in seconds)
    return {
        "calls": len(ms),
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
    }


def _time_calls(call: Callable[[], Any], calls: int) -> dict[str, float]:
    call()  # warm-up: first-call imports and caches are not per-call overhead
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return _summary(seconds)


def _checked(sandbox: Any, target: str, payload: dict[str, Any]) -> Callable[[], Any]:
    def call() -> Any:
        result = sandbox.run(target, payload)
        if not result.ok:
            raise RuntimeError(f"{target} failed in the sandbox: {result.error}")
        return result

    return call


def _fresh_import_torch_s(repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def measure(calls: int = 200) -> dict[str, Any]:
    """Runs every measurement; returns the figures as a JSON-ready dict."""
    import torch

    from llmatic.sandbox import Sandbox, SandboxLimits

    limits = SandboxLimits(wall_time_s=60.0)
    startups = []
    for _ in range(3):
        start = time.perf_counter()
        Sandbox(limits=limits, preload=[_MODULE]).close()
        startups.append(time.perf_counter() - start)
    payload = {"x": list(range(10))}
    net_payload = {"code": TINY_NET}
    timings: dict[str, dict[str, float]] = {
        "trivial, in-process": _time_calls(lambda: echo(payload), calls),
        "tiny nn.Module, in-process": _time_calls(lambda: build_tiny_net(net_payload), calls),
    }
    with Sandbox(limits=limits, preload=[_MODULE]) as box:
        timings["trivial, sandbox"] = _time_calls(_checked(box, f"{_MODULE}:echo", payload), calls)
        timings["tiny nn.Module, sandbox"] = _time_calls(
            _checked(box, f"{_MODULE}:build_tiny_net", net_payload), calls
        )
    # The target's module imported by every child (its folder readable in the sandbox).
    with Sandbox(limits=limits, read_paths=[Path(__file__).resolve().parent]) as box:
        timings["trivial, sandbox, not preloaded"] = _time_calls(
            _checked(box, f"{_MODULE}:echo", payload), max(20, calls // 4)
        )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "zygote_startup_s": {"runs": startups, "median": statistics.median(startups)},
        "fresh_interpreter_import_torch_s": _fresh_import_torch_s(3),
        "per_call": timings,
    }


def _table(figures: dict[str, Any]) -> str:
    lines = [f"{'case':34} {'calls':>5} {'mean ms':>9} {'median ms':>10} {'p95 ms':>8}"]
    for name, row in figures["per_call"].items():
        lines.append(
            f"{name:34} {row['calls']:5d} {row['mean_ms']:9.3f} "
            f"{row['median_ms']:10.3f} {row['p95_ms']:8.3f}"
        )
    lines.append(f"zygote start-up (median of 3): {figures['zygote_startup_s']['median']:.2f} s")
    lines.append(
        "fresh interpreter + import torch (median of 3): "
        f"{figures['fresh_interpreter_import_torch_s']:.2f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measures, writes :data:`RESULTS` and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per case")
    args = parser.parse_args(argv)
    figures = measure(calls=args.calls)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(_table(figures))
    print(f"written to {RESULTS}")
    return figures


if __name__ == "__main__":
    main()
