"""NAS-Bench-201 lookup benchmark: table format, protocol, measures and the converter."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmatic.benchmarks import nasbench201 as nb
from llmatic.benchmarks.nasbench201 import (
    NasBench201Benchmark,
    NasBench201Table,
    compose_measures,
    network_parts,
    reference_measures,
)
from llmatic.errors import CandidateError
from llmatic.nb201.cell import EDGES, format_arch
from llmatic.nb201.ops import OP_NAMES

SHARED_CSV = Path(__file__).parents[2] / "shared/data/nasbench201/nb201.csv"

ALL_NONE = format_arch({})
ALL_CONV3 = format_arch(dict.fromkeys(EDGES, "nor_conv_3x3"))
BEST_C10 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
    "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
MIXED = (
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
    "|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
)
# No conv into node 3: the cell's depth (2) runs 0->1->2 and on through the pool 2->3.
SKIP_OUT = "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"


def random_archs(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = rng.sample(list(itertools.product(OP_NAMES, repeat=6)), count)
    return [format_arch(dict(zip(EDGES, combo, strict=True))) for combo in combos]


def synthetic_frame(count: int = 50, seed: int = 0) -> pd.DataFrame:
    """A full-width table of ``count`` archs with random accuracies in [10, 95]."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"index": np.arange(count), "arch": random_archs(count, seed)})
    for fidelity in nb.FIDELITIES:
        for dataset in nb.DATASETS:
            for split in nb.SPLITS:
                name = nb.metric_column(dataset, split, fidelity)
                frame[name] = rng.uniform(10.0, 95.0, count).round(4)
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return synthetic_frame()


@pytest.fixture
def table(frame) -> NasBench201Table:
    return NasBench201Table.from_frame(frame, source="synthetic")


@pytest.fixture(scope="module")
def shared_table() -> NasBench201Table:
    if not SHARED_CSV.is_file():
        pytest.skip(f"shared NB201 table absent at {SHARED_CSV}")
    return NasBench201Table.load(SHARED_CSV)


@pytest.fixture
def one_thread():
    # Real forward passes on 2 shared cores are much faster without thread contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ shared table


def test_shared_csv_holds_the_whole_space(shared_table):
    assert len(shared_table) == 15_625
    assert len(set(shared_table.archs)) == 15_625
    assert shared_table.columns == [
        nb.metric_column(d, s, f) for f in nb.FIDELITIES for d in nb.DATASETS for s in nb.SPLITS
    ]
    assert shared_table.indices is not None and sorted(shared_table.indices) == list(range(15_625))


@pytest.mark.parametrize(
    ("dataset", "test"), [("cifar10", 94.37), ("cifar100", 73.51), ("imagenet16", 46.20)]
)
def test_shared_csv_oracle_matches_the_spec(shared_table, dataset, test):
    arch, val, found = shared_table.oracle(dataset, "200")
    assert round(found, 2) == test
    assert val == shared_table.column(dataset, "val").max()
    assert shared_table.value(arch, dataset, "test") == found


def test_shared_csv_first_row_values(shared_table):
    bench = NasBench201Benchmark(table=shared_table, dataset="cifar10")
    result = bench.evaluate(MIXED)  # row 0 of the file
    assert (result.objective, result.test_objective) == (81.9827, 85.8633)


# ------------------------------------------------------------------------------ table format


def test_csv_round_trip_and_lookups(tmp_path, frame, table):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    loaded = NasBench201Table.load(path)
    assert loaded.archs == frame["arch"].tolist()
    assert len(loaded) == 50 and frame["arch"][7] in loaded and ALL_CONV3 not in frame["arch"]
    assert (
        loaded.value(frame["arch"][7], "cifar100", "test", "12") == frame["cifar100_test_12ep"][7]
    )
    assert np.array_equal(loaded.column("imagenet16", "val"), frame["imagenet16_val"].to_numpy())


def test_parquet_round_trip(tmp_path, table):
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    table.save(path)
    loaded = NasBench201Table.load(path)
    assert loaded.archs == table.archs and loaded.columns == table.columns
    for name in table.columns:
        assert np.array_equal(loaded._columns[name], table._columns[name])


def test_partial_table_reports_what_it_has(frame):
    part = NasBench201Table.from_frame(frame[["arch", "cifar10_val", "cifar10_test"]].head(5))
    assert len(part) == 5 and part.indices is None
    assert part.has("cifar10", "200", "val") and part.has("cifar10", 200, "test")
    assert not part.has("cifar10", "12") and not part.has("cifar100")
    with pytest.raises(KeyError, match="cifar100_val"):
        part.value(part.archs[0], "cifar100", "val")


def test_non_canonical_spelling_finds_the_row(table):
    arch = table.archs[3]
    groups = arch.split("+")
    swapped = groups[2].strip("|").split("|")
    respelled = "+".join([groups[0], groups[1], "|" + "|".join(reversed(swapped)) + "|"])
    assert respelled != arch and table.row(respelled) == 3 and respelled in table
    assert table.row("not an arch") is None and "not an arch" not in table


def test_oracle_is_best_validation_not_best_test(table):
    val = table.column("cifar10", "val", "12")
    best = int(np.argmax(val))
    assert table.oracle("cifar10", "12") == (
        table.archs[best],
        val[best],
        table.column("cifar10", "test")[best],  # the 200-epoch test, whatever the fidelity
    )


def test_missing_file_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        NasBench201Table.load(tmp_path / "nb201.csv")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nb201.csv") in message
    for hint in ("NAS-Bench-201-v1_1", "NATS-tss", "convert", "benchmark.table="):
        assert hint in message


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns="arch"), "no 'arch' column"),
        (lambda f: f.assign(arch=f["arch"].where(f.index != 1, "|conv~0|+x")), "row 1: .*conv~0"),
        (
            lambda f: f.rename(columns={"cifar10_val": "cifar10_valid"}),
            "'cifar10_valid' is not a metric",
        ),
        (lambda f: f.assign(cifar100_val=f["cifar100_val"].where(f.index != 4)), "row 4 .*missing"),
        (lambda f: f.assign(cifar10_test=f["cifar10_test"] * 2), "outside \\[0, 100\\]"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(tmp_path, frame, edit, message):
    path = tmp_path / "bad.csv"
    edit(frame).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        NasBench201Table.load(path)


def test_duplicate_archs_are_refused_even_when_spelled_differently(tmp_path, frame):
    arch = frame["arch"][2]
    head, mid, tail = arch.split("+")
    respelled = "+".join([head, "|" + "|".join(reversed(mid.strip("|").split("|"))) + "|", tail])
    frame.loc[9, "arch"] = respelled
    path = tmp_path / "dup.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match="duplicate arch in rows 2 and 9"):
        NasBench201Table.load(path)


def test_unknown_suffix_is_refused(tmp_path, frame):
    path = tmp_path / "t.tsv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        NasBench201Table.load(path)


# --------------------------------------------------------------------------------- benchmark


@pytest.mark.parametrize(("dataset", "fidelity"), list(itertools.product(nb.DATASETS, ["200", 12])))
def test_objective_is_validation_at_fidelity_and_test_is_200_epochs(table, dataset, fidelity):
    bench = NasBench201Benchmark(table=table, dataset=dataset, fidelity=fidelity)
    suffix = "_12ep" if str(fidelity) == "12" else ""
    val = table.to_frame()[f"{dataset}_val{suffix}"]
    test = table.to_frame()[f"{dataset}_test"]
    for row, arch in enumerate(table.archs[:10]):
        result = bench.evaluate(arch)
        assert result.objective == val[row] and result.test_objective == test[row]
    assert bench.name == "nasbench201"


def test_arch_outside_the_table_is_out_of_space(table):
    bench = NasBench201Benchmark(table=table, dataset="cifar10")
    outside = next(a for a in random_archs(200, seed=1) if a not in table)
    for arch in (outside, "|nor_conv_3x3~0|+garbage"):
        with pytest.raises(CandidateError) as err:
            bench.evaluate(arch)
        assert err.value.kind == "out_of_space"


def test_benchmark_refuses_a_table_without_its_columns(frame):
    part = NasBench201Table.from_frame(
        frame[["arch", "cifar10_val", "cifar10_test", "cifar100_val_12ep"]]
    )
    NasBench201Benchmark(table=part, dataset="cifar10")
    with pytest.raises(ValueError, match="cifar10_val_12ep"):
        NasBench201Benchmark(table=part, dataset="cifar10", fidelity="12")
    with pytest.raises(ValueError, match="cifar100_test"):  # 12-epoch val alone is not enough
        NasBench201Benchmark(table=part, dataset="cifar100", fidelity="12")
    with pytest.raises(ValueError, match="fidelity"):
        NasBench201Benchmark(table=part, dataset="cifar10", fidelity="90")


def test_benchmark_loads_a_table_from_a_path(tmp_path, frame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    bench = NasBench201Benchmark(table=path, dataset="cifar100", fidelity="12")
    assert bench.objective(frame["arch"][0]) == frame["cifar100_val_12ep"][0]


# ---------------------------------------------------------------------------------- protocol


class PoisonedColumn(np.ndarray):
    """A column whose every element read fails: proves a code path never reads it."""

    def __getitem__(self, key):
        raise AssertionError("a test column was read")


class PoisonedTestTable(NasBench201Table):
    """The table a search would see if test accuracies must stay unread."""

    def column(self, dataset, split, fidelity="200"):
        column = super().column(dataset, split, fidelity)
        return column.view(PoisonedColumn) if split == "test" else column


@pytest.mark.parametrize("fidelity", nb.FIDELITIES)
def test_objective_never_reads_a_test_column(frame, fidelity):
    poisoned = PoisonedTestTable.from_frame(frame)
    bench = NasBench201Benchmark(table=poisoned, dataset="cifar100", fidelity=fidelity)
    honest = NasBench201Benchmark(
        table=NasBench201Table.from_frame(frame), dataset="cifar100", fidelity=fidelity
    )
    for arch in poisoned.archs:
        assert bench.objective(arch) == honest.objective(arch)
    with pytest.raises(AssertionError, match="test column was read"):
        bench.test_accuracy(poisoned.archs[0])  # the poison works: test_accuracy does read


def test_objective_is_independent_of_test_columns(frame):
    permuted = frame.copy()
    rng = np.random.default_rng(1)
    test_columns = [c for c in frame.columns if "_test" in c]
    for name in test_columns:
        permuted[name] = rng.permutation(frame[name].to_numpy())
    for fidelity in nb.FIDELITIES:
        for dataset in nb.DATASETS:
            a = NasBench201Benchmark(
                table=NasBench201Table.from_frame(frame), dataset=dataset, fidelity=fidelity
            )
            b = NasBench201Benchmark(
                table=NasBench201Table.from_frame(permuted), dataset=dataset, fidelity=fidelity
            )
            archs = frame["arch"]
            assert [a.objective(x) for x in archs] == [b.objective(x) for x in archs]
            assert [b.test_accuracy(x) for x in archs] == permuted[f"{dataset}_test"].tolist()
            assert [a.test_accuracy(x) for x in archs] != [b.test_accuracy(x) for x in archs]


# ---------------------------------------------------------------------------------- measures


@pytest.mark.parametrize(
    ("arch", "dataset"),
    [
        (ALL_NONE, "cifar10"),
        (ALL_CONV3, "cifar10"),
        (BEST_C10, "cifar10"),
        (MIXED, "cifar10"),
        (SKIP_OUT, "cifar10"),
        (BEST_C10, "cifar100"),
        (SKIP_OUT, "imagenet16"),
        (MIXED, "imagenet16"),
    ],
)
def test_measures_equal_measure_network_on_the_real_network(one_thread, arch, dataset):
    composed = compose_measures(arch, network_parts(dataset))
    assert composed == reference_measures(arch, dataset=dataset)
    assert set(composed) >= {"width_to_depth", "log10_flops", "flops", "depth", "width", "params"}


def test_measures_of_random_archs_equal_measure_network(one_thread):
    parts = network_parts("cifar10")
    for arch in random_archs(6, seed=7):
        assert compose_measures(arch, parts) == reference_measures(arch, dataset="cifar10")


def test_measures_on_a_smaller_skeleton_equal_measure_network(one_thread):
    parts = network_parts("cifar10", 8, 2)
    for arch in (BEST_C10, SKIP_OUT):
        expected = reference_measures(arch, dataset="cifar10", channels=8, cells_per_stage=2)
        assert compose_measures(arch, parts) == expected


def test_measures_are_cached_per_arch(monkeypatch, table):
    calls = []
    real = nb.compose_measures
    monkeypatch.setattr(
        nb, "compose_measures", lambda arch, parts: calls.append(arch) or real(arch, parts)
    )
    bench = NasBench201Benchmark(table=table, dataset="cifar10")
    arch = table.archs[0]
    first = bench.evaluate(arch).measures
    first["flops"] = -1.0  # a caller editing its copy must not corrupt the cache
    assert bench.evaluate(arch).measures == bench.measures(arch) != first
    assert calls == [arch]


def test_measures_cost_far_less_than_the_budget(table):
    bench = NasBench201Benchmark(table=table, dataset="imagenet16")
    bench.measures(table.archs[0])  # pays the one-off measurement of the parts
    start = time.perf_counter()
    for arch in table.archs[1:]:
        bench.evaluate(arch)
    per_arch = (time.perf_counter() - start) / (len(table) - 1)
    assert per_arch < 0.02  # seconds; the search's budget for a new arch


# --------------------------------------------------------------------------------- converter

ARCHS = [BEST_C10, MIXED, SKIP_OUT]
SEEDS = {"200": (777, 888), "12": (111,)}
# (official dataset, eval sets) of a full release.
OFFICIAL = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}


def fake_accuracy(index: int, dataset: str, eval_set: str, hp: str, seed: int) -> float:
    """Distinct per (arch, dataset, set, hp) so a wrong mapping shows; seeds differ too."""
    base = {"cifar10-valid": 80, "cifar10": 85, "cifar100": 60, "ImageNet16-120": 30}[dataset]
    offset = {"x-valid": 0.25, "x-test": 0.5, "ori-test": 0.75}[eval_set]
    return base + offset + index + (0.0 if hp == "200" else -20.0) + (seed % 7) * 0.125


def expected_accuracy(index: int, dataset: str, split: str, hp: str) -> float:
    official = nb.OFFICIAL_SPLITS[dataset, split]
    return float(np.mean([fake_accuracy(index, *official, hp, s) for s in SEEDS[hp]]))


def arch_results(api_module, index: int, arch: str, hp: str, datasets) -> object:
    """One ``ArchResults`` built with the official API's own classes."""
    epochs = int(hp)
    results = api_module.ArchResults(index, arch)
    for dataset in datasets:
        for seed in SEEDS[hp]:
            trial = api_module.ResultsCount(
                dataset,
                None,
                dict.fromkeys(range(epochs), 50.0),
                dict.fromkeys(range(epochs), 1.0),
                0.1,
                1.0,
                {"arch_str": arch, "channel": 16, "num_cells": 5, "class_num": 10},
                seed,
                epochs,
                [0.01],
            )
            accs, losses, times = {}, {}, {}
            for eval_set in OFFICIAL[dataset]:
                for epoch in range(epochs):
                    key = f"{eval_set}@{epoch}"
                    last = epoch == epochs - 1
                    accs[key] = fake_accuracy(index, dataset, eval_set, hp, seed) if last else 5.0
                    losses[key], times[key] = 1.0, 0.01
            trial.update_eval(accs, losses, times)
            results.update(dataset, seed, trial)
    return results


def check_converted(table: NasBench201Table, columns: list[str]) -> None:
    assert table.archs == ARCHS and list(table.indices) == [0, 1, 2]
    assert table.columns == columns
    for name in columns:
        dataset, split = name.split("_")[:2]
        hp = "12" if name.endswith("_12ep") else "200"
        for index, arch in enumerate(ARCHS):
            assert table.value(arch, dataset, split, hp) == pytest.approx(
                expected_accuracy(index, dataset, split, hp), abs=1e-12
            )


def test_convert_a_nas_bench_201_file_read_by_the_official_api(tmp_path, capsys):
    api = pytest.importorskip("nas_201_api")
    # The v1.0 layout: 'less' (12 epochs) holds cifar10-valid only.
    release = {
        "meta_archs": ARCHS,
        "arch2infos": {
            i: {
                "less": arch_results(api, i, a, "12", ["cifar10-valid"]).state_dict(),
                "full": arch_results(api, i, a, "200", list(OFFICIAL)).state_dict(),
            }
            for i, a in enumerate(ARCHS)
        },
        "evaluated_indexes": [0, 1, 2],
        "total_archs": 3,
    }
    source = tmp_path / "NAS-Bench-201-v1_0-e61699.pth"
    torch.save(release, source)
    out = tmp_path / "out" / "nb201.csv"
    assert (
        nb.main(["convert", "--source", "nb201", "--input", str(source), "--output", str(out)]) == 0
    )
    assert "wrote 3 architectures" in capsys.readouterr().out
    columns = [nb.metric_column(d, s) for d in nb.DATASETS for s in nb.SPLITS] + [
        "cifar10_val_12ep"
    ]
    check_converted(NasBench201Table.load(out), columns)


def test_convert_a_nats_bench_topology_folder_read_by_the_official_api(tmp_path, capsys):
    nats = pytest.importorskip("nats_bench")
    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    nats.pickle_save({"meta_archs": ARCHS}, str(folder / "meta.pickle"))
    for i, arch in enumerate(ARCHS):
        hps = {
            hp: arch_results(nats, i, arch, hp, list(OFFICIAL)).state_dict() for hp in ("12", "200")
        }
        nats.pickle_save(hps, str(folder / f"{i:06d}.pickle"))
    out = tmp_path / "nb201.parquet" if _has_pyarrow() else tmp_path / "nb201.csv"
    assert (
        nb.main(["convert", "--source", "nats", "--input", str(folder), "--output", str(out)]) == 0
    )
    capsys.readouterr()
    columns = [
        nb.metric_column(d, s, f) for f in nb.FIDELITIES for d in nb.DATASETS for s in nb.SPLITS
    ]
    check_converted(NasBench201Table.load(out), columns)


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_convert_errors_are_one_line(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    assert (
        nb.main(["convert", "--source", "nb201", "--input", str(missing), "--output", "o.csv"]) == 1
    )
    assert capsys.readouterr().err.strip() == f"error: no NAS-Bench-201 release at {missing}"
    missing.write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, "nas_201_api", None)  # not installed
    assert (
        nb.main(["convert", "--source", "nb201", "--input", str(missing), "--output", "o.csv"]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install nas-bench-201" in err


def test_info_prints_size_metrics_and_oracle(tmp_path, frame, capsys):
    path = tmp_path / "t.csv"
    frame[["arch", "cifar10_val", "cifar10_test", "cifar10_val_12ep"]].to_csv(path, index=False)
    assert nb.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    table = NasBench201Table.load(path)
    arch, val, test = table.oracle("cifar10", "12")
    assert "architectures: 50" in out and "val@200, test@200, val@12" in out
    assert f"val {val:6.2f}  test {test:6.2f}  {arch}" in out
    assert "cifar100    -" in out
