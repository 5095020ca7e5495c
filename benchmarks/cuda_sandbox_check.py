"""On a CUDA machine: do sandboxed children train on the GPU, under both memory guards?

The checks that need a GPU (their CPU twins are in ``tests/test_sandbox_parts.py``):

1. ``fresh-child``: a child starts with CUDA not initialised (the zygote never touches it);
2. ``train``: a free-form network's own code trains on digits on CUDA in the sandbox
   (``llmatic.benchmarks.digits:train_code``, ``device=cuda``);
3. ``device-bomb``: allocating more than ``gpu_memory_fraction`` of the GPU ends the call
   as ``out_of_memory``, and the next call trains again;
4. ``host-bomb``: filling host memory past ``memory_mb`` ends the call as ``out_of_memory``
   (the call's cgroup, since CUDA children have no ``RLIMIT_AS``).

Usage (one short script for a lent GPU machine; on a machine without CUDA it says so and
exits 0)::

    python -m benchmarks.cuda_sandbox_check [--out benchmarks/results/cuda_sandbox_check.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from llmatic.benchmarks.digits import check_train_result
from llmatic.sandbox import Sandbox, SandboxLimits
from llmatic.spaces.freeform import seed_code

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = (
    "llmatic.benchmarks.digits",
    "llmatic.benchmarks._digits_data",
    "llmatic.measures",
    "llmatic.training",
    "llmatic.spaces.freeform_inspect",
    "benchmarks.cuda_sandbox_check",
)
TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0005, "seed": 0}


def cuda_state(payload: dict) -> dict:
    """Sandbox target: whether CUDA was initialised before this call touched it."""
    before = torch.cuda.is_initialized()
    torch.zeros(1, device="cuda")
    return {"initialised_before": before, "device": torch.cuda.get_device_name(0)}


def device_bomb(payload: dict) -> dict:
    """Sandbox target: allocates ``payload["fraction"]`` of the GPU's memory."""
    total = torch.cuda.get_device_properties(0).total_memory
    blob = torch.empty(int(total * payload["fraction"]), dtype=torch.uint8, device="cuda")
    return {"allocated": int(blob.numel())}


def host_bomb(payload: dict) -> dict:
    """Sandbox target: writes ``payload["mb"]`` MiB of host memory."""
    blob = b"x" * (payload["mb"] * 1024 * 1024)
    return {"allocated": len(blob)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/cuda_sandbox_check.json"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA here: nothing to check")
        return {}
    limits = SandboxLimits(wall_time_s=120, memory_mb=8192, cuda=True, gpu_memory_fraction=0.5)
    target = "benchmarks.cuda_sandbox_check"
    code = seed_code(input_shape=(1, 8, 8), num_classes=10)
    report: dict = {"limits": {"memory_mb": 8192, "gpu_memory_fraction": 0.5}}
    with Sandbox(limits=limits, preload=PRELOAD) as box:
        report["isolation"] = str(box.isolation)
        checks = {
            "fresh-child": (f"{target}:cuda_state", {}, None),
            "train": (
                "llmatic.benchmarks.digits:train_code",
                {"code": code, "device": "cuda", **TRAIN},
                check_train_result,
            ),
            "device-bomb": (f"{target}:device_bomb", {"fraction": 0.8}, None),
            "train-after": (
                "llmatic.benchmarks.digits:train_code",
                {"code": code, "device": "cuda", **TRAIN},
                check_train_result,
            ),
            "host-bomb": (f"{target}:host_bomb", {"mb": 16384}, None),
        }
        for name, (where, payload, check) in checks.items():
            start = time.perf_counter()
            result = box.run(where, payload, check=check) if check else box.run(where, payload)
            report[name] = {
                "ok": result.ok,
                "error_kind": result.error_kind,
                "error": (result.error or "")[:300],
                "value": result.value,
                "seconds": round(time.perf_counter() - start, 2),
            }
            print(name, report[name])
    verdict = {
        "fresh-child": report["fresh-child"]["ok"]
        and report["fresh-child"]["value"]["initialised_before"] is False,
        "train": report["train"]["ok"],
        "device-bomb": report["device-bomb"]["error_kind"] == "out_of_memory",
        "train-after": report["train-after"]["ok"],
        "host-bomb": report["host-bomb"]["error_kind"] == "out_of_memory",
    }
    report["verdict"] = verdict
    print("verdict:", verdict)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return report


if __name__ == "__main__":
    main()
