"""The CIFAR data layer: splits of the mini set, every damage it refuses, downloads offline."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import pickle
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from llmatic.benchmarks import _cifar_data
from llmatic.benchmarks._cifar_data import (
    INPUT_SHAPE,
    NUM_CLASSES,
    CifarSplit,
    DataError,
    load_cifar,
)

MINI_ROOT = Path("/work/shared/data/cifar10-mini")
MINI = MINI_ROOT / "cifar-10-batches-py"
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason="the cifar10-mini test data is absent")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must never reach the network: any socket connection fails loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _write(path: Path, content: object, *, protocol: int = 4) -> None:
    path.write_bytes(pickle.dumps(content, protocol=protocol))


def _batch(n: int, *, classes: int = 10, seed: int = 0, label_key: bytes = b"labels") -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: [i % classes for i in range(n)],
    }


def _fake_cifar10(root: Path, *, batches: tuple[int, ...] = (1,), n: int = 50) -> Path:
    """A small CIFAR-10 folder in the official layout: ``n`` images per training batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for number in batches:
        _write(folder / f"data_batch_{number}", _batch(n, seed=number))
    _write(folder / "test_batch", _batch(20, seed=99))
    _write(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return folder


@pytest.fixture(scope="module")
def mini() -> dict[str, CifarSplit]:
    if not MINI.is_dir():
        pytest.skip("the cifar10-mini test data is absent")
    return load_cifar(MINI_ROOT, val_size=1000)


def _hashes(split: CifarSplit) -> set[str]:
    return {hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in split.images}


# The mini set -------------------------------------------------------------------------------


def test_mini_set_shapes_and_dtypes(mini: dict[str, CifarSplit]) -> None:
    assert set(mini) == {"train", "val", "test"}
    assert [len(mini[k]) for k in ("train", "val", "test")] == [9000, 1000, 2000]
    for split in mini.values():
        assert split.images.dtype == torch.uint8
        assert split.images.shape[1:] == INPUT_SHAPE
        assert split.images.is_contiguous()
        assert split.labels.dtype == torch.int64
        assert split.labels.shape == (len(split.images),)
        assert split.labels.min() >= 0 and split.labels.max() < NUM_CLASSES["cifar10"]
    # Pixels are raw 0..255 bytes, not normalised, and not a constant.
    assert mini["train"].images.max() > 200 and mini["train"].images.min() < 50


def test_mini_set_validation_is_stratified(mini: dict[str, CifarSplit]) -> None:
    counts = torch.bincount(mini["val"].labels, minlength=10)
    assert all(99 <= c <= 101 for c in counts.tolist()), counts
    assert torch.bincount(mini["test"].labels).tolist() == [200] * 10


def test_mini_set_train_and_val_are_disjoint_and_cover_the_training_batch(
    mini: dict[str, CifarSplit],
) -> None:
    train, val = _hashes(mini["train"]), _hashes(mini["val"])
    assert not train & val
    assert len(train | val) == 10_000


def test_mini_set_pixels_are_the_files_pixels(mini: dict[str, CifarSplit]) -> None:
    with (MINI / "test_batch").open("rb") as file:
        raw = pickle.load(file, encoding="bytes")
    assert torch.equal(mini["test"].images[5].flatten(), torch.from_numpy(raw[b"data"][5]))
    assert mini["test"].labels[:50].tolist() == raw[b"labels"][:50]


@needs_mini
def test_mini_set_same_seed_same_split_and_one_warning(
    mini: dict[str, CifarSplit], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=_cifar_data.__name__):
        again = load_cifar(MINI_ROOT, val_size=1000, split_seed=0)
    for name in ("train", "val", "test"):
        assert torch.equal(again[name].images, mini[name].images)
        assert torch.equal(again[name].labels, mini[name].labels)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "10,000 of the official 50,000 training images" in message
    assert "\n" not in message


@needs_mini
def test_mini_set_other_seed_other_split(mini: dict[str, CifarSplit]) -> None:
    other = load_cifar(MINI_ROOT, val_size=1000, split_seed=1)
    assert _hashes(other["val"]) != _hashes(mini["val"])
    assert torch.bincount(other["val"].labels).tolist() == [100] * 10
    assert torch.equal(other["test"].images, mini["test"].images)


@needs_mini
def test_default_val_size_is_5000() -> None:
    splits = load_cifar(MINI_ROOT)
    assert (len(splits["train"]), len(splits["val"])) == (5000, 5000)


# Layouts ------------------------------------------------------------------------------------


def test_contiguous_batches_concatenate_in_order(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path, batches=(1, 2, 3), n=40)
    splits = load_cifar(tmp_path, val_size=30)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (90, 30, 20)
    assert torch.bincount(splits["val"].labels).tolist() == [3] * 10


def test_full_size_set_loads_without_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_cifar10(tmp_path, batches=(1, 2, 3, 4, 5), n=20)
    monkeypatch.setattr(_cifar_data, "OFFICIAL_TRAIN_SIZE", 100)
    monkeypatch.setattr(_cifar_data, "OFFICIAL_TEST_SIZE", 20)
    with caplog.at_level(logging.WARNING, logger=_cifar_data.__name__):
        splits = load_cifar(tmp_path, val_size=10)
    assert len(splits["train"]) == 90
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols_load(tmp_path: Path, protocol: int) -> None:
    folder = _fake_cifar10(tmp_path)
    batch = _batch(50, seed=7)
    _write(folder / "data_batch_1", batch, protocol=protocol)
    splits = load_cifar(tmp_path, val_size=10)
    rows = torch.cat([splits["train"].images, splits["val"].images]).flatten(1)
    assert {bytes(r.numpy()) for r in rows} == {bytes(r) for r in batch[b"data"]}


def test_pickle_with_old_numpy_module_names_loads(tmp_path: Path) -> None:
    """The official files were written by numpy 1 (``numpy.core.multiarray``)."""
    folder = _fake_cifar10(tmp_path)
    raw = pickle.dumps(_batch(50), protocol=2)
    assert b"numpy._core.multiarray\n" in raw
    (folder / "data_batch_1").write_bytes(
        raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    )
    assert len(load_cifar(tmp_path, val_size=10)["train"]) == 40


def test_cifar100_layout(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _write(folder / "train", _batch(200, classes=100, label_key=b"fine_labels"))
    _write(folder / "test", _batch(100, classes=100, seed=1, label_key=b"fine_labels"))
    names = [f"c{i}".encode() for i in range(100)]
    _write(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": names[:20]})
    splits = load_cifar(tmp_path, dataset="cifar100", val_size=100, split_seed=3)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (100, 100, 100)
    assert torch.bincount(splits["val"].labels, minlength=100).tolist() == [1] * 100
    assert splits["test"].labels.max() == 99
    assert NUM_CLASSES["cifar100"] == 100


def test_cifar100_labels_out_of_range(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    bad = _batch(200, classes=100, label_key=b"fine_labels")
    bad[b"fine_labels"][7] = 100
    _write(folder / "train", bad)
    _write(folder / "test", _batch(100, classes=100, label_key=b"fine_labels"))
    with pytest.raises(DataError, match=r"train: labels range over 0\.\.100, outside 0\.\.99"):
        load_cifar(tmp_path, dataset="cifar100", val_size=10)


# Arguments ----------------------------------------------------------------------------------


def test_unknown_dataset_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_cifar(tmp_path, dataset="mnist")


@pytest.mark.parametrize("val_size", [0, -5, 1.5, True])
def test_bad_val_size(tmp_path: Path, val_size: object) -> None:
    _fake_cifar10(tmp_path)
    with pytest.raises(ValueError, match="val_size must be a positive number"):
        load_cifar(tmp_path, val_size=val_size)  # type: ignore[arg-type]


def test_val_size_leaving_no_training_images(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path, n=50)
    with pytest.raises(ValueError, match="val_size=50 leaves no training images"):
        load_cifar(tmp_path, val_size=50)


# Damaged data -------------------------------------------------------------------------------


def test_missing_folder_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar(tmp_path)
    message = str(info.value)
    assert f"CIFAR-10 not found in {tmp_path}" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "data.download=true" in message
    assert "\n" not in message


def test_missing_cifar100_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR-100 not found.*cifar-100-python\.tar\.gz"):
        load_cifar(tmp_path, dataset="cifar100")


@needs_mini
def test_truncated_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(MINI, folder)
    batch = folder / "data_batch_1"
    batch.chmod(0o644)
    with batch.open("r+b") as file:
        file.truncate(batch.stat().st_size // 2)
    with pytest.raises(DataError, match=r"data_batch_1 is damaged \(truncated") as info:
        load_cifar(tmp_path, val_size=1000)
    assert "cifar-10-python.tar.gz" in str(info.value)


def test_file_cut_right_after_its_header(tmp_path: Path) -> None:
    folder = _fake_cifar10(tmp_path)
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:3])
    with pytest.raises(DataError, match="test_batch is damaged"):
        load_cifar(tmp_path, val_size=10)


def test_empty_file(tmp_path: Path) -> None:
    folder = _fake_cifar10(tmp_path)
    (folder / "data_batch_1").write_bytes(b"")
    with pytest.raises(DataError, match=r"data_batch_1 is damaged.*EOFError"):
        load_cifar(tmp_path, val_size=10)


def test_not_a_pickle(tmp_path: Path) -> None:
    folder = _fake_cifar10(tmp_path)
    (folder / "data_batch_1").write_text("<html>404 not found</html>\n")
    with pytest.raises(DataError, match="data_batch_1 is damaged"):
        load_cifar(tmp_path, val_size=10)


def test_bytes_after_the_pickle(tmp_path: Path) -> None:
    folder = _fake_cifar10(tmp_path)
    path = folder / "data_batch_1"
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DataError, match="data_batch_1 has bytes after its pickle"):
        load_cifar(tmp_path, val_size=10)


def _with(**changes: object) -> dict:
    batch = _batch(50)
    for key, value in changes.items():
        if value is None:
            del batch[key.encode()]
        else:
            batch[key.encode()] = value
    return batch


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ([1, 2, 3], "holds a list, not a CIFAR dict"),
        (_with(data=None), "has no key data"),
        (_with(labels=None), "has no key labels"),
        ({b"images": np.zeros((50, 3072), np.uint8), b"labels": [0] * 50}, "has no key data"),
        (_with(data=np.zeros((50, 3072), np.float32)), "data is float32, not a uint8"),
        (_with(data=[[0] * 3072] * 50), "data is list, not a uint8"),
        (_with(data=np.zeros((50, 1024), np.uint8)), r"shape \(50, 1024\), not \(N, 3072\)"),
        (_with(data=np.zeros((50, 3, 32, 32), np.uint8)), r"shape \(50, 3, 32, 32\)"),
        (_with(data=np.zeros((0, 3072), np.uint8), labels=[]), "with N > 0"),
        (_with(labels=[0] * 49), "49 labels for 50 images"),
        (_with(labels=[10] + [0] * 49), r"labels range over 0\.\.10, outside 0\.\.9"),
        (_with(labels=[-1] + [0] * 49), r"labels range over -1\.\.0"),
        (_with(labels=[0.5] * 50), "labels are not a list of integers"),
        (_with(labels=["cat"] * 50), "labels are not a list of integers"),
        (_with(labels=b"\x00" * 50), "labels are a bytes, not a list"),
    ],
    ids=[
        "not-a-dict",
        "no-data",
        "no-labels",
        "other-keys",
        "float-data",
        "list-data",
        "1024-columns",
        "4d-data",
        "no-rows",
        "too-few-labels",
        "label-10",
        "label-minus-1",
        "float-labels",
        "string-labels",
        "bytes-labels",
    ],
)
def test_wrong_content(tmp_path: Path, content: object, match: str) -> None:
    folder = _fake_cifar10(tmp_path)
    _write(folder / "data_batch_1", content)
    with pytest.raises(DataError, match=match) as info:
        load_cifar(tmp_path, val_size=10)
    assert "data_batch_1" in str(info.value)
    assert "cifar-10-python.tar.gz" in str(info.value)


def test_wrong_meta(tmp_path: Path) -> None:
    folder = _fake_cifar10(tmp_path)
    _write(folder / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(DataError, match="batches.meta does not list the 10 CIFAR-10 classes"):
        load_cifar(tmp_path, val_size=10)


class _RunsCode:
    """Pickles to a call of ``function(*args)``: what a malicious data file would hold."""

    def __init__(self, function: object, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple:
        return self.function, self.args


@pytest.mark.parametrize("where", ["data_batch_1", "test_batch", "batches.meta"])
def test_pickle_that_would_run_a_command_is_refused(tmp_path: Path, where: str) -> None:
    folder = _fake_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = _batch(50)
    evil[b"labels"] = _RunsCode(os.system, f"touch {marker}")
    _write(folder / where, evil)
    with pytest.raises(DataError, match=rf"{where} refused: the pickle asks for \S*system"):
        load_cifar(tmp_path, val_size=10)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        _RunsCode(eval, "__import__('os')"),
        _RunsCode(getattr, _RunsCode(__import__, "os"), "system"),
        _RunsCode(np.load, "x.npy", None, True),
        _RunsCode(np.frombuffer, b"\x00" * 3072, np.uint8),
        _RunsCode(shutil.rmtree, "/nonexistent"),
    ],
    ids=["eval", "getattr", "np.load", "np.frombuffer", "rmtree"],
)
def test_other_globals_are_refused(tmp_path: Path, payload: _RunsCode) -> None:
    folder = _fake_cifar10(tmp_path)
    _write(folder / "data_batch_1", {b"data": payload, b"labels": [0] * 50})
    with pytest.raises(DataError, match="refused: the pickle asks for"):
        load_cifar(tmp_path, val_size=10)


def test_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    import codecs

    folder = _fake_cifar10(tmp_path)
    _write(folder / "data_batch_1", {b"data": _RunsCode(codecs.encode, "x", "rot13")})
    with pytest.raises(DataError, match="data_batch_1 is damaged.*rot13"):
        load_cifar(tmp_path, val_size=10)


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ((2,), "data_batch_1 is missing but data_batch_2 is there"),
        ((1, 3), "data_batch_2 is missing but data_batch_3 is there"),
        ((1, 2, 4, 5), "data_batch_3 is missing but data_batch_5 is there"),
        ((1, 6), "data_batch_6 is not part of CIFAR-10"),
        ((), "no training batches in"),
    ],
)
def test_batch_numbering(tmp_path: Path, batches: tuple[int, ...], match: str) -> None:
    _fake_cifar10(tmp_path, batches=batches)
    with pytest.raises(DataError, match=match):
        load_cifar(tmp_path, val_size=10)


def test_missing_test_batch(tmp_path: Path) -> None:
    folder = _fake_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match=r"test_batch is missing.*unpack the official archive"):
        load_cifar(tmp_path, val_size=10)


# Download (offline: file:// URLs to archives built here) -------------------------------------


def _archive(path: Path, files: dict[str, bytes]) -> str:
    """Writes a tar.gz of ``files`` (name to content); returns its md5."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fake_archive_files() -> dict[str, bytes]:
    files = {
        f"cifar-10-batches-py/data_batch_{n}": pickle.dumps(_batch(30, seed=n)) for n in (1, 2)
    }
    files["cifar-10-batches-py/test_batch"] = pickle.dumps(_batch(20))
    files["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return files


def _serve(monkeypatch: pytest.MonkeyPatch, archive: Path, md5: str) -> None:
    release = dataclasses.replace(_cifar_data.RELEASES["cifar10"], url=archive.as_uri(), md5=md5)
    monkeypatch.setitem(_cifar_data.RELEASES, "cifar10", release)


def test_download_good_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "served.tar.gz"
    _serve(monkeypatch, archive, _archive(archive, _fake_archive_files()))
    root = tmp_path / "data"
    splits = load_cifar(root, val_size=10, download=True)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (50, 10, 20)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]
    assert (root / "cifar-10-batches-py" / "readme.html").is_file()
    # Present now: a second call reads it without downloading (the archive is gone).
    archive.unlink()
    assert len(load_cifar(root, val_size=10, download=True)["train"]) == 50


def test_download_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "served.tar.gz"
    _archive(archive, _fake_archive_files())
    _serve(monkeypatch, archive, "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"checksum mismatch.*expected 0{32}.*by hand"):
        load_cifar(root, val_size=10, download=True)
    assert list(root.iterdir()) == []


def test_download_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, tmp_path / "absent.tar.gz", "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DataError, match=r"could not download CIFAR-10 .*download .* by hand"):
        load_cifar(root, val_size=10, download=True)
    assert list(root.iterdir()) == []


def test_download_of_something_that_is_not_an_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served.tar.gz"
    served.write_bytes(b"<html>captive portal</html>")
    _serve(monkeypatch, served, hashlib.md5(served.read_bytes()).hexdigest())
    root = tmp_path / "data"
    with pytest.raises(DataError, match="not a readable tar.gz archive"):
        load_cifar(root, val_size=10, download=True)
    assert list(root.iterdir()) == []


def test_download_archive_without_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "served.tar.gz"
    _serve(monkeypatch, archive, _archive(archive, {"other/readme": b"hi"}))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="holds no cifar-10-batches-py/ folder"):
        load_cifar(root, val_size=10, download=True)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    ["../evil", "cifar-10-batches-py/../../evil", "/tmp/llmatic-test-evil-abs"],
)
def test_download_rejects_path_traversal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    archive = tmp_path / "served.tar.gz"
    files = _fake_archive_files()
    files[name] = b"owned"
    _serve(monkeypatch, archive, _archive(archive, files))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="unsafe member"):
        load_cifar(root, val_size=10, download=True)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/llmatic-test-evil-abs").exists()


def test_download_rejects_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "served.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    _serve(monkeypatch, archive, hashlib.md5(archive.read_bytes()).hexdigest())
    root = tmp_path / "data"
    with pytest.raises(DataError, match="not a plain file or folder"):
        load_cifar(root, val_size=10, download=True)
    assert list(root.iterdir()) == []
