"""The quickstart benchmark: NB201 cells trained for real on scikit-learn's digits.

8x8 grey images, 10 classes, 1,797 images split 60/20/20 into train/validation/test.
The macro network is NB201's skeleton made small (``channels`` C, ``cells_per_stage`` N).
Training runs in a sandboxed child process (time and memory limits), on CUDA when
present.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.errors import CandidateError
from llmatic.sandbox import results

if TYPE_CHECKING:
    from llmatic.sandbox import Sandbox

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10
#: What ``NetworkMeasures.as_dict`` holds.
MEASURE_KEYS = ("flops", "depth", "width", "params", "width_to_depth", "log10_flops")


class DigitsBenchmark:
    """Objective: validation accuracy (%) after ``epochs`` of SGD on the digits train split.

    Args:
        sandbox: Runs the training child processes.
        channels: C of the macro network.
        cells_per_stage: N of the macro network.
        epochs: Training epochs.
        batch_size: Mini-batch size.
        lr: Initial learning rate (cosine-annealed to 0).
        weight_decay: L2 penalty.
        seed: Seed of weight initialisation and batch order (the same for every arch, so
            an arch's score does not depend on when it was evaluated).
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    name = "digits"

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        channels: int = 8,
        cells_per_stage: int = 1,
        epochs: int = 8,
        batch_size: int = 64,
        lr: float = 0.05,
        weight_decay: float = 5e-4,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.sandbox = sandbox
        self.settings = {
            "channels": channels,
            "cells_per_stage": cells_per_stage,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "device": device,
        }

    def evaluate(self, arch: str) -> ArchEvaluation:
        start = time.perf_counter()
        result = self.sandbox.run(
            "llmatic.benchmarks.digits:train_arch",
            {"arch": arch, **self.settings},
            check=check_train_result,
        )
        if not result.ok:
            raise CandidateError(result.error_kind or "exception", result.error or "")
        value = result.value
        return ArchEvaluation(
            objective=value["val_accuracy"],
            test_objective=value["test_accuracy"],
            measures=value["measures"],
            seconds=time.perf_counter() - start,
        )


def check_train_result(value: dict) -> dict:
    """The parent's check of what :func:`train_arch` sent back (see ``Sandbox.run``).

    Raises:
        ValueError: A key is missing or unknown, or a number is not finite or out of range.
    """
    value = results.exact_keys(
        value, ["val_accuracy", "test_accuracy", "train_loss", "train_seconds", "measures"]
    )
    measures = results.exact_keys(value["measures"], MEASURE_KEYS)
    return {
        "val_accuracy": results.number(value["val_accuracy"], low=0.0, high=100.0),
        "test_accuracy": results.number(value["test_accuracy"], low=0.0, high=100.0),
        "train_loss": results.number(value["train_loss"]),
        "train_seconds": results.number(value["train_seconds"], low=0.0),
        "measures": {key: results.number(measures[key]) for key in MEASURE_KEYS},
    }


def train_arch(payload: dict) -> dict:
    """Sandbox target: trains the network of ``payload["arch"]`` on digits and scores it."""
    import torch

    from llmatic.benchmarks._digits_data import SPLITS
    from llmatic.devices import resolve_device
    from llmatic.measures import measure_network
    from llmatic.nb201.network import ArchCell, CellNetwork
    from llmatic.training import train_classifier

    torch.manual_seed(payload["seed"])
    arch = payload["arch"]
    network = CellNetwork(
        lambda c: ArchCell(arch, c),
        channels=payload["channels"],
        cells_per_stage=payload["cells_per_stage"],
        in_channels=INPUT_SHAPE[0],
        num_classes=NUM_CLASSES,
        reduction="pool",
    )
    measures = measure_network(network, INPUT_SHAPE).as_dict()
    try:
        result = train_classifier(
            network,
            train=SPLITS["train"],
            val=SPLITS["val"],
            test=SPLITS["test"],
            epochs=payload["epochs"],
            batch_size=payload["batch_size"],
            lr=payload["lr"],
            weight_decay=payload["weight_decay"],
            seed=payload["seed"],
            device=torch.device(resolve_device(payload["device"])),
        )
    except FloatingPointError as err:
        raise CandidateError("training_error", str(err)) from None
    return {
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "train_loss": result.final_train_loss,
        "train_seconds": result.seconds,
        "measures": measures,
    }
