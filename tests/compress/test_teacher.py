"""compress.teacher: the packaged ccexam CNN, training a teacher, loading a user's teacher, checks."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from compress.data import Dataset, load_dataset
from compress.evaluate import accuracy, predict_logits
from compress.models import MLP, MnistCNN, model_spec
from compress.teacher import (
    TeacherConfig,
    TeacherError,
    check_teacher,
    load_packaged_teacher,
    load_teacher,
    train_teacher,
)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_packaged_teacher_reaches_its_published_accuracy(mnist):
    teacher = load_packaged_teacher("ccexam-mnist")
    assert isinstance(teacher, MnistCNN) and not teacher.training
    acc = accuracy(predict_logits(teacher, mnist.x_test), mnist.y_test)
    assert acc == pytest.approx(0.9905, abs=0.002)  # ccexam reports 99.05%
    check_teacher(teacher, mnist)


def test_unknown_packaged_teacher():
    with pytest.raises(ValueError, match="unknown packaged teacher 'resnet'"):
        load_packaged_teacher("resnet")


def test_train_teacher_cnn_on_small_mnist(mnist):
    small = Dataset("mnist-small", mnist.x_train[:2000], mnist.y_train[:2000], mnist.x_test[:1000],
                    mnist.y_test[:1000], 10)
    teacher = train_teacher(small, TeacherConfig(channels=(4, 8), hidden=32, epochs=3, lr=3e-3, batch_size=64))
    assert isinstance(teacher, MnistCNN) and teacher.spec["channels"] == [4, 8]
    assert accuracy(predict_logits(teacher, small.x_test), small.y_test) > 0.8


def _blobs(n_classes=3, n=90, dim=6, seed=0):
    """Well-separated Gaussian blobs: any working trainer fits them."""
    gen = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(n_classes, dim, generator=gen)
    y = torch.arange(n) % n_classes
    x = centres[y] + torch.randn(n, dim, generator=gen)
    return Dataset("blobs", x[:60], y[:60], x[60:], y[60:], n_classes)


def test_train_teacher_mlp_for_non_image_inputs():
    data = _blobs()
    teacher = train_teacher(data, TeacherConfig(mlp_hidden=(32,), epochs=20, batch_size=16, lr=1e-2))
    assert isinstance(teacher, MLP) and teacher.spec["num_classes"] == 3
    assert accuracy(predict_logits(teacher, data.x_test), data.y_test) > 0.9
    with pytest.raises(ValueError, match="needs square image inputs"):
        train_teacher(data, TeacherConfig(arch="cnn"))


def test_teacher_config_validates():
    with pytest.raises(ValueError, match="epochs >= 1"):
        TeacherConfig(epochs=0)
    with pytest.raises(ValueError, match="arch must be"):
        TeacherConfig(arch="resnet")


def test_train_teacher_refuses_bad_labels_before_training():
    data = _blobs()
    data.y_train = data.y_train.clone()
    data.y_train[0] = 7
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        train_teacher(data, TeacherConfig(epochs=1))


def _save_user_teacher(folder, model, spec_name="spec.json"):
    folder.mkdir()
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / spec_name).write_text(json.dumps(model_spec(model)))
    return folder


def test_load_teacher_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MLP(6, (16,), 3).eval()
    folder = _save_user_teacher(tmp_path / "teacher", model)
    loaded = load_teacher(folder)
    x = torch.randn(5, 6)
    torch.testing.assert_close(loaded(x), model(x))
    # a bare .safetensors file with the spec passed in, or carried in its metadata
    torch.testing.assert_close(load_teacher(folder / "model.safetensors", spec=model_spec(model))(x), model(x))
    path = tmp_path / "with_meta.safetensors"
    save_file(model.state_dict(), str(path), metadata={"spec": json.dumps(model_spec(model))})
    torch.testing.assert_close(load_teacher(path)(x), model(x))


def test_load_teacher_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="teacher weights .* not found"):
        load_teacher(tmp_path / "nowhere")
    model = MLP(6, (16,), 3)
    lonely = tmp_path / "lonely.safetensors"
    save_file(model.state_dict(), str(lonely))
    with pytest.raises(TeacherError, match="no model spec"):
        load_teacher(lonely)
    with pytest.raises(TeacherError, match="do not fit the spec"):
        load_teacher(lonely, spec={"arch": "mlp", "in_features": 6, "hidden": [8], "num_classes": 3})
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(TeacherError, match="cannot read teacher"):
        load_teacher(junk, spec=model_spec(model))


def test_teacher_output_size_must_match_classes(mnist):
    three_class = Dataset("three", mnist.x_train[:10], mnist.y_train[:10] % 3, mnist.x_test[:10],
                          mnist.y_test[:10] % 3, 3)
    with pytest.raises(TeacherError, match="outputs shape \\(10,\\) per input but dataset 'three' has 3 classes"):
        check_teacher(load_packaged_teacher(), three_class)
    flat = Dataset("flat", torch.zeros(4, 5), torch.zeros(4, dtype=torch.int64), torch.zeros(2, 5),
                   torch.zeros(2, dtype=torch.int64), 10)
    with pytest.raises(TeacherError, match="cannot take inputs of shape \\(5,\\)"):
        check_teacher(load_packaged_teacher(), flat)


def test_npz_dataset_trains_a_teacher(tmp_path):
    rng = np.random.default_rng(0)
    data = _blobs(n_classes=4)
    path = tmp_path / "blobs.npz"
    np.savez(path, x_train=data.x_train.numpy(), y_train=data.y_train.numpy(), x_test=data.x_test.numpy(),
             y_test=data.y_test.numpy(), unused=rng.normal(size=3))
    loaded = load_dataset("npz", path=path)
    teacher = train_teacher(loaded, TeacherConfig(mlp_hidden=(32,), epochs=20, batch_size=16, lr=1e-2))
    check_teacher(teacher, loaded)
    assert accuracy(predict_logits(teacher, loaded.x_test), loaded.y_test) > 0.9
