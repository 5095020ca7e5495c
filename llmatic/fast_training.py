"""A fast, device-resident image-classifier trainer for CIFAR-sized data.

In the spirit of Keller Jordan's airbench / hlb-CIFAR10 recipes: the whole data set lives on
the training device as one uint8 tensor, every batch is gathered, augmented (random crop,
horizontal flip) and normalised there in a few tensor operations, and training runs in mixed
precision with Nesterov SGD on a per-step learning-rate schedule. There is no DataLoader and
no per-sample Python on the hot path.

The trainer runs untrusted candidate networks, so it fails loudly and cleanly: a non-finite
loss raises :class:`FloatingPointError`, a network whose output is not ``(batch, classes)``
raises :class:`ValueError`; the caller records either as the candidate's failure.

:func:`conventional_train` is a BASELINE for ``benchmarks/trainer_throughput.py`` only (a
DataLoader with per-sample CPU transforms); the product uses :func:`train_network`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmatic.devices import cpu_has_native_bf16
from llmatic.training import TrainResult

SCHEDULES = ("triangular", "one_cycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PAD_MODES = ("reflect", "zeros")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# On CUDA, reading the loss back every step would stall the queue; check every few steps.
_CUDA_CHECK_EVERY = 16
# Chunk for computing channel statistics without a float copy of the whole set.
_STATS_CHUNK = 4096


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How :func:`train_network` trains (defaults: a fast CIFAR recipe).

    Attributes:
        epochs: Passes over the training split; fractional values train part of a last pass.
        time_budget_s: Seconds of training (wall clock, checked between steps) after which
            training stops and the network is scored; a budget, not a failure. ``None``: no
            budget. When set, the learning-rate schedule follows whichever of step count and
            elapsed time is further along, so a run cut short still ends annealed.
        batch_size: Training images per step (capped at the split's size).
        lr: Peak learning rate of SGD on the batch-mean loss (ordinary PyTorch units).
        momentum: SGD momentum in [0, 1).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: Decoupled weight decay: the fraction of each weight removed per 1,024
            training images at the peak of the schedule, after momentum's amplification. It
            does not depend on ``lr``, ``batch_size`` or ``momentum`` (as in airbench). Applied
            to weights with 2 or more dimensions only, not to biases or norm scales.
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
        schedule: ``"triangular"``: linear warmup from 0 to ``lr``, then linear decay to 0.
            ``"one_cycle"``: cosine warmup from ``lr / 25`` to ``lr``, then cosine decay to 0.
        warmup: Fraction of the training steps spent warming up, in [0, 1).
        augment: Random crop (``pad`` pixels of padding) and horizontal flip per image,
            done on the device per batch.
        pad: Padding in pixels of the random crop (the crop shifts by up to this much).
        pad_mode: ``"reflect"`` or ``"zeros"`` (zero after normalisation: the mean colour).
        precision: ``"auto"`` (CUDA: bf16 autocast where supported, else fp16 with a
            GradScaler; CPU: bf16 autocast where the CPU has native bf16, AMX or
            AVX512-BF16, else fp32), or ``"fp32"``, ``"bf16"``, ``"fp16"``.
        channels_last: Channels-last memory format for the network and batches: faster on
            CUDA and on the CPU alike (oneDNN's NCHW convolutions are 16x slower on LLMatic's
            seed network, 1.3x on airbench94's; ``benchmarks/results/trainer_throughput.md``).
        deterministic: Deterministic algorithms (and cuDNN deterministic, benchmark off) for
            bit-identical reruns; otherwise cuDNN benchmark mode on CUDA.
        eval_batch_size: Images per forward pass while scoring.
        tta: Test-time augmentation: average the logits of each image and its mirror image.
    """

    epochs: float = 10.0
    time_budget_s: float | None = None
    batch_size: int = 512
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-3
    label_smoothing: float = 0.2
    schedule: str = "triangular"
    warmup: float = 0.2
    augment: bool = True
    pad: int = 4
    pad_mode: str = "reflect"
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    eval_batch_size: int = 1024
    tta: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs={self.epochs} must be a positive number")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s={self.time_budget_s} must be positive or None")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(
                f"batch_size={self.batch_size} and eval_batch_size={self.eval_batch_size} "
                "must be at least 1"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr} must be a positive number")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay={self.weight_decay} must be 0 or more")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is not one of {SCHEDULES}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup={self.warmup} must be a fraction in [0, 1)")
        if self.pad < 0:
            raise ValueError(f"pad={self.pad} must be 0 or more")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode={self.pad_mode!r} is not one of {PAD_MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {PRECISIONS}")


@dataclass(frozen=True)
class FastTrainResult(TrainResult):
    """A :class:`~llmatic.training.TrainResult` (accuracies in %) plus how training went.

    ``test_accuracy`` is ``float("nan")`` when no test split was given. ``seconds`` is the
    whole call: setup, training and scoring.

    Attributes:
        inherited: Names of the state-dict tensors copied from ``inherit_from``.
        steps: Optimiser steps taken.
        images_seen: Training images processed (``steps`` x batch size).
        stopped_by_budget: Training ended on ``time_budget_s`` before all its steps.
        first_step_seconds: Seconds of the first step (kernel selection, allocation, warmup).
        train_seconds: Seconds of the whole training loop, first step included.
    """

    inherited: tuple[str, ...]
    steps: int
    images_seen: int
    stopped_by_budget: bool
    first_step_seconds: float
    train_seconds: float


class DeviceDataset:
    """A labelled image split held on one device, batched and augmented with tensor ops.

    Attributes:
        images: uint8 ``(N, C, H, W)`` on the device.
        labels: int64 ``(N,)`` on the device.
        mean: float32 ``(C,)``, per-channel mean in pixel units (0-255), on the device.
        std: float32 ``(C,)``, per-channel standard deviation in pixel units, on the device.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        device: torch.device | str,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        """Moves the split to ``device``.

        Args:
            images: uint8 ``(N, C, H, W)``, pixels 0-255, any device.
            labels: Integer ``(N,)`` class indices.
            device: Where the split lives and batches are made.
            mean: ``(C,)`` channel means in pixel units; ``None``: computed from ``images``
                (pass the training split's for validation and test splits).
            std: ``(C,)`` channel standard deviations in pixel units; ``None``: computed.

        Raises:
            ValueError: Wrong dtypes or shapes, or an empty split.
        """
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
            raise ValueError(
                f"labels must be integer (N,) with N={len(images)}, got "
                f"{labels.dtype} {tuple(labels.shape)}"
            )
        if len(images) == 0:
            raise ValueError("the split is empty")
        self.images = images.to(device).contiguous()
        self.labels = labels.to(device=device, dtype=torch.int64)
        computed_mean, computed_std = (None, None)
        if mean is None or std is None:
            computed_mean, computed_std = _channel_stats(self.images)
        channels = images.shape[1]
        self.mean = _as_channel_vector(mean if mean is not None else computed_mean, channels)
        self.std = _as_channel_vector(std if std is not None else computed_std, channels)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        # A constant channel would divide by zero; one pixel unit leaves it centred.
        self.std = self.std.clamp_min(1.0)

    @classmethod
    def from_unit_float(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        device: torch.device | str,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> DeviceDataset:
        """Quantises float images in [0, 1], ``(N, C, H, W)``, to uint8 and holds them."""
        quantised = (images.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
        return cls(quantised, labels, device=device, mean=mean, std=std)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def normalise(self, images: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> ``(images - mean) / std`` in ``dtype``, on the device."""
        scale = (1.0 / self.std).to(dtype).view(1, -1, 1, 1)
        shift = (-self.mean / self.std).to(dtype).view(1, -1, 1, 1)
        return images.to(dtype).mul_(scale).add_(shift)

    def augmented(
        self,
        indices: torch.Tensor,
        *,
        pad: int,
        pad_mode: str,
        generator: torch.Generator | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Normalised, randomly cropped and flipped images ``indices``, ``(B, C, H, W)``.

        Each image is shifted by up to ``pad`` pixels each way (as a crop of the padded
        image) and mirrored with probability 1/2, by gathering from the uint8 store:
        padding is index arithmetic, never a padded copy.

        Args:
            indices: int64 ``(B,)`` on the device.
            pad: Largest shift in pixels (less than the image's height and width).
            pad_mode: ``"reflect"`` (mirror at the border) or ``"zeros"`` (zero after
                normalisation, i.e. the mean colour).
            generator: Random source for the shifts and flips, on the device.
            dtype: Dtype of the result.
        """
        n = len(indices)
        _, channels, height, width = self.images.shape
        if pad_mode == "reflect" and pad >= min(height, width):
            raise ValueError(f"pad={pad} must be less than the image size for reflect padding")
        device = self.device
        shifts = torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=device)
        flip = torch.rand(n, 1, generator=generator, device=device) < 0.5
        rows = shifts[:, :1] + torch.arange(height, device=device)
        columns = torch.arange(width, device=device).expand(n, width)
        columns = torch.where(flip, width - 1 - columns, columns) + shifts[:, 1:]
        inside = None
        if pad_mode == "zeros":
            inside = ((rows >= 0) & (rows < height))[:, None, :, None] & (
                (columns >= 0) & (columns < width)
            )[:, None, None, :]
            rows, columns = rows.clamp(0, height - 1), columns.clamp(0, width - 1)
        else:
            rows, columns = _reflect(rows, height), _reflect(columns, width)
        # Two 1-D gathers (rows, then columns) are several times faster than one 4-D index.
        shape = (n, channels, height, width)
        gathered = self.images[indices].gather(2, rows[:, None, :, None].expand(shape))
        gathered = gathered.gather(3, columns[:, None, None, :].expand(shape))
        images = self.normalise(gathered, dtype=dtype)
        return images if inside is None else images.mul_(inside)

    def batches(
        self,
        *,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        shuffle: bool = False,
        augment: bool = False,
        pad: int = 4,
        pad_mode: str = "reflect",
        drop_last: bool = False,
        channels_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the split: normalised images ``(B, C, H, W)`` and labels ``(B,)``.

        Args:
            batch_size: Images per batch.
            dtype: Dtype of the images (the compute dtype).
            shuffle: A random order (from ``generator``) instead of the stored order.
            augment: Random crop and flip (see :meth:`augmented`).
            pad: Largest crop shift in pixels.
            pad_mode: ``"reflect"`` or ``"zeros"``.
            drop_last: Leave out a last, smaller batch.
            channels_last: Channels-last memory format for the images.
            generator: Random source (on this split's device) for order and augmentation.
        """
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            indices = order[start : start + batch_size]
            if augment:
                images = self.augmented(
                    indices, pad=pad, pad_mode=pad_mode, generator=generator, dtype=dtype
                )
            else:
                images = self.normalise(self.images[indices], dtype=dtype)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[indices]


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Maps out-of-range pixel indices into range by mirroring at the border (no repeat)."""
    index = torch.where(index < 0, -index, index)
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (pixel units, float32 ``(C,)``) of uint8 ``(N, C, H, W)``."""
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for chunk in images.split(_STATS_CHUNK):
        values = chunk.transpose(0, 1).reshape(chunk.shape[1], -1).double()
        total += values.sum(dim=1)
        squares += values.square().sum(dim=1)
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.float(), std.float()


def _as_channel_vector(values: torch.Tensor, channels: int) -> torch.Tensor:
    vector = torch.as_tensor(values, dtype=torch.float32).flatten()
    if len(vector) != channels:
        raise ValueError(f"mean and std need {channels} values, got {len(vector)}")
    return vector


def inherit_weights(model: nn.Module, source: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    """Copies every same-named, same-shaped tensor of ``source`` into ``model``'s state.

    Parameters and buffers both count; tensors of other names or shapes are left as they
    are. Returns the names copied, in the model's state-dict order.
    """
    copied = []
    with torch.no_grad():
        # state_dict() tensors share storage with the module's, so copy_ writes through.
        for name, tensor in model.state_dict().items():
            donor = source.get(name)
            if isinstance(donor, torch.Tensor) and donor.shape == tensor.shape:
                tensor.copy_(donor)
                copied.append(name)
    return tuple(copied)


def lr_factor(progress: float, *, schedule: str, warmup: float) -> float:
    """The schedule's learning rate as a fraction of the peak, at ``progress`` in [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "triangular":
        if p < warmup:
            return p / warmup
        return (1.0 - p) / (1.0 - warmup)
    if p < warmup:
        return 0.04 + 0.96 * (1.0 - math.cos(math.pi * p / warmup)) / 2
    return (1.0 + math.cos(math.pi * (p - warmup) / (1.0 - warmup))) / 2


def _optimizer(
    model: nn.Module, *, settings: TrainSettings, batch_size: int
) -> torch.optim.Optimizer:
    """Nesterov SGD with decoupled weight decay on the weights (>= 2-D) only.

    PyTorch multiplies ``weight_decay`` by the current learning rate, and momentum amplifies
    each step by ``1 / (1 - momentum)``; dividing both out makes the decay per 1,024 images
    equal ``settings.weight_decay`` times the schedule, whatever the lr, batch and momentum.

    Raises:
        ValueError: The network has no trainable parameters.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the network has no trainable parameters")
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    torch_decay = settings.weight_decay * batch_size / 1024 * (1 - settings.momentum) / settings.lr
    groups = [
        {"params": decay, "weight_decay": torch_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]],
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=settings.nesterov,
    )


def _compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision != "auto":
        return _DTYPES[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bf16 autocast halves a step's time on CPUs that multiply bf16 in hardware (AMX,
    # AVX512-BF16: benchmarks/results/trainer_throughput.md); elsewhere it is emulated.
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


@contextlib.contextmanager
def _determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Sets the global determinism switches for one training call, then restores them."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        if deterministic:
            if device.type == "cuda":
                # cuBLAS needs this before its first use to be deterministic.
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]


def _check_logits(logits: object, *, batch_size: int, classes_needed: int) -> None:
    """Raises ValueError unless the network's output is ``(batch, classes)`` logits."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"the network returned {type(logits).__name__}, not a tensor of logits")
    if logits.ndim != 2 or logits.shape[0] != batch_size:
        raise ValueError(
            f"the network returned shape {tuple(logits.shape)}; expected "
            f"({batch_size}, classes) logits"
        )
    if logits.shape[1] < classes_needed:
        raise ValueError(
            f"the network returned {logits.shape[1]} logits but the labels need "
            f"{classes_needed} classes"
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: DeviceDataset,
    *,
    normaliser: DeviceDataset,
    batch_size: int,
    dtype: torch.dtype,
    channels_last: bool,
    tta: bool = False,
) -> float:
    """Top-1 accuracy in % over the whole split, in eval mode, without gradients.

    Args:
        model: The network, on the split's device.
        split: The images to score.
        normaliser: The split whose mean and std normalise the images (the training split).
        batch_size: Images per forward pass.
        dtype: Compute dtype (autocast below fp32).
        channels_last: Channels-last batches.
        tta: Average the logits of each image and its mirror image.
    """
    model.eval()
    device = split.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    classes_needed = int(split.labels.max()) + 1
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for start in range(0, len(split), batch_size):
            images = normaliser.normalise(split.images[start : start + batch_size], dtype=dtype)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            logits = model(images)
            if start == 0:
                _check_logits(logits, batch_size=len(images), classes_needed=classes_needed)
            logits = logits.float()
            if tta:
                logits = logits + model(images.flip(-1)).float()
            labels = split.labels[start : start + batch_size]
            correct += (logits.argmax(dim=1) == labels).sum()
    return 100.0 * correct.item() / len(split)


def train_network(
    model: nn.Module,
    *,
    train: DeviceDataset,
    val: DeviceDataset,
    test: DeviceDataset | None,
    settings: TrainSettings,
    seed: int,
    device: torch.device,
    inherit_from: Mapping[str, torch.Tensor] | None = None,
) -> FastTrainResult:
    """Trains ``model`` on ``train`` and scores it on ``val`` (and ``test``).

    Label-smoothed cross entropy, Nesterov SGD with the learning rate set per step from the
    schedule, autocast in the compute dtype (GradScaler for fp16). ``val`` and ``test`` are
    normalised with ``train``'s mean and std.

    Args:
        model: The network: ``(B, C, H, W)`` float images -> ``(B, classes)`` logits.
        train: Training split, on ``device``.
        val: Validation split (the search objective), on ``device``.
        test: Test split or ``None`` (then ``test_accuracy`` is NaN).
        settings: The recipe.
        seed: Seeds the global torch RNG (dropout and the like) and the data order and
            augmentation. The network's initial weights are the caller's.
        device: Where to train; the splits must already be there.
        inherit_from: A state dict to warm-start from (see :func:`inherit_weights`).

    Returns:
        Accuracies in %, the last training loss, timings and the inherited tensor names.

    Raises:
        FloatingPointError: The training loss became NaN or infinite.
        ValueError: The network has no trainable parameters or returns the wrong shape, or
            a split is not on ``device``.
    """
    start = time.perf_counter()
    device = torch.device(device)
    for name, split in (("train", train), ("val", val), ("test", test)):
        if split is not None and split.device.type != device.type:
            raise ValueError(f"the {name} split is on {split.device}, not {device}")
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    dtype = _compute_dtype(settings.precision, device)
    channels_last = settings.channels_last
    inherited = inherit_weights(model, inherit_from) if inherit_from is not None else ()
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    batch_size = min(settings.batch_size, len(train))
    steps_per_epoch = len(train) // batch_size
    total_steps = max(1, round(settings.epochs * steps_per_epoch))
    optimizer = _optimizer(model, settings=settings, batch_size=batch_size)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    check_every = _CUDA_CHECK_EVERY if device.type == "cuda" else 1

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:  # as many passes as the steps need
            yield from train.batches(
                batch_size=batch_size,
                dtype=dtype,
                shuffle=True,
                augment=settings.augment,
                pad=settings.pad,
                pad_mode=settings.pad_mode,
                drop_last=True,
                channels_last=channels_last,
                generator=generator,
            )

    with _determinism(settings.deterministic, device):
        model.train()
        nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        loss = torch.full((), float("nan"), device=device)
        train_start = time.perf_counter()
        first_step_seconds = 0.0
        stopped_by_budget = False
        step = 0
        # zip asks the range first, so no batch is made after the last step.
        for _, (images, labels) in zip(range(total_steps), batches(), strict=False):
            elapsed = time.perf_counter() - train_start
            progress = (step + 0.5) / total_steps
            if settings.time_budget_s is not None:
                if step > 0 and elapsed >= settings.time_budget_s:
                    stopped_by_budget = True
                    break
                progress = max(progress, elapsed / settings.time_budget_s)
            factor = lr_factor(progress, schedule=settings.schedule, warmup=settings.warmup)
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * factor
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                logits = model(images)
            if step == 0:
                classes_needed = int(train.labels.max()) + 1
                _check_logits(logits, batch_size=len(labels), classes_needed=classes_needed)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=settings.label_smoothing)
            nonfinite |= ~torch.isfinite(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            if step % check_every == 0 or step == total_steps:
                _raise_if_nonfinite(nonfinite, step)
            if step == 1:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                first_step_seconds = time.perf_counter() - train_start
        _raise_if_nonfinite(nonfinite, step)
        train_seconds = time.perf_counter() - train_start

        def score(split: DeviceDataset) -> float:
            return evaluate(
                model,
                split,
                normaliser=train,
                batch_size=settings.eval_batch_size,
                dtype=dtype,
                channels_last=channels_last,
                tta=settings.tta,
            )

        val_accuracy = score(val)
        test_accuracy = score(test) if test is not None else float("nan")
    return FastTrainResult(
        val_accuracy=val_accuracy,
        test_accuracy=test_accuracy,
        final_train_loss=float(loss.item()),
        seconds=time.perf_counter() - start,
        inherited=inherited,
        steps=step,
        images_seen=step * batch_size,
        stopped_by_budget=stopped_by_budget,
        first_step_seconds=first_step_seconds,
        train_seconds=train_seconds,
    )


def _raise_if_nonfinite(nonfinite: torch.Tensor, step: int) -> None:
    if bool(nonfinite.item()):
        raise FloatingPointError(f"the training loss became NaN or infinite by step {step}")


# ---------------------------------------------------------------------------------------
# BASELINE for benchmarks/trainer_throughput.py only: the conventional data path.
# ---------------------------------------------------------------------------------------


class _PerSampleImages(torch.utils.data.Dataset):
    """BASELINE: a torchvision-style dataset, one CPU image at a time, fp32."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: torch.Tensor,
        std: torch.Tensor,
        augment: bool,
        pad: int,
        pad_mode: str,
    ) -> None:
        self.images, self.labels = images, labels
        self.mean, self.std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
        self.augment, self.pad = augment, pad
        self.mode = "reflect" if pad_mode == "reflect" else "constant"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = (self.images[index].float() - self.mean) / self.std
        if self.augment:
            height, width = image.shape[-2:]
            padded = F.pad(image[None], (self.pad,) * 4, mode=self.mode)[0]
            top, left = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            image = padded[:, top : top + height, left : left + width]
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
        return image, self.labels[index]


def conventional_train(
    model: nn.Module,
    *,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    seed: int,
    device: torch.device,
) -> FastTrainResult:
    """BASELINE (benchmark only): the same recipe through a DataLoader with per-sample work.

    The same optimiser, schedule, decay, label smoothing, epochs and augmentation as
    :func:`train_network`, but the data path of a conventional script: CPU uint8 images in a
    ``Dataset`` normalised, padded, cropped and flipped one image at a time, collated by a
    ``DataLoader`` (``num_workers=0``), copied to ``device`` per batch, always fp32 and
    contiguous (NCHW). Comparing the two isolates the data path and the precision.

    Args:
        model: The network.
        train: uint8 ``(N, C, H, W)`` images and int64 ``(N,)`` labels, on the CPU.
        val: The validation split, the same way.
        settings: The recipe (``precision``, ``channels_last``, ``tta`` and
            ``time_budget_s`` are ignored).
        seed: Seeds the global torch RNG (order and augmentation).
        device: Where the network trains.

    Returns:
        As :func:`train_network`, with ``test_accuracy`` NaN and nothing inherited.
    """
    start = time.perf_counter()
    device = torch.device(device)
    torch.manual_seed(seed)
    images, labels = train
    mean, std = _channel_stats(images)
    std = std.clamp_min(1.0)
    augmentation = {"pad": settings.pad, "pad_mode": settings.pad_mode}
    train_set = _PerSampleImages(
        images, labels, mean=mean, std=std, augment=settings.augment, **augmentation
    )
    val_set = _PerSampleImages(*val, mean=mean, std=std, augment=False, **augmentation)
    batch_size = min(settings.batch_size, len(train_set))
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0
    )
    total_steps = max(1, round(settings.epochs * len(loader)))
    model = model.to(device)
    optimizer = _optimizer(model, settings=settings, batch_size=batch_size)
    model.train()
    loss = torch.tensor(float("nan"))
    train_start = time.perf_counter()
    first_step_seconds = 0.0
    step = 0
    while step < total_steps:
        for batch_images, batch_labels in loader:
            if step == total_steps:
                break
            batch_images, batch_labels = batch_images.to(device), batch_labels.to(device)
            factor = lr_factor(
                (step + 0.5) / total_steps, schedule=settings.schedule, warmup=settings.warmup
            )
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * factor
            loss = F.cross_entropy(
                model(batch_images), batch_labels, label_smoothing=settings.label_smoothing
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss is {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == 1:
                first_step_seconds = time.perf_counter() - train_start
    train_seconds = time.perf_counter() - train_start
    model.eval()
    correct = 0
    with torch.no_grad():
        eval_loader = torch.utils.data.DataLoader(val_set, batch_size=settings.eval_batch_size)
        for batch_images, batch_labels in eval_loader:
            logits = model(batch_images.to(device))
            correct += int((logits.argmax(dim=1).cpu() == batch_labels).sum())
    return FastTrainResult(
        val_accuracy=100.0 * correct / len(val_set),
        test_accuracy=float("nan"),
        final_train_loss=float(loss.item()),
        seconds=time.perf_counter() - start,
        inherited=(),
        steps=step,
        images_seen=step * batch_size,
        stopped_by_budget=False,
        first_step_seconds=first_step_seconds,
        train_seconds=train_seconds,
    )
