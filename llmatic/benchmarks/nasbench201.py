"""NAS-Bench-201 as a lookup table: an arch string in, its trained accuracies out.

Table format
------------
One row per architecture, as CSV or Parquet (chosen by the file suffix: ``.csv``,
``.parquet`` / ``.pq``):

- ``arch`` (required): the NB201 arch string, e.g.
  ``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``.
  Loading canonicalises it with ``format_arch(parse_arch(s))``.
- ``index`` (optional): the architecture's index in the official release.
- metric columns ``{dataset}_{split}`` (200 training epochs) and ``{dataset}_{split}_12ep``
  (12 epochs), with ``dataset`` in ``cifar10, cifar100, imagenet16`` and ``split`` in
  ``val, test``. Values are top-1 accuracy in % (0-100), averaged over the release's seeds.
  ``cifar10_val`` is the validation accuracy of NB201's ``cifar10-valid`` run (trained on
  the train split), ``cifar10_test`` the test accuracy of its ``cifar10`` run (trained on
  train + valid), as in the NB201 paper.

A table may be partial: any subset of the 15,625 architectures and of the 12 metric
columns. Build one from the official release with the ``convert`` command below.

Command line
------------
``python -m llmatic.benchmarks.nasbench201 convert --source {nb201,nats} --input PATH
--output OUT.csv`` converts ``NAS-Bench-201-v1_[01]-*.pth`` (needs ``pip install
nas-bench-201``) or the NATS-Bench topology release, e.g. the ``NATS-tss-v1_0-3ffb9-simple``
folder (needs ``pip install nats-bench``). ``python -m llmatic.benchmarks.nasbench201 info
TABLE`` prints what a table holds and its oracle.

Protocol
--------
The search sees validation accuracy only (:meth:`NasBench201Benchmark.objective`); the
200-epoch test accuracy is read in one place, :meth:`NasBench201Benchmark.test_accuracy`,
to fill ``ArchEvaluation.test_objective`` for the final report.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmatic.benchmarks.base import ArchEvaluation
from llmatic.errors import CandidateError
from llmatic.nb201.cell import EDGES, format_arch, parse_arch
from llmatic.nb201.ops import OP_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from llmatic.measures import NetworkMeasures
    from llmatic.nb201.network import CellNetwork

DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16")
SPLITS: tuple[str, ...] = ("val", "test")
#: Training epochs of the release's two hyper-parameter settings (``hp`` in its API).
FIDELITIES: tuple[str, ...] = ("200", "12")
NUM_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100, "imagenet16": 120}
#: Side of the square input images, in pixels.
INPUT_SIZE: dict[str, int] = {"cifar10": 32, "cifar100": 32, "imagenet16": 16}

_METRIC_RE = re.compile(r"^(cifar10|cifar100|imagenet16)_(val|test)(_12ep)?$")
_KEY_COLUMNS = ("arch", "index")

GET_DATA_HINT = (
    "get the official NAS-Bench-201 file (NAS-Bench-201-v1_1-096897.pth) or the NATS-Bench "
    "topology release (NATS-tss-v1_0-3ffb9-simple), convert it with `python -m "
    "llmatic.benchmarks.nasbench201 convert --source nb201|nats --input PATH --output "
    "nb201.csv`, and point benchmark.table=PATH at the result"
)


def metric_column(dataset: str, split: str, fidelity: str = "200") -> str:
    """Name of the column holding ``split`` accuracy on ``dataset`` after ``fidelity`` epochs."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is unknown; use one of {list(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; use one of {list(SPLITS)}")
    fidelity = _check_fidelity(fidelity)
    return f"{dataset}_{split}" + ("_12ep" if fidelity == "12" else "")


def _check_fidelity(fidelity: str | int) -> str:
    # Hydra reads `fidelity: 200` as an int; both spellings mean the same setting.
    text = str(fidelity)
    if text not in FIDELITIES:
        raise ValueError(
            f"fidelity {fidelity!r} is unknown; use one of {list(FIDELITIES)} (epochs)"
        )
    return text


def canonical_arch(arch: str) -> str:
    """The canonical spelling of an arch string; raises ``ValueError`` if it is not one."""
    return format_arch(parse_arch(arch))


# ------------------------------------------------------------------------------------ table


class NasBench201Table:
    """Accuracies of NB201 architectures, indexed for O(1) lookups.

    Args:
        archs: Arch strings, one per row (canonicalised here).
        metrics: Column name (see :func:`metric_column`) -> one accuracy (%) per row.
        indices: Official NB201 index of each row, if known.
        source: Where the table came from; error messages name it.

    Raises:
        ValueError: An arch string does not parse, repeats, a column name is not a metric
            column, or a value is missing or outside [0, 100].
    """

    def __init__(
        self,
        archs: Sequence[str],
        metrics: Mapping[str, Sequence[float]],
        *,
        indices: Sequence[int] | None = None,
        source: str = "<table>",
    ) -> None:
        self.source = source
        self._archs = [self._canonical(a, row) for row, a in enumerate(archs)]
        self._row: dict[str, int] = {}
        for row, arch in enumerate(self._archs):
            if arch in self._row:
                raise ValueError(
                    f"{source}: duplicate arch in rows {self._row[arch]} and {row}: {arch}"
                )
            self._row[arch] = row
        self._columns = {name: self._metric(name, values) for name, values in metrics.items()}
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and len(self.indices) != len(self._archs):
            raise ValueError(f"{source}: {len(self.indices)} indices for {len(self._archs)} archs")

    def _canonical(self, arch: object, row: int) -> str:
        if not isinstance(arch, str):
            raise ValueError(f"{self.source}: row {row}: arch must be a string, got {arch!r}")
        try:
            return canonical_arch(arch)
        except ValueError as err:
            raise ValueError(f"{self.source}: row {row}: {err}") from None

    def _metric(self, name: str, values: Sequence[float]) -> np.ndarray:
        if not _METRIC_RE.match(name):
            raise ValueError(
                f"{self.source}: column {name!r} is not a metric column; use "
                "{dataset}_{split}[_12ep] with dataset in cifar10/cifar100/imagenet16 "
                "and split in val/test (besides 'arch' and an optional 'index')"
            )
        try:
            column = np.array(values, dtype=np.float64)  # a copy: it is made read-only
        except (TypeError, ValueError):
            raise ValueError(f"{self.source}: column {name!r} holds non-numbers") from None
        if column.shape != (len(self._archs),):
            raise ValueError(
                f"{self.source}: column {name!r} has {len(column)} values for "
                f"{len(self._archs)} archs"
            )
        bad = np.flatnonzero(~((column >= 0.0) & (column <= 100.0)))  # NaN fails both
        if bad.size:
            raise ValueError(
                f"{self.source}: column {name!r} row {bad[0]} holds {column[bad[0]]!r}: "
                f"{bad.size} value(s) missing or outside [0, 100] (accuracies are in %)"
            )
        column.setflags(write=False)
        return column

    # ---------------------------------------------------------------------------- input/output

    @classmethod
    def load(cls, path: str | Path) -> NasBench201Table:
        """Reads a table in the module's format from a ``.csv`` or ``.parquet`` file.

        Raises:
            FileNotFoundError: No file at ``path`` (the message says how to get one).
            ValueError: The file is not in the table format.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"NAS-Bench-201 table not found at {path}: {GET_DATA_HINT}")
        return cls.from_frame(_read_frame(path), source=str(path))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, source: str = "<frame>") -> NasBench201Table:
        """Builds a table from a ``pandas.DataFrame`` with the file format's columns."""
        if "arch" not in frame.columns:
            raise ValueError(f"{source}: no 'arch' column (columns: {list(frame.columns)})")
        metrics = {str(c): frame[c].to_numpy() for c in frame.columns if c not in _KEY_COLUMNS}
        indices = frame["index"].to_numpy() if "index" in frame.columns else None
        return cls(frame["arch"].tolist(), metrics, indices=indices, source=source)

    def to_frame(self) -> pd.DataFrame:
        """The table as a ``pandas.DataFrame`` in the file format."""
        import pandas as pd

        data: dict[str, Any] = {} if self.indices is None else {"index": self.indices}
        data["arch"] = self._archs
        data.update({name: self._columns[name] for name in _ordered(self._columns)})
        return pd.DataFrame(data)

    def save(self, path: str | Path) -> None:
        """Writes the table to ``path``, CSV or Parquet by its suffix."""
        path = Path(path)
        frame = self.to_frame()
        if _is_parquet(path):
            _require_pyarrow()
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)

    # -------------------------------------------------------------------------------- lookups

    @property
    def archs(self) -> list[str]:
        """Canonical arch strings, in table order."""
        return list(self._archs)

    @property
    def columns(self) -> list[str]:
        """Metric columns present, in canonical order."""
        return _ordered(self._columns)

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: object) -> bool:
        return self.row(arch) is not None

    def __repr__(self) -> str:
        return f"NasBench201Table({len(self)} archs, {self.columns}, source={self.source!r})"

    def row(self, arch: object) -> int | None:
        """Row of ``arch`` (any spelling ``parse_arch`` accepts), or None if absent."""
        if not isinstance(arch, str):
            return None
        row = self._row.get(arch)
        if row is None:
            # Rare path: a non-canonical spelling, or no arch string at all.
            try:
                row = self._row.get(canonical_arch(arch))
            except ValueError:
                return None
        return row

    def has(self, dataset: str, fidelity: str | int = "200", split: str = "val") -> bool:
        """Whether the table has ``split`` accuracy on ``dataset`` after ``fidelity`` epochs."""
        return metric_column(dataset, split, str(fidelity)) in self._columns

    def column(self, dataset: str, split: str, fidelity: str | int = "200") -> np.ndarray:
        """The (read-only) accuracies (%) of one metric, one per row.

        Raises:
            KeyError: The table lacks that metric.
        """
        name = metric_column(dataset, split, str(fidelity))
        if name not in self._columns:
            raise KeyError(f"{self.source} has no column {name!r} (it has {self.columns})")
        return self._columns[name]

    def value(self, arch: str, dataset: str, split: str, fidelity: str | int = "200") -> float:
        """Accuracy (%) of ``arch`` for one metric.

        Raises:
            KeyError: ``arch`` is not in the table, or the table lacks the metric.
        """
        column = self.column(dataset, split, fidelity)
        row = self.row(arch)
        if row is None:
            raise KeyError(f"arch not in {self.source}: {arch}")
        return float(column[row])

    def oracle(self, dataset: str, fidelity: str | int = "200") -> tuple[str, float, float]:
        """The best a search by validation accuracy can report on this table.

        Returns:
            ``(arch, val, test)``: the arch with the highest ``fidelity``-epoch validation
            accuracy (ties: the first in table order), that accuracy and its 200-epoch
            test accuracy, in %.
        """
        val = self.column(dataset, "val", fidelity)
        test = self.column(dataset, "test", "200")
        best = int(np.argmax(val))
        return self._archs[best], float(val[best]), float(test[best])


def _ordered(names: Mapping[str, object] | Sequence[str]) -> list[str]:
    order = [metric_column(d, s, f) for f in FIDELITIES for d in DATASETS for s in SPLITS]
    return [n for n in order if n in names]


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("Parquet tables need pyarrow: pip install pyarrow") from None


def _read_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    if _is_parquet(path):
        _require_pyarrow()
        return pd.read_parquet(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: unknown table format; use a .csv or .parquet file")
    # Arch strings are text; let pandas guess only the metric columns.
    return pd.read_csv(path, dtype={"arch": str})


# --------------------------------------------------------------------------------- measures


@dataclass(frozen=True)
class _NetworkParts:
    """Measures of the NB201 network's pieces, each taken from real modules.

    The macro network is a fixed skeleton (stem, two residual reductions, head,
    classifier) plus ``3 * cells_per_stage`` cells. FLOPs and parameters add up over the
    pieces; width is a maximum over them; the weight-layer depth is the skeleton's plus
    the cell's longest path, once per cell, because every cell node is connected to the
    cell input in the autograd graph (``none`` multiplies by 0, which keeps the edge).
    """

    skeleton: NetworkMeasures  # the network with all-``none`` cells
    cells_per_stage: int
    op_flops: dict[tuple[str, int], int]  # (op, stage) -> FLOPs of one edge
    op_params: dict[tuple[str, int], int]
    op_width: dict[tuple[str, int], int]
    op_depth: dict[str, int]  # weight layers an edge adds to a path


def build_network(
    arch: str, *, dataset: str, channels: int = 16, cells_per_stage: int = 5
) -> CellNetwork:
    """The NB201 macro network of ``arch`` for ``dataset`` (random weights, CPU)."""
    from llmatic.nb201.network import ArchCell, CellNetwork

    return CellNetwork(
        lambda c: ArchCell(arch, c),
        channels=channels,
        cells_per_stage=cells_per_stage,
        in_channels=3,
        num_classes=NUM_CLASSES[dataset],
        reduction="residual",
    )


def reference_measures(
    arch: str, *, dataset: str, channels: int = 16, cells_per_stage: int = 5
) -> dict[str, float]:
    """``measure_network`` on the real network: the slow reference for :func:`compose_measures`."""
    from llmatic.measures import measure_network

    network = build_network(
        arch, dataset=dataset, channels=channels, cells_per_stage=cells_per_stage
    )
    size = INPUT_SIZE[dataset]
    return measure_network(network, (3, size, size)).as_dict()


@functools.cache
def network_parts(dataset: str, channels: int = 16, cells_per_stage: int = 5) -> _NetworkParts:
    """Measures every piece once (about 0.1-1 s); cached per configuration."""
    import torch

    from llmatic.measures import count_flops, max_width, measure_network, weight_layer_depth
    from llmatic.nb201.ops import OPS

    empty = format_arch({})  # every edge `none`
    network = build_network(
        empty, dataset=dataset, channels=channels, cells_per_stage=cells_per_stage
    )
    size = INPUT_SIZE[dataset]
    skeleton = measure_network(network, (3, size, size))
    flops, params, width, depth = {}, {}, {}, {}
    for stage in range(3):
        c, side = channels * 2**stage, size // 2**stage
        for name in OP_NAMES:
            op = OPS[name](c).eval()
            flops[name, stage] = int(count_flops(op, torch.zeros(1, c, side, side)))
            params[name, stage] = sum(p.numel() for p in op.parameters() if p.requires_grad)
            width[name, stage] = max_width(op)
            x = torch.zeros(1, c, side, side, requires_grad=True)
            depth[name] = weight_layer_depth(op(x))
    return _NetworkParts(skeleton, cells_per_stage, flops, params, width, depth)


def compose_measures(arch: str, parts: _NetworkParts) -> dict[str, float]:
    """Measures of ``arch``'s network, equal to ``measure_network`` on it, in ~50 us."""
    from llmatic.measures import NetworkMeasures

    ops = parse_arch(arch)
    n = parts.cells_per_stage
    edges = [(ops[edge], stage) for stage in range(3) for edge in EDGES]  # one cell per stage
    skeleton = parts.skeleton
    measures = NetworkMeasures(
        flops=float(int(skeleton.flops) + n * sum(parts.op_flops[k] for k in edges)),
        depth=skeleton.depth + 3 * n * _cell_depth(ops, parts.op_depth),
        width=max(skeleton.width, *(parts.op_width[k] for k in edges)),
        params=skeleton.params + n * sum(parts.op_params[k] for k in edges),
    )
    return measures.as_dict()


def _cell_depth(ops: Mapping[tuple[int, int], str], op_depth: Mapping[str, int]) -> int:
    """Longest chain of weight layers from node 0 to node 3 of one cell."""
    node = [0, 0, 0, 0]
    for target in (1, 2, 3):
        node[target] = max(node[s] + op_depth[ops[s, target]] for s in range(target))
    return node[3]


# -------------------------------------------------------------------------------- benchmark


class NasBench201Benchmark:
    """Objective: NB201 validation accuracy (%) looked up in a table; no training.

    Args:
        table: The table, or a path to load it from.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16`` (ImageNet16-120).
        fidelity: Training epochs of the objective: ``"200"`` or ``"12"`` (the cheap
            low-fidelity signal). The reported test accuracy is always the 200-epoch one.
        channels: C of the macro network whose measures go to the network archive.
        cells_per_stage: N of that network.
        simulated_train_s: Seconds each evaluation waits, as if it trained (0: none). For
            scaling studies (``benchmarks/scaling.py``): the table's answers with a
            training time, so that parallel workers have something to overlap.

    Raises:
        ValueError: Unknown dataset/fidelity, or the table lacks the needed columns.
    """

    name = "nasbench201"

    def __init__(
        self,
        *,
        table: NasBench201Table | str | Path,
        dataset: str,
        fidelity: str | int = "200",
        channels: int = 16,
        cells_per_stage: int = 5,
        simulated_train_s: float = 0.0,
    ) -> None:
        if simulated_train_s < 0:
            raise ValueError(f"simulated_train_s must be >= 0, got {simulated_train_s}")
        self.simulated_train_s = float(simulated_train_s)
        self.table = table if isinstance(table, NasBench201Table) else NasBench201Table.load(table)
        self.dataset = dataset
        self.fidelity = _check_fidelity(fidelity)
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        for split, epochs in (("val", self.fidelity), ("test", "200")):
            if not self.table.has(dataset, epochs, split):
                raise ValueError(
                    f"{self.table.source} lacks {metric_column(dataset, split, epochs)!r}, "
                    f"needed for dataset={dataset} fidelity={self.fidelity} (it has "
                    f"{self.table.columns})"
                )
        # The search signal. The test column is kept apart and read by test_accuracy only.
        self._val = self.table.column(dataset, "val", self.fidelity)
        self._test_for_report = self.table.column(dataset, "test", "200")
        self._measures: dict[str, dict[str, float]] = {}

    def _row(self, arch: str) -> int:
        row = self.table.row(arch)
        if row is None:
            raise CandidateError(
                "out_of_space",
                f"{arch} is not among the {len(self.table)} architectures of {self.table.source}",
            )
        return row

    def objective(self, arch: str) -> float:
        """Validation accuracy (%) after ``fidelity`` epochs: all the search may see.

        Raises:
            CandidateError: ``out_of_space`` when ``arch`` is not in the table.
        """
        return float(self._val[self._row(arch)])

    def test_accuracy(self, arch: str) -> float:
        """200-epoch test accuracy (%), for the final report only, never for selection."""
        return float(self._test_for_report[self._row(arch)])

    def measures(self, arch: str) -> dict[str, float]:
        """Measures of ``arch``'s network (see :mod:`llmatic.measures`), cached per arch."""
        key = canonical_arch(arch)
        cached = self._measures.get(key)
        if cached is None:
            parts = network_parts(self.dataset, self.channels, self.cells_per_stage)
            cached = self._measures[key] = compose_measures(key, parts)
        return dict(cached)  # a copy: callers may not edit the cache

    def oracle(self) -> tuple[str, float, float]:
        """``table.oracle`` for this benchmark's dataset and fidelity."""
        return self.table.oracle(self.dataset, self.fidelity)

    def evaluate(self, arch: str) -> ArchEvaluation:
        start = time.perf_counter()
        objective = self.objective(arch)  # raises out_of_space first
        if self.simulated_train_s:
            time.sleep(self.simulated_train_s)
        return ArchEvaluation(
            objective=objective,
            test_objective=self.test_accuracy(arch),
            measures=self.measures(arch),
            seconds=time.perf_counter() - start,
        )


# -------------------------------------------------------------------------------- converter

#: (our dataset, split) -> (official dataset, official eval set); see the module docstring.
OFFICIAL_SPLITS: dict[tuple[str, str], tuple[str, str]] = {
    ("cifar10", "val"): ("cifar10-valid", "x-valid"),
    ("cifar10", "test"): ("cifar10", "ori-test"),
    ("cifar100", "val"): ("cifar100", "x-valid"),
    ("cifar100", "test"): ("cifar100", "x-test"),
    ("imagenet16", "val"): ("ImageNet16-120", "x-valid"),
    ("imagenet16", "test"): ("ImageNet16-120", "x-test"),
}

# What the official APIs raise when a release lacks a result (a dataset, an eval set, an
# hp setting or, in NATS-Bench's folder, a whole architecture file).
_MISSING = (KeyError, ValueError, AssertionError, FileNotFoundError)


def open_official_api(source: str, path: str | Path) -> Any:
    """Opens an official release with its own API package.

    Args:
        source: ``nb201`` (a ``NAS-Bench-201-v1_*.pth`` file, package ``nas-bench-201``) or
            ``nats`` (NATS-Bench topology: the ``...-simple`` folder or the
            ``.pickle.pbz2`` file, package ``nats-bench``).
        path: The file or folder.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        ImportError: The API package is not installed (the message says which).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no NAS-Bench-201 release at {path}")
    if source == "nb201":
        try:
            from nas_201_api import NASBench201API
        except ImportError:
            raise ImportError(
                "reading NAS-Bench-201 needs its API: pip install nas-bench-201"
            ) from None
        with _trusted_torch_load():
            return NASBench201API(str(path), verbose=False)
    if source == "nats":
        try:
            import nats_bench
        except ImportError:
            raise ImportError("reading NATS-Bench needs its API: pip install nats-bench") from None
        return nats_bench.create(str(path), "tss", fast_mode=path.is_dir(), verbose=False)
    raise ValueError(f"source {source!r} is unknown; use nb201 or nats")


@contextlib.contextmanager
def _trusted_torch_load() -> Iterator[None]:
    # The NB201 API calls torch.load(path) on a pickle of Python objects written in 2020;
    # torch >= 2.6 would load it as weights only and may refuse those objects. The user
    # names the official file to convert, so it is trusted as the API always trusted it.
    previous = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
            yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = previous


def table_from_api(
    api: Any, *, source: str = "<api>", log: Callable[[str], None] | None = None
) -> NasBench201Table:
    """Reads every architecture's seed-averaged accuracies through an official API object.

    Uses only the API calls that both official packages share: ``len(api)``, ``api[i]``
    (arch string) and ``api.query_meta_info_by_index(i, hp=...)`` returning an
    ``ArchResults`` whose ``get_metrics(dataset, set, is_random=False)["accuracy"]`` is
    the mean over seeds after the last epoch. A metric the release lacks for any
    architecture (e.g. 12-epoch CIFAR-100 in NAS-Bench-201 v1.0) becomes no column.
    """
    log = log or (lambda message: None)
    total = len(api)
    archs, columns = (
        [],
        {metric_column(d, s, f): [] for f in FIDELITIES for d, s in OFFICIAL_SPLITS},
    )
    for index in range(total):
        archs.append(api[index])
        for fidelity in FIDELITIES:
            try:
                results = api.query_meta_info_by_index(index, hp=fidelity)
            except _MISSING:
                results = None
            for (dataset, split), official in OFFICIAL_SPLITS.items():
                columns[metric_column(dataset, split, fidelity)].append(
                    _accuracy(results, *official)
                )
        if (index + 1) % 1000 == 0:
            log(f"read {index + 1}/{total} architectures")
    metrics = {}
    for name, values in columns.items():
        missing = sum(math.isnan(v) for v in values)
        if missing == 0:
            metrics[name] = values
        elif missing < total:
            log(f"dropping {name}: missing for {missing} of {total} architectures")
    if not metrics:
        raise ValueError(f"{source}: no accuracies found for any architecture")
    return NasBench201Table(archs, metrics, indices=range(total), source=source)


def _accuracy(results: Any, dataset: str, eval_set: str) -> float:
    if results is None:
        return math.nan
    try:
        return float(results.get_metrics(dataset, eval_set, is_random=False)["accuracy"])
    except _MISSING:
        return math.nan


def convert(source: str, input_path: str | Path, output_path: str | Path) -> NasBench201Table:
    """Converts an official release to a table file (see the module docstring)."""
    output_path = Path(output_path)
    if not (_is_parquet(output_path) or output_path.suffix.lower() == ".csv"):
        raise ValueError(f"{output_path}: the output must end in .csv or .parquet")
    api = open_official_api(source, input_path)
    table = table_from_api(api, source=str(input_path), log=lambda m: print(m, file=sys.stderr))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    table.save(output_path)
    return table


def describe(table: NasBench201Table) -> str:
    """What ``info`` prints: size, metrics present and the oracle per dataset/fidelity."""
    lines = [f"table: {table.source}", f"architectures: {len(table)}"]
    for dataset in DATASETS:
        present = [
            f"{split}@{fidelity}"
            for fidelity in FIDELITIES
            for split in SPLITS
            if table.has(dataset, fidelity, split)
        ]
        lines.append(f"{dataset:<11} {', '.join(present) or '-'}")
    lines.append("oracle (best validation accuracy -> its 200-epoch test accuracy, %):")
    for dataset in DATASETS:
        for fidelity in FIDELITIES:
            if not (table.has(dataset, fidelity, "val") and table.has(dataset, "200", "test")):
                continue
            arch, val, test = table.oracle(dataset, fidelity)
            val_column = table.column(dataset, "val", fidelity)
            ties = int(np.sum(val_column == val))
            tie_note = f" ({ties} archs tie on val; the first in table order)" if ties > 1 else ""
            lines.append(
                f"{dataset:<11} by val@{fidelity:<3} val {val:6.2f}  test {test:6.2f}  "
                f"{arch}{tie_note}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmatic.benchmarks.nasbench201",
        description="Convert and inspect NAS-Bench-201 accuracy tables.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    conv = commands.add_parser("convert", help="official release -> table (.csv/.parquet)")
    conv.add_argument("--source", choices=("nb201", "nats"), required=True)
    conv.add_argument(
        "--input", required=True, help="NAS-Bench-201 .pth, or NATS-Bench tss folder/file"
    )
    conv.add_argument("--output", required=True, help="OUT.csv or OUT.parquet")
    info = commands.add_parser("info", help="print what a table holds and its oracle")
    info.add_argument("table")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            table = convert(args.source, args.input, args.output)
            print(f"wrote {len(table)} architectures, columns {table.columns}, to {args.output}")
        else:
            print(describe(NasBench201Table.load(args.table)))
    except (FileNotFoundError, ImportError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
