"""compress.data: packaged MNIST / Fashion-MNIST, user .npz files, seeded subsets and transfer sets."""

import numpy as np
import pytest
import torch

from compress.data import UNLABELLED, load_dataset, subsample, transfer_set


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_mnist_is_60k_pool_and_10k_test(mnist):
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    assert mnist.input_shape == (1, 28, 28) and mnist.num_classes == 10
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert mnist.x_train.min() >= 0.0 and mnist.x_train.max() <= 1.0
    assert set(mnist.y_test.unique().tolist()) == set(range(10))


def test_loaded_tensors_are_copies_of_the_cache(mnist):
    again = load_dataset("mnist")
    again.x_train[0] += 1.0
    assert mnist.x_train[0].max() <= 1.0 and load_dataset("mnist").x_train[0].max() <= 1.0


def test_fashion_mnist_loads_from_debian_idx_files():
    data = load_dataset("fashion_mnist")
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.y_train).tolist() == [6000] * 10  # Fashion-MNIST is exactly balanced
    assert data.x_train.max() == 1.0 and data.x_train.min() == 0.0


def test_n_train_subsamples_with_seed(mnist):
    a = load_dataset("mnist", n_train=100, seed=3)
    b = load_dataset("mnist", n_train=100, seed=3)
    c = load_dataset("mnist", n_train=100, seed=4)
    assert a.x_train.shape[0] == 100 and a.x_test.shape[0] == 10000
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


def test_subsample_prefix_and_bounds(mnist):
    x, y = subsample(mnist.x_train, mnist.y_train, 50, seed=1)
    x2, y2 = subsample(mnist.x_train, mnist.y_train, 200, seed=1)
    assert torch.equal(x, x2[:50]) and torch.equal(y, y2[:50])
    with pytest.raises(ValueError, match=r"n=0 must lie in \[1, 60000\]"):
        subsample(mnist.x_train, mnist.y_train, 0)
    with pytest.raises(ValueError, match="must lie in"):
        subsample(mnist.x_train, mnist.y_train, 60001)


def test_transfer_set_holds_labelled_subset_first(mnist):
    ts = transfer_set(mnist, 100, 1000, seed=2)
    x, y = subsample(mnist.x_train, mnist.y_train, 100, seed=2)
    assert torch.equal(ts.x_labelled, x) and torch.equal(ts.y_labelled, y)
    assert ts.x_transfer.shape == (1000, 1, 28, 28) and torch.equal(ts.x_transfer[:100], x)
    assert torch.equal(ts.y_transfer[:100], y) and (ts.y_transfer[100:] == UNLABELLED).all()
    assert torch.equal(mnist.x_train[ts.index], ts.x_transfer)
    assert len(set(ts.index.tolist())) == 1000  # no input twice
    with pytest.raises(ValueError, match="n_labelled <= n_transfer"):
        transfer_set(mnist, 100, 50)


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(30, 5)).astype(np.float32), "y_train": np.arange(30) % 3,
              "x_test": rng.normal(size=(9, 5)).astype(np.float32), "y_test": np.arange(9) % 3}
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_npz_any_shape_any_classes(tmp_path):
    data = load_dataset("npz", path=_write_npz(tmp_path / "tabular.npz"))
    assert data.input_shape == (5,) and data.num_classes == 3 and data.name == "tabular"
    assert data.x_train.dtype == torch.float32 and data.y_test.dtype == torch.int64
    images = _write_npz(tmp_path / "img.npz", x_train=np.full((30, 3, 8, 8), 255, np.uint8),
                        x_test=np.zeros((9, 3, 8, 8), np.uint8))
    data = load_dataset("npz", path=images)
    assert data.input_shape == (3, 8, 8) and data.x_train.max() == 1.0  # uint8 scaled to [0, 1]


@pytest.mark.parametrize(("overrides", "match"), [
    ({"y_test": None}, r"lacks arrays \['y_test'\]"),
    ({"y_train": np.arange(30) - 1}, r"y_train labels must lie in \[0, 28\], got range \[-1, 28\]"),
    ({"y_test": np.arange(9) % 5}, r"y_test labels must lie in \[0, 2\]"),
    ({"x_train": np.full((30, 5), np.nan, np.float32)}, "NaN or inf"),
    ({"x_test": np.zeros((9, 4), np.float32)}, "must match"),
    ({"y_train": np.arange(29) % 3}, r"must have shape \(30,\)"),
    ({"y_train": (np.arange(30) % 3) + 0.5}, "integer class labels"),
])
def test_npz_bad_input_raises_clearly(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("npz", path=_write_npz(tmp_path / "bad.npz", **overrides))


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="needs path="):
        load_dataset("npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("npz", path=tmp_path / "missing.npz")


def test_all_finite_fast_path_is_exact():
    from compress.data import all_finite

    x = torch.rand(100, 3)
    assert all_finite(x)
    assert all_finite(torch.full((10,), 3e38))  # the float32 sum overflows to inf; the full check still says finite
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[7, 1] = bad
        assert not all_finite(y)


def test_mnist_unpickler_refuses_anything_but_arrays(tmp_path):
    """A tampered MNIST pickle that would run code (os.system) is refused, naming the fix."""
    import gzip
    import os
    import pickle

    from compress.data import _ArrayUnpickler

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(Evil(), f)
    with gzip.open(path, "rb") as f, pytest.raises(pickle.UnpicklingError, match="reinstall"):
        _ArrayUnpickler(f, encoding="latin1").load()
