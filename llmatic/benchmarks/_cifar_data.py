"""CIFAR-10 and CIFAR-100 from the official python version, split into train/val/test.

What it reads: the pickles of the official python release, CIFAR-10 in
``ROOT/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``; keys ``b"data"`` uint8 N x 3072 and ``b"labels"``) and CIFAR-100 in
``ROOT/cifar-100-python/`` (``train``, ``test``, ``meta``; keys ``b"data"`` and
``b"fine_labels"``). A data file is input from disk, so it is read with a restricted
unpickler that builds numpy arrays and plain containers and refuses every other global (no
code in a file runs). A subset of CIFAR-10 is accepted when its training batches are a
contiguous run ``data_batch_1`` .. ``data_batch_k`` (the test data's mini set has
``data_batch_1`` only); one warning line then says how many of the official 50,000
training images are used.

The split: validation is a seeded, class-stratified part (``val_size`` images) of the
official training set, training keeps the rest (both in the files' order); the official
test set stays the test set, never mixed in. The same ``split_seed`` gives the same split.

Error policy: anything wrong with the data (a missing folder or file, a truncated file, a
file that is not a CIFAR pickle, a gap in the batch numbering, a failed download) raises
:class:`DataError` with one line that names the file and says what to do. The data set is
never silently made smaller.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

NUM_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100}
INPUT_SHAPE = (3, 32, 32)
#: Images in the official training and test sets (both data sets).
OFFICIAL_TRAIN_SIZE = 50_000
OFFICIAL_TEST_SIZE = 10_000
_PIXELS = 3 * 32 * 32
#: Training batches of the official CIFAR-10 release.
_CIFAR10_BATCHES = 5
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Release:
    """Where one data set lives online and on disk."""

    title: str  # "CIFAR-10"
    folder: str  # the folder the archive unpacks to
    url: str
    md5: str
    label_key: bytes
    meta_file: str
    meta_key: bytes


#: The official releases; tests point ``url`` and ``md5`` elsewhere.
RELEASES: dict[str, _Release] = {
    "cifar10": _Release(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        label_key=b"labels",
        meta_file="batches.meta",
        meta_key=b"label_names",
    ),
    "cifar100": _Release(
        title="CIFAR-100",
        folder="cifar-100-python",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        label_key=b"fine_labels",
        meta_file="meta",
        meta_key=b"fine_label_names",
    ),
}


class DataError(ValueError):
    """The data set is missing or unusable; the one-line message says what to do."""


@dataclass(frozen=True)
class CifarSplit:
    """One split of a CIFAR data set, on the CPU.

    Attributes:
        images: ``(N, 3, 32, 32)`` uint8 tensor, contiguous, channels RGB, pixels 0..255
            (not normalised).
        labels: ``(N,)`` int64 tensor of class indices in ``0 .. num_classes - 1``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_cifar(
    root: str | Path,
    *,
    dataset: str = "cifar10",
    val_size: int = 5000,
    split_seed: int = 0,
    download: bool = False,
) -> dict[str, CifarSplit]:
    """Loads CIFAR-10 or CIFAR-100 and splits it into train, validation and test.

    Args:
        root: The folder that holds ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        val_size: Images held out of the official training set for validation,
            stratified by class; training keeps the rest.
        split_seed: Seed of the validation draw; the same seed gives the same split.
        download: Download and unpack the official archive into ``root`` when the data
            set's folder is missing there (needs the network).

    Returns:
        ``{"train", "val", "test"}`` to :class:`CifarSplit`; ``"test"`` is the official
        test set.

    Raises:
        ValueError: ``dataset`` is unknown or ``val_size`` leaves no training images.
        DataError: The data is missing, damaged or not in the official format, or the
            download failed.
    """
    if dataset not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {dataset!r}: use one of {sorted(NUM_CLASSES)}")
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
        raise ValueError(f"val_size must be a positive number of images, got {val_size!r}")
    release = RELEASES[dataset]
    num_classes = NUM_CLASSES[dataset]
    root = Path(root).expanduser()
    folder = root / release.folder
    if not folder.is_dir():
        if not download:
            raise DataError(
                f"{release.title} not found in {root}: put the official python version there "
                f"({release.folder}/ from {release.url}), or set data.download=true on a "
                "machine that is online"
            )
        download_release(root, release=release)

    if dataset == "cifar10":
        train_files = _cifar10_train_files(folder)
        test_files = [folder / "test_batch"]
    else:
        train_files, test_files = [folder / "train"], [folder / "test"]
    for path in [*train_files, *test_files]:
        if not path.is_file():
            raise DataError(
                f"{path} is missing: {release.folder}/ is incomplete; unpack the official "
                f"archive ({release.url}) into {root} again"
            )
    meta = folder / release.meta_file
    if meta.is_file():
        _check_meta(meta, release=release, num_classes=num_classes)

    train_x, train_y = _read_files(train_files, release=release, num_classes=num_classes)
    test_x, test_y = _read_files(test_files, release=release, num_classes=num_classes)
    if val_size >= len(train_y):
        raise ValueError(
            f"val_size={val_size} leaves no training images: {folder} has "
            f"{len(train_y):,} training images; use a smaller val_size"
        )
    if len(train_y) < OFFICIAL_TRAIN_SIZE or len(test_y) < OFFICIAL_TEST_SIZE:
        which = ""
        if dataset == "cifar10":
            k = len(train_files)
            which = " (data_batch_1 only)" if k == 1 else f" (data_batch_1 .. data_batch_{k})"
        log.warning(
            "%s subset in %s: using %s of the official %s training images%s and %s of "
            "the official %s test images; results are not comparable with published ones",
            release.title,
            folder,
            f"{len(train_y):,}",
            f"{OFFICIAL_TRAIN_SIZE:,}",
            which,
            f"{len(test_y):,}",
            f"{OFFICIAL_TEST_SIZE:,}",
        )

    val_index = stratified_indices(train_y, size=val_size, seed=split_seed)
    in_val = np.zeros(len(train_y), dtype=bool)
    in_val[val_index] = True
    return {
        "train": _split(train_x[~in_val], train_y[~in_val]),
        "val": _split(train_x[in_val], train_y[in_val]),
        "test": _split(test_x, test_y),
    }


def stratified_indices(labels: np.ndarray, *, size: int, seed: int) -> np.ndarray:
    """Draws ``size`` indices with each class in proportion to its count.

    Each class gets ``size * count / total`` rounded down; the images left over go to the
    classes with the largest remainders (ties to the lower class index). Within a class the
    draw is uniform, seeded by ``seed``.

    Args:
        labels: ``(N,)`` integer class labels.
        size: Indices to draw, at most ``N``.
        seed: Seed of ``np.random.default_rng``.

    Returns:
        The drawn indices into ``labels``, sorted.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = size * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    leftover = size - int(quota.sum())
    by_remainder = np.lexsort((np.arange(len(classes)), -(exact - quota)))
    quota[by_remainder[:leftover]] += 1
    rng = np.random.default_rng(seed)
    chosen = [
        rng.permutation(np.flatnonzero(labels == cls))[:take]
        for cls, take in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def _split(images: np.ndarray, labels: np.ndarray) -> CifarSplit:
    """Wraps ``(N, 3072)`` uint8 rows and labels as tensors (copies, so writable)."""
    x = torch.from_numpy(np.array(images.reshape(-1, *INPUT_SHAPE), dtype=np.uint8, order="C"))
    return CifarSplit(images=x, labels=torch.from_numpy(np.array(labels, dtype=np.int64)))


def _cifar10_train_files(folder: Path) -> list[Path]:
    """The training batches ``data_batch_1..k`` in ``folder``; a gap is an error."""
    numbers = sorted(
        int(match.group(1))
        for path in folder.iterdir()
        if (match := re.fullmatch(r"data_batch_([1-9][0-9]*)", path.name))
    )
    if not numbers:
        raise DataError(
            f"no training batches in {folder} (data_batch_1 .. data_batch_5): unpack the "
            f"official archive ({RELEASES['cifar10'].url}) there again"
        )
    if numbers[-1] > _CIFAR10_BATCHES:
        raise DataError(
            f"{folder / f'data_batch_{numbers[-1]}'} is not part of CIFAR-10 (data_batch_1 .. "
            f"data_batch_{_CIFAR10_BATCHES}): remove it"
        )
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing:
        raise DataError(
            f"{folder / f'data_batch_{missing[0]}'} is missing but "
            f"data_batch_{numbers[-1]} is there: the training batches must be data_batch_1 .. "
            "data_batch_k without gaps; restore the missing batch from the official archive"
        )
    return [folder / f"data_batch_{n}" for n in numbers]


def _read_files(
    paths: list[Path], *, release: _Release, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reads and checks data files; returns ``(N, 3072)`` uint8 rows and ``(N,)`` labels."""
    parts = [_read_batch(path, release=release, num_classes=num_classes) for path in paths]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _read_batch(
    path: Path, *, release: _Release, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one data file and checks that it is internally consistent."""
    content = _unpickle(path, release=release)
    redo = f"replace it with the file from the official archive ({release.url})"
    if not isinstance(content, dict):
        raise DataError(f"{path} holds a {type(content).__name__}, not a CIFAR dict: {redo}")
    missing = [key.decode() for key in (b"data", release.label_key) if key not in content]
    if missing:
        raise DataError(
            f"{path} has no key {', '.join(missing)}; not a {release.title} file: {redo}"
        )
    data, raw_labels = content[b"data"], content[release.label_key]
    if type(data) is not np.ndarray or data.dtype != np.uint8:
        what = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{path}: data is {what}, not a uint8 numpy array: {redo}")
    if data.ndim != 2 or data.shape[1] != _PIXELS or data.shape[0] == 0:
        raise DataError(
            f"{path}: data has shape {data.shape}, not (N, {_PIXELS}) with N > 0: {redo}"
        )
    if not isinstance(raw_labels, list | np.ndarray):
        raise DataError(f"{path}: labels are a {type(raw_labels).__name__}, not a list: {redo}")
    try:
        labels = np.asarray(raw_labels)
    except (OverflowError, ValueError) as exc:
        raise DataError(f"{path}: labels are not integers ({exc}): {redo}") from exc
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels are not a list of integers: {redo}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels):,} labels for {len(data):,} images: {redo}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"{path}: labels range over {low}..{high}, outside 0..{num_classes - 1} of "
            f"{release.title}: {redo}"
        )
    return data, labels.astype(np.int64)


def _check_meta(path: Path, *, release: _Release, num_classes: int) -> None:
    """Checks that the metadata file names ``num_classes`` classes."""
    content = _unpickle(path, release=release)
    names = content.get(release.meta_key) if isinstance(content, dict) else None
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataError(
            f"{path} does not list the {num_classes} {release.title} classes under "
            f"{release.meta_key.decode()}: replace it with the file from the official archive "
            f"({release.url})"
        )


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, limited to latin-1."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals a pickled numpy array needs, under every module name numpy used."""
    array = np.zeros(1, dtype=np.uint8)
    reconstruct = array.__reduce__()[0]
    from_buffer = array.__reduce_ex__(5)[0]
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = from_buffer
    return allowed


_ALLOWED_GLOBALS = _numpy_globals()


class _Refused(pickle.UnpicklingError):
    """The pickle asks for a global that a CIFAR file never needs."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only; every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(path: Path, *, release: _Release) -> Any:
    """Unpickles ``path`` with :class:`_RestrictedUnpickler`, the whole file and nothing else."""
    redo = f"replace it with the file from the official archive ({release.url})"
    try:
        with path.open("rb") as file:
            content = _RestrictedUnpickler(file, encoding="bytes").load()
            trailing = file.read(1)
    except _Refused as exc:
        raise DataError(
            f"{path} refused: the pickle asks for {exc}, which no CIFAR file needs (it may "
            f"run code); {redo}"
        ) from exc
    except OSError as exc:
        raise DataError(
            f"{path} cannot be read ({exc}): check the file and its permissions"
        ) from exc
    except Exception as exc:  # whatever a malformed pickle makes the unpickler raise
        raise DataError(
            f"{path} is damaged (truncated or not a pickle: {type(exc).__name__}: {exc}); {redo}"
        ) from exc
    if trailing:
        raise DataError(f"{path} has bytes after its pickle (damaged); {redo}")
    return content


def download_release(root: Path, *, release: _Release) -> Path:
    """Downloads the official archive into ``root``, checks its md5 and unpacks it.

    The archive goes to a temporary file in ``root`` and is unpacked into a temporary
    folder there; only a complete data set folder is moved into place, and both temporary
    paths are removed whatever happens.

    Args:
        root: Folder to unpack into (created if missing).
        release: Which archive.

    Returns:
        The unpacked data set folder, ``root / release.folder``.

    Raises:
        DataError: The download failed, the checksum does not match, or the archive holds
            an unsafe member or not the expected folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    by_hand = f"download {release.url} by hand (md5 {release.md5}) and unpack it into {root}"
    log.info("downloading %s into %s", release.url, root)
    with tempfile.NamedTemporaryFile(
        dir=root, prefix=f".{release.folder}.", suffix=".tar.gz.part", delete=False
    ) as part:
        archive = Path(part.name)
    staging: Path | None = None
    try:
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with (
                urllib.request.urlopen(release.url, timeout=60) as response,
                archive.open("wb") as out,
            ):
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as exc:
            raise DataError(f"could not download {release.title} ({exc}): {by_hand}") from exc
        if digest.hexdigest() != release.md5:
            raise DataError(
                f"checksum mismatch for {release.url}: md5 {digest.hexdigest()}, expected "
                f"{release.md5} (a damaged download); try again, or {by_hand}"
            )
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{release.folder}."))
        _extract(archive, staging, release=release)
        unpacked = staging / release.folder
        if not unpacked.is_dir():
            raise DataError(f"{release.url} holds no {release.folder}/ folder: {by_hand}")
        target = root / release.folder
        unpacked.rename(target)
        return target
    finally:
        archive.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, into: Path, *, release: _Release) -> None:
    """Unpacks ``archive`` into ``into``, refusing any member that could land elsewhere."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or re.match(r"^[A-Za-z]:", member.name):
                    raise DataError(
                        f"{release.url} holds an unsafe member {member.name!r} (absolute or "
                        "with '..'); refused: download the official archive by hand"
                    )
                if not (member.isfile() or member.isdir()):
                    raise DataError(
                        f"{release.url} holds {member.name!r}, which is not a plain file or "
                        "folder; refused: download the official archive by hand"
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:  # Python < 3.11.4: the checks above stand in for the filter
                tar.extractall(into, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(
            f"{release.url} is not a readable tar.gz archive ({exc}): download it by hand"
        ) from exc
