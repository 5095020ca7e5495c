"""CIFAR-10 and CIFAR-100: networks trained for real by the fast trainer, in the sandbox.

The paper's experiment. The sandbox's zygote loads the splits once (:func:`load_data`, a
``Sandbox(setup=...)`` call: :func:`llmatic.benchmarks._cifar_data.load_cifar`, numpy only),
and every child inherits them without a copy. A child puts them on its training device as
uint8 tensors and trains with :func:`llmatic.fast_training.train_network` (augmentation and
normalisation on the device, mixed precision on CUDA). It trains either a candidate's own
code (:func:`train_code`, the free-form space) or the NAS-Bench-201 macro network of an arch
string, rebuilt by trusted code (:func:`train_arch`, so a user can check a table entry for
real).

The objective is the validation accuracy on a seeded, stratified held-out part of the
training set (``data.val_size``, 5,000 by default). The test accuracy is recorded for the
final report and never selects anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from llmatic.benchmarks._cifar_data import INPUT_SHAPE, NUM_CLASSES, CifarSplit, load_cifar
from llmatic.benchmarks.base import ArchEvaluation, Lineage
from llmatic.benchmarks.digits import measure_and_train, train_in_sandbox
from llmatic.sandbox import Sandbox

#: The splits and their channel statistics, in the zygote after :func:`load_data`.
DATA: dict[str, Any] = {}
#: NAS-Bench-201's macro network on CIFAR: 16 channels, 5 cells per stage.
NB201_CHANNELS, NB201_CELLS_PER_STAGE = 16, 5


def load_data(payload: dict) -> None:
    """Sandbox set-up call: loads the splits into :data:`DATA`, in the zygote.

    Payload ``{"root", "dataset", "val_size", "split_seed"}``. Numpy only: no torch op
    runs in the zygote (its thread pools would not survive the fork).

    Raises:
        DataError: The data set is missing or damaged (see ``load_cifar``).
    """
    splits = load_cifar(
        payload["root"],
        dataset=payload["dataset"],
        val_size=int(payload["val_size"]),
        split_seed=int(payload["split_seed"]),
    )
    train = splits["train"].images.numpy()
    mean = train.mean(axis=(0, 2, 3), dtype=np.float64)
    std = np.sqrt(np.array([np.var(train[:, c], dtype=np.float64) for c in range(train.shape[1])]))
    DATA.clear()
    DATA.update(splits=splits, dataset=payload["dataset"], mean=mean, std=std)


def train_code(payload: dict, *, static_check: bool = True) -> dict:
    """Sandbox target: trains the untrusted network of ``payload["code"]``.

    Raises:
        CandidateError: What building the network raises (see
            :func:`llmatic.spaces.freeform_inspect.build_network`); ``training_error``
            when the loss becomes NaN or infinite; ``forward_error`` (or
            ``out_of_memory``) when the code raises while it is measured or trained.
    """
    import torch

    from llmatic.spaces.freeform_inspect import build_network

    torch.manual_seed(payload["seed"])
    network = build_network(
        payload["code"],
        input_shape=INPUT_SHAPE,
        num_classes=NUM_CLASSES[_data()["dataset"]],
        static_check=static_check,
    )
    return _train_and_score(network, payload, untrusted=True)


def train_arch(payload: dict) -> dict:
    """Sandbox target: trains NAS-Bench-201's macro network of ``payload["arch"]``."""
    import torch

    from llmatic.nb201.network import ArchCell, CellNetwork

    torch.manual_seed(payload["seed"])
    arch = payload["arch"]
    network = CellNetwork(
        lambda c: ArchCell(arch, c),
        channels=NB201_CHANNELS,
        cells_per_stage=NB201_CELLS_PER_STAGE,
        in_channels=INPUT_SHAPE[0],
        num_classes=NUM_CLASSES[_data()["dataset"]],
    )
    return _train_and_score(network, payload, untrusted=False)


def _data() -> dict[str, Any]:
    if not DATA:
        raise RuntimeError("no CIFAR data in this process: the sandbox needs load_data set-up")
    return DATA


def _train_and_score(network: Any, payload: dict, *, untrusted: bool) -> dict:
    """Measures ``network``, trains it with ``payload["train"]`` and scores it."""
    import torch

    from llmatic.devices import resolve_device
    from llmatic.fast_training import DeviceDataset, TrainSettings, train_network

    data = _data()
    device = torch.device(resolve_device(payload["device"]))
    mean, std = (torch.from_numpy(data[k]).float() for k in ("mean", "std"))

    def on_device(split: CifarSplit) -> DeviceDataset:
        return DeviceDataset(split.images, split.labels, device=device, mean=mean, std=std)

    def train() -> Any:
        splits = data["splits"]
        result = train_network(
            network,
            train=on_device(splits["train"]),
            val=on_device(splits["val"]),
            test=on_device(splits["test"]),
            settings=TrainSettings(**payload["train"]),
            seed=payload["seed"],
            device=device,
            inherit_from=_attached_weights("weights_in"),
        )
        _save_weights(network, "weights_out")
        return result

    return measure_and_train(network, train, input_shape=INPUT_SHAPE, untrusted=untrusted)


def _attached_weights(name: str) -> dict[str, Any] | None:
    """The state dict in the attached file ``name`` (safetensors: no pickle), or None."""
    from llmatic.sandbox import attached

    try:
        fd = attached(name)
    except LookupError:
        return None
    from safetensors.torch import load

    with open(fd, "rb", closefd=False) as file:
        data = file.read()
    try:
        return load(data)
    except Exception:  # noqa: BLE001 - a damaged parent file: train from scratch
        return None


def _save_weights(network: Any, name: str) -> None:
    """Writes ``network``'s state dict to the attached file ``name`` (if attached).

    A file past ``sandbox.max_file_mb`` fails to write: the children then start from
    scratch, and the candidate's own score stands.
    """
    from llmatic.sandbox import attached

    try:
        fd = attached(name)
    except LookupError:
        return
    from safetensors.torch import save

    tensors = {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in network.state_dict().items()
    }
    try:
        data = save(tensors)
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
    except (OSError, ValueError, RuntimeError):
        os.ftruncate(fd, 0)  # half a file would be worse than none


class CifarBenchmark:
    """Trains networks on CIFAR-10 or CIFAR-100 in the sandbox (see the module docstring).

    Args:
        sandbox: Runs the training children; it must have been built with
            :meth:`sandbox_setup`'s call (and this module preloaded).
        dataset: ``cifar10`` or ``cifar100``.
        train: :class:`~llmatic.fast_training.TrainSettings` fields (the recipe).
        seed: Seeds each candidate's weights, data order and augmentation.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
    """

    name = "cifar"

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        dataset: str,
        train: dict,
        seed: int,
        device: str,
        weights_dir: str | Path | None = None,
    ) -> None:
        from llmatic.fast_training import TrainSettings

        if dataset not in NUM_CLASSES:
            raise ValueError(f"dataset must be one of {sorted(NUM_CLASSES)}, got {dataset!r}")
        TrainSettings(**train)  # checks the recipe here, not in every child
        self.sandbox = sandbox
        self.dataset = dataset
        self.settings = {"train": dict(train), "seed": seed, "device": device}
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        if self.weights_dir is not None:
            self.weights_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def sandbox_setup(
        *, root: str, dataset: str, val_size: int, split_seed: int
    ) -> list[tuple[str, dict]]:
        """The zygote's set-up call that loads the splits (for ``Sandbox(setup=...)``)."""
        payload = {"root": root, "dataset": dataset, "val_size": val_size, "split_seed": split_seed}
        return [("llmatic.benchmarks.cifar:load_data", payload)]

    def evaluate(self, arch: str) -> ArchEvaluation:
        """Trains NAS-Bench-201's macro network of ``arch``, rebuilt by trusted code."""
        return self._train("train_arch", {"arch": arch, **self.settings})

    def evaluate_code(self, code: str, *, lineage: Lineage | None = None) -> ArchEvaluation:
        """Trains the network that untrusted ``code`` defines.

        With ``weights_dir`` and a ``lineage``, the trained weights are saved as
        ``weights_dir/ID.safetensors`` (at most ``sandbox.max_file_mb``), and the network
        starts from its parent's saved weights: every same-named, same-shaped tensor
        (:func:`~llmatic.fast_training.inherit_weights`). The files are attached to the
        sandboxed call (``Sandbox.run(files=...)``): the child reads and writes nothing
        else, and the weights are only ever loaded in another sandboxed child.

        Raises:
            CandidateError: The code fails to build, run or train (see :func:`train_code`).
        """
        files = {}
        if self.weights_dir is not None and lineage is not None:
            files["weights_out"] = (self.weights_dir / f"{lineage.candidate_id}.safetensors", "w")
            if lineage.parent_id is not None:
                parent = self.weights_dir / f"{lineage.parent_id}.safetensors"
                if parent.is_file() and parent.stat().st_size > 0:
                    files["weights_in"] = (parent, "r")
        return self._train("train_code", {"code": code, **self.settings}, files=files)

    def _train(self, target: str, payload: dict, *, files: dict | None = None) -> ArchEvaluation:
        return train_in_sandbox(
            self.sandbox, f"llmatic.benchmarks.cifar:{target}", payload, files=files
        )
