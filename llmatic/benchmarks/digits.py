"""The quickstart benchmark: networks trained for real on scikit-learn's digits.

8x8 grey images, 10 classes, 1,797 images split 60/20/20 into train/validation/test.
Two kinds of network: an NB201 cell, given by its arch string, in NB201's macro skeleton
made small (``channels`` C, ``cells_per_stage`` N), rebuilt by trusted code
(:meth:`DigitsBenchmark.evaluate`); or a free-form network, the candidate's own code
(:meth:`DigitsBenchmark.evaluate_code`). Training runs in a sandboxed child process (time
and memory limits), on CUDA when present; the data is loaded once, in the zygote
(:mod:`llmatic.benchmarks._digits_data`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmatic.benchmarks.base import ArchEvaluation, check_measures
from llmatic.errors import CandidateError
from llmatic.sandbox import results

if TYPE_CHECKING:
    from llmatic.sandbox import Sandbox

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 10
#: The settings of :meth:`DigitsBenchmark.evaluate` that only the macro network uses.
_MACRO_SETTINGS = ("channels", "cells_per_stage")


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
        """Trains the NB201 macro network of ``arch``, rebuilt by trusted code."""
        return self._train("train_arch", {"arch": arch, **self.settings})

    def evaluate_code(self, code: str) -> ArchEvaluation:
        """Trains the network that untrusted ``code`` defines, in the sandbox.

        Raises:
            CandidateError: The code fails to build, run or train (see :func:`train_code`).
        """
        settings = {k: v for k, v in self.settings.items() if k not in _MACRO_SETTINGS}
        return self._train("train_code", {"code": code, **settings})

    def _train(self, target: str, payload: dict) -> ArchEvaluation:
        return train_in_sandbox(self.sandbox, f"llmatic.benchmarks.digits:{target}", payload)


def train_in_sandbox(
    sandbox: Sandbox, target: str, payload: dict, *, files: dict | None = None
) -> ArchEvaluation:
    """Runs a training ``target`` (``"module:function"``) in ``sandbox``; its evaluation.

    The target returns what :func:`check_train_result` checks (val/test accuracy in %,
    the last training loss, seconds, measures). ``files`` are attached to the call
    (``Sandbox.run(files=...)``).

    Raises:
        CandidateError: The call failed (its failure kind and message).
    """
    start = time.perf_counter()
    result = sandbox.run(target, payload, check=check_train_result, files=files or {})
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
    return {
        "val_accuracy": results.number(value["val_accuracy"], low=0.0, high=100.0),
        "test_accuracy": results.number(value["test_accuracy"], low=0.0, high=100.0),
        "train_loss": results.number(value["train_loss"]),
        "train_seconds": results.number(value["train_seconds"], low=0.0),
        "measures": check_measures(value["measures"]),
    }


def train_arch(payload: dict) -> dict:
    """Sandbox target: trains the network of ``payload["arch"]`` on digits and scores it."""
    import torch

    from llmatic.nb201.network import ArchCell, CellNetwork

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
    return _train_and_score(network, payload, untrusted=False)


def train_code(payload: dict, *, static_check: bool = True) -> dict:
    """Sandbox target: trains the untrusted network of ``payload["code"]`` on digits.

    The code defines a class whose constructor takes no argument (see
    :func:`llmatic.spaces.freeform_inspect.build_network`); its output shape is checked
    before training. ``static_check=False`` (never from a payload: only the tests' own
    target sets it) skips the static check of the code.

    Raises:
        CandidateError: What building the network raises; ``training_error`` when the
            loss becomes NaN or infinite; ``forward_error`` (or ``out_of_memory``) when the
            code raises while it is measured or trained.
    """
    import torch

    from llmatic.spaces.freeform_inspect import build_network

    torch.manual_seed(payload["seed"])
    network = build_network(
        payload["code"],
        input_shape=INPUT_SHAPE,
        num_classes=NUM_CLASSES,
        static_check=static_check,
    )
    return _train_and_score(network, payload, untrusted=True)


def _train_and_score(network: Any, payload: dict, *, untrusted: bool) -> dict:
    """Measures and trains ``network`` with ``payload``'s settings; the targets' result."""
    import torch

    from llmatic.benchmarks._digits_data import SPLITS
    from llmatic.devices import resolve_device
    from llmatic.training import train_classifier

    def train() -> Any:
        return train_classifier(
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

    return measure_and_train(network, train, input_shape=INPUT_SHAPE, untrusted=untrusted)


def measure_and_train(
    network: Any, train: Callable[[], Any], *, input_shape: tuple, untrusted: bool
) -> dict:
    """A training target's result: ``network`` measured, then ``train()`` run and scored.

    Args:
        network: The module, built.
        train: Trains it; returns a :class:`~llmatic.training.TrainResult`.
        input_shape: One input ``(C, H, W)``, for the measures.
        untrusted: The network is a candidate's own code, so whatever it raises is its
            fault (``forward_error``); a trusted network's exception is a bug (it propagates
            and the call ends as ``exception``).

    Returns:
        What :func:`check_train_result` checks.

    Raises:
        CandidateError: ``training_error`` (a NaN or infinite loss), ``forward_error``.
    """
    from llmatic.measures import measure_network
    from llmatic.network_code import candidate_failure

    try:
        measures = measure_network(network, input_shape).as_dict()
        result = train()
    except FloatingPointError as err:
        raise CandidateError("training_error", str(err)) from None
    except Exception as err:
        if not untrusted:
            raise
        raise candidate_failure("forward_error", err) from None
    return {
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy,
        "train_loss": result.final_train_loss,
        "train_seconds": result.seconds,
        "measures": measures,
    }
