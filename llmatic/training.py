"""Training and scoring a classifier: the objective of trained benchmarks.

Written against the reference code's mistakes: mini-batches (not batch size 1),
``train()`` at the start of every epoch and ``eval()`` only while scoring, accuracy as
correct / total over the whole split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Split:
    """Images ``x`` of shape ``(N, C, H, W)`` (float) and labels ``y`` of shape ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float  # %, the search objective
    test_accuracy: float  # %, for the final report only
    final_train_loss: float
    seconds: float


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy in % over the whole split (model in eval mode)."""
    model.eval()
    correct = 0
    for start in range(0, len(split.y), batch_size):
        logits = model(split.x[start : start + batch_size])
        correct += (logits.argmax(dim=1) == split.y[start : start + batch_size]).sum().item()
    return 100.0 * correct / len(split.y)


def train_classifier(
    model: nn.Module,
    *,
    train: Split,
    val: Split,
    test: Split,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
) -> TrainResult:
    """Trains with SGD (Nesterov momentum 0.9, cosine learning rate) and scores.

    Raises:
        FloatingPointError: The training loss became NaN or infinite.
    """
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    model = model.to(device)
    train, val, test = train.to(device), val.to(device), test.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
    )
    steps_per_epoch = math.ceil(len(train.y) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train.y), generator=generator).to(device)
        for step in range(steps_per_epoch):
            batch = order[step * batch_size : (step + 1) * batch_size]
            loss = loss_fn(model(train.x[batch]), train.y[batch])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return TrainResult(
        val_accuracy=accuracy(model, val),
        test_accuracy=accuracy(model, test),
        final_train_loss=float(loss.item()),
        seconds=time.perf_counter() - start,
    )
