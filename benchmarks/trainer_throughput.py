"""Training throughput: the device-resident trainer against a conventional DataLoader loop.

Same data, same network (same initial weights), same epochs, optimiser, schedule, weight
decay, label smoothing and augmentation, in one run, for three networks that span a search:

(a) ``seed``: LLMatic's seed network for 3x32x32 inputs, Conv2d(3, 1, 1) -> ReLU ->
    flatten -> Linear(1024, 10).
(b) ``mid``: three 3x3 convolutions (32/64/128 channels) with BatchNorm, ReLU and pooling.
(c) ``airbench94``: the network of Keller Jordan's airbench94 (KellerJordan/cifar10-airbench,
    ``airbench/lib_airbench94.py``), rewritten here: a frozen 2x2 whitening convolution
    (24 channels, initialised from training patches) + GELU, three conv groups of widths
    64/256/256 (conv, maxpool 2, BatchNorm without scale, GELU, conv, BatchNorm, GELU; convs
    identity-initialised), maxpool 3, a bias-free linear layer and a 1/9 output scale.
    Only the architecture: both trainers train it with the same generic recipe (no
    lookahead, bias lr scaler, alternating flip or whitening-bias freeze of airbench).

Trainers: ``fast`` is :func:`llmatic.fast_training.train_network` (uint8 data on the device,
batch-wise augmentation; bf16/fp16 autocast and channels-last on CUDA, fp32 on the CPU);
``conventional`` is :func:`llmatic.fast_training.conventional_train` (a DataLoader over
per-sample CPU transforms, fp32, ``num_workers=0``).

Data: the CIFAR-10 mini set (``--data``, official python pickle layout): the first 8,000
images of ``data_batch_1`` train, its last 2,000 are the validation split scored here
(``test_batch`` is not used). Reported per network and trainer: training images/second
(after the first step), seconds per candidate split into fixed overhead (data to the
device + the first step) and training, and final validation accuracy.

``--epochs`` defaults to 1 so that the whole CPU run (2 cores) stays within about 8 minutes:
airbench94's network costs about 0.7 GFLOP per training image. Figures go to
``benchmarks/results/trainer_throughput.{json,md}``.

``--reference airbench``: on a CUDA machine, runs the ``airbench`` package's own recipe
(``train94``) on the same mini set against this trainer on the airbench94 network (9.9
epochs, batch 1024, mirror TTA), and reports seconds, final test accuracy and the time to
94% (only full CIFAR-10 reaches 94%; on the mini set that column says "not reached").
Without a GPU it says so in one line and exits 0.

Usage::

    python -m benchmarks.trainer_throughput [--epochs 1] [--networks seed mid airbench94]
        [--device cpu|cuda] [--data DIR] [--threads N] [--reference airbench]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from llmatic.fast_training import (
    DeviceDataset,
    FastTrainResult,
    TrainSettings,
    conventional_train,
    train_network,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-mini" / "cifar-10-batches-py"
VAL_IMAGES = 2000


# --------------------------------------------------------------------------- data


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 python batch: uint8 ``(N, 3, 32, 32)`` images, int64 ``(N,)`` labels."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    images = torch.as_tensor(batch[b"data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
    return images.contiguous(), torch.as_tensor(batch[b"labels"], dtype=torch.int64)


# --------------------------------------------------------------------------- networks


def seed_network() -> nn.Module:
    """LLMatic's seed network for 3x32x32 inputs."""
    return nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU(), nn.Flatten(), nn.Linear(1024, 10))


def mid_network() -> nn.Module:
    """A mid-size candidate: three conv-BN-ReLU stages with pooling."""

    def stage(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *stage(3, 32),
        nn.MaxPool2d(2),
        *stage(32, 64),
        nn.MaxPool2d(2),
        *stage(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


class _Mul(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _BatchNorm(nn.BatchNorm2d):
    """airbench's BatchNorm: eps 1e-12, running-stat momentum 0.4, no trained scale."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-12, momentum=1 - 0.6)
        self.weight.requires_grad = False


class _Conv(nn.Conv2d):
    """airbench's 'same' 3x3 conv without bias, identity-initialised (an implicit residual)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, padding="same", bias=False):
        super().__init__(c_in, c_out, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class _ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = _Conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _BatchNorm(c_out)
        self.conv2 = _Conv(c_out, c_out)
        self.norm2 = _BatchNorm(c_out)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


def airbench94_network(whitening_images: torch.Tensor) -> nn.Module:
    """airbench94's network; the whitening conv is set from normalised ``(N, 3, 32, 32)``."""
    whiten_width = 2 * 3 * 2**2
    net = nn.Sequential(
        _Conv(3, whiten_width, kernel_size=2, padding=0, bias=True),
        nn.GELU(),
        _ConvGroup(whiten_width, 64),
        _ConvGroup(64, 256),
        _ConvGroup(256, 256),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(256, 10, bias=False),
        _Mul(1 / 9),
    )
    _init_whitening(net[0], whitening_images)
    net[0].weight.requires_grad = False
    return net


def _init_whitening(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """The eigenvectors of the 2x2 patch covariance, scaled, and their negatives (airbench)."""
    h, w = layer.weight.shape[2:]
    c = images.shape[1]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w)
    flat = patches.float().reshape(len(patches), -1)
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance, UPLO="U")
    eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
    eigenvectors = eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


NETWORKS = ("seed", "mid", "airbench94")


def build(name: str, whitening_images: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    if name == "seed":
        return seed_network()
    if name == "mid":
        return mid_network()
    return airbench94_network(whitening_images)


# --------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_fast(
    model: nn.Module,
    data: dict[str, torch.Tensor],
    settings: TrainSettings,
    device: torch.device,
) -> tuple[FastTrainResult, float]:
    """Trains with the device-resident trainer; returns the result and data-to-device s."""
    began = time.perf_counter()
    train = DeviceDataset(data["train_x"], data["train_y"], device=device)
    val = DeviceDataset(data["val_x"], data["val_y"], device=device, mean=train.mean, std=train.std)
    _sync(device)
    to_device = time.perf_counter() - began
    result = train_network(
        model, train=train, val=val, test=None, settings=settings, seed=0, device=device
    )
    return result, to_device


def run_conventional(
    model: nn.Module,
    data: dict[str, torch.Tensor],
    settings: TrainSettings,
    device: torch.device,
) -> tuple[FastTrainResult, float]:
    """Trains with the DataLoader baseline (its data moves per batch: no upfront copy)."""
    result = conventional_train(
        model,
        train=(data["train_x"], data["train_y"]),
        val=(data["val_x"], data["val_y"]),
        settings=settings,
        seed=0,
        device=device,
    )
    return result, 0.0


def row(network: str, trainer: str, result: FastTrainResult, to_device: float) -> dict:
    steady_seconds = result.train_seconds - result.first_step_seconds
    steady_images = result.images_seen - result.images_seen / max(result.steps, 1)
    return {
        "network": network,
        "trainer": trainer,
        "images_per_s": steady_images / steady_seconds if steady_seconds > 0 else float("nan"),
        "overhead_s": to_device + result.first_step_seconds,
        "training_s": steady_seconds,
        "total_s": to_device + result.seconds,
        "steps": result.steps,
        "val_accuracy": result.val_accuracy,
        "final_train_loss": result.final_train_loss,
    }


def markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| network | trainer | images/s | overhead (s) | training (s) | total (s) | val acc (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['trainer']} | {r['images_per_s']:.0f} | "
            f"{r['overhead_s']:.2f} | {r['training_s']:.1f} | {r['total_s']:.1f} | "
            f"{r['val_accuracy']:.1f} |"
        )
    lines += ["", "| network | images/s fast / conventional | val acc fast - conventional |"]
    lines.append("|---|---|---|")
    for network, ratio, delta in ratios(rows):
        lines.append(f"| {network} | {ratio:.2f}x | {delta:+.1f} |")
    return "\n".join(lines) + "\n"


def ratios(rows: list[dict]) -> list[tuple[str, float, float]]:
    by = {(r["network"], r["trainer"]): r for r in rows}
    out = []
    for network in dict.fromkeys(r["network"] for r in rows):
        fast, conventional = by.get((network, "fast")), by.get((network, "conventional"))
        if fast and conventional:
            out.append(
                (
                    network,
                    fast["images_per_s"] / conventional["images_per_s"],
                    fast["val_accuracy"] - conventional["val_accuracy"],
                )
            )
    return out


def throughput(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    train_x, train_y = read_batch(args.data / "data_batch_1")
    data = {
        "train_x": train_x[:-VAL_IMAGES],
        "train_y": train_y[:-VAL_IMAGES],
        "val_x": train_x[-VAL_IMAGES:],
        "val_y": train_y[-VAL_IMAGES:],
    }
    normaliser = DeviceDataset(data["train_x"], data["train_y"], device="cpu")
    whitening_images = normaliser.normalise(data["train_x"][:5000], dtype=torch.float32)
    settings = TrainSettings(epochs=args.epochs)
    rows = []
    for network in args.networks:
        initial = build(network, whitening_images)
        for trainer, run in (("fast", run_fast), ("conventional", run_conventional)):
            result, to_device = run(copy.deepcopy(initial), data, settings, device)
            rows.append(row(network, trainer, result, to_device))
            r = rows[-1]
            print(
                f"{network:>11} {trainer:>12}: {r['images_per_s']:8.0f} images/s, "
                f"val {r['val_accuracy']:.1f}%, {r['total_s']:.1f} s",
                flush=True,
            )
    header = (
        f"`python -m benchmarks.trainer_throughput --epochs {args.epochs:g} --device "
        f"{device} --networks {' '.join(args.networks)}` on {platform.machine()} "
        f"({torch.get_num_threads()} torch threads, torch {torch.__version__}); "
        f"train: first {len(data['train_y'])} of data_batch_1, val: its last {VAL_IMAGES}; "
        f"{settings}"
    )
    table = markdown(rows, header)
    print("\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "trainer_throughput.md").write_text(table)
    payload = {
        "command": header,
        "device": str(device),
        "epochs": args.epochs,
        "rows": rows,
        "ratios": [
            {"network": n, "images_per_s_ratio": q, "val_accuracy_delta": d}
            for n, q, d in ratios(rows)
        ],
    }
    (RESULTS / "trainer_throughput.json").write_text(json.dumps(payload, indent=2) + "\n")
    return 0


# --------------------------------------------------------------------------- airbench reference


def reference_airbench(args: argparse.Namespace) -> int:
    """airbench's own train94 recipe against this trainer on the airbench94 network (CUDA).

    Untested here (written on a machine without a GPU).
    """
    if not torch.cuda.is_available():
        print("--reference airbench needs a CUDA GPU (airbench's recipe is CUDA-only); skipped.")
        return 0
    try:
        import airbench
    except ImportError:
        print("--reference airbench needs the airbench package (pip install airbench); skipped.")
        return 0
    device = torch.device("cuda")
    train_x, train_y = read_batch(args.data / "data_batch_1")
    test_x, test_y = read_batch(args.data / "test_batch")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # airbench's loader reads <path>/{train,test}.pt and train94 opens 'cifar10' relative
        # to the working directory; give it the mini set there.
        (Path(tmp) / "cifar10").mkdir()
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            torch.save(
                {"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y, "classes": []},
                Path(tmp) / "cifar10" / f"{name}.pt",
            )
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            loader = airbench.CifarLoader(
                "cifar10",
                train=True,
                batch_size=1024,
                aug={"flip": True, "translate": 2},
                altflip=True,
            )
            airbench.train94(train_loader=loader, epochs=0.2, verbose=False)  # warm up
            torch.cuda.synchronize()
            began = time.perf_counter()
            model = airbench.train94(train_loader=loader, verbose=False)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - began
            test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            accuracy = 100.0 * airbench.evaluate(model, test_loader, tta_level=2)
            rows.append(("airbench train94 (its recipe, TTA level 2)", seconds, accuracy))
        finally:
            os.chdir(cwd)

    train = DeviceDataset(train_x, train_y, device=device)
    test = DeviceDataset(test_x, test_y, device=device, mean=train.mean, std=train.std)
    whitening = train.normalise(train.images[:5000], dtype=torch.float32)
    settings = TrainSettings(epochs=9.9, batch_size=1024, pad=2, tta=True)
    for label in ("warmup", "ours"):
        model = build("airbench94", whitening)
        torch.cuda.synchronize()
        began = time.perf_counter()
        result = train_network(
            model, train=train, val=test, test=None, settings=settings, seed=0, device=device
        )
        seconds = time.perf_counter() - began
        if label == "ours":
            name = "llmatic train_network (generic recipe, mirror TTA)"
            rows.append((name, seconds, result.val_accuracy))
    print("| trainer | seconds | test acc (%) | time to 94% (s) |")
    print("|---|---|---|---|")
    for name, seconds, accuracy in rows:
        reached = f"{seconds:.2f}" if accuracy >= 94.0 else "not reached"
        print(f"| {name} | {seconds:.2f} | {accuracy:.2f} | {reached} |")
    print(f"(data: {len(train_y)} training images of data_batch_1, {len(test_y)} test images)")
    return 0


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--reference", choices=["airbench"], default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.reference == "airbench":
        return reference_airbench(args)
    return throughput(args)


if __name__ == "__main__":
    raise SystemExit(main())
