"""compress.distill: kd_loss against the paper's formula, soft-label files, distill/scratch arms and
their input checks, and a real MNIST run where the teacher's signal must matter."""

import math

import pytest
import torch
from safetensors.torch import save_file

from compress.data import UNLABELLED, load_dataset, transfer_set
from compress.distill import (
    KDConfig,
    distill,
    kd_loss,
    load_soft_labels,
    make_student,
    save_soft_labels,
    soft_labels,
    train_scratch,
)
from compress.evaluate import accuracy, agreement, predict_logits
from compress.teacher import load_packaged_teacher

SPEC = {"arch": "mlp", "in_features": 784, "hidden": [32], "num_classes": 10}


def direct_kd(s, t, y, T, alpha):
    """Hinton et al. 2015 written out element by element with Python floats."""
    total_soft, total_hard, labelled = 0.0, 0.0, 0
    for row in range(len(s)):
        zs = [v / T for v in s[row].tolist()]
        zt = [v / T for v in t[row].tolist()]
        ls = [z - math.log(sum(math.exp(u) for u in zs)) for z in zs]
        lt = [z - math.log(sum(math.exp(u) for u in zt)) for z in zt]
        total_soft += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
        if y[row] != UNLABELLED:
            raw = s[row].tolist()
            total_hard += -(raw[y[row]] - math.log(sum(math.exp(u) for u in raw)))
            labelled += 1
    hard = total_hard / max(labelled, 1)
    return (1 - alpha) * T * T * total_soft / len(s) + alpha * hard


@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.0), (4.0, 0.1), (20.0, 0.5), (2.5, 1.0)])
def test_kd_loss_equals_direct_formula(T, alpha):
    gen = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(6, 5, generator=gen), 3 * torch.randn(6, 5, generator=gen)
    y = torch.tensor([0, 4, 2, UNLABELLED, 1, UNLABELLED])
    got = kd_loss(s, t, y, temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(direct_kd(s, t, y.tolist(), T, alpha), rel=1e-5)


def test_kd_loss_edge_cases():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    assert kd_loss(t, t, None, temperature=3.0, alpha=0.0).item() == pytest.approx(0.0, abs=1e-6)
    unlabelled = torch.full((4,), UNLABELLED)
    soft_only = kd_loss(s, t, None, temperature=2.0, alpha=0.0)
    assert kd_loss(s, t, unlabelled, temperature=2.0, alpha=0.3).item() == pytest.approx(0.7 * soft_only.item())
    with pytest.raises(ValueError, match="needs hard labels"):
        kd_loss(s, t, None, temperature=2.0, alpha=0.5)
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(s, t[:, :2], None, temperature=2.0, alpha=0.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"alpha": 1.5}, r"alpha .* must lie in \[0, 1\]"),
    ({"epochs": 0}, "epochs >= 1"),
    ({"lr": -1.0}, "lr > 0"),
    ({"optimizer": "lbfgs"}, "optimizer must be"),
])
def test_kd_config_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KDConfig(**kwargs)


def test_kd_config_serialises_and_hashes():
    a, b = KDConfig(temperature=4.0), KDConfig(temperature=8.0)
    assert a.to_dict()["type"] == "KDConfig" and a.to_dict()["temperature"] == 4.0
    assert a.config_hash() != b.config_hash() and a.config_hash() == KDConfig(temperature=4.0).config_hash()


def test_soft_labels_round_trip(tmp_path):
    logits = torch.randn(7, 10)
    path = save_soft_labels(tmp_path / "sl" / "teacher.safetensors", logits,
                            metadata={"teacher": "ccexam-mnist", "n": "7"})
    loaded, meta = load_soft_labels(path)
    assert torch.equal(loaded, logits) and meta == {"teacher": "ccexam-mnist", "n": "7"}
    assert [p.name for p in path.parent.iterdir()] == ["teacher.safetensors"]  # no temp file left behind
    with pytest.raises(TypeError, match="must map str to str"):
        save_soft_labels(tmp_path / "bad.safetensors", logits, metadata={"n": 7})
    assert not (tmp_path / "bad.safetensors").exists()


def test_load_soft_labels_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_soft_labels(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"weights": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="no 'logits'"):
        load_soft_labels(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_soft_labels(junk)


def test_make_student_is_fresh_and_seeded():
    a, b, c = make_student(SPEC, 1), make_student(SPEC, 1), make_student(SPEC, 2)
    assert a is not b
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


@pytest.fixture(scope="module")
def small_mnist():
    """500 labelled MNIST digits inside a 2000-input transfer set, with real teacher logits."""
    data = load_dataset("mnist")
    ts = transfer_set(data, 500, 2000, seed=0)
    teacher = load_packaged_teacher()
    x_test, y_test = data.x_test[:1000], data.y_test[:1000]
    return ts, soft_labels(teacher, ts.x_transfer), x_test, y_test, soft_labels(teacher, x_test)


def test_alpha_one_distill_is_exactly_the_scratch_arm(small_mnist):
    """Same optimiser, batches, seed and initial weights: with only the hard term the arms coincide."""
    ts, logits, *_ = small_mnist
    cfg = KDConfig(alpha=1.0, epochs=2, seed=3)
    a, b = make_student(SPEC, 3), make_student(SPEC, 3)
    ra = distill(a, ts.x_labelled, ts.y_labelled, logits[:500], cfg)
    rb = train_scratch(b, ts.x_labelled, ts.y_labelled, cfg)
    assert ra.epoch_losses == pytest.approx(rb.epoch_losses, rel=1e-6)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))


def test_kd_beats_a_label_permuted_teacher(small_mnist):
    """Same student, data, seed and config; only the teacher differs. A teacher whose classes are
    permuted (confidently wrong everywhere) must give a much worse student: the soft labels are used."""
    ts, logits, x_test, y_test, test_logits = small_mnist
    perm = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    cfg = KDConfig(temperature=4.0, alpha=0.1, epochs=8, lr=2e-3, seed=0)
    good, bad = make_student(SPEC, 0), make_student(SPEC, 0)
    distill(good, ts.x_transfer, ts.y_transfer, logits, cfg)
    distill(bad, ts.x_transfer, ts.y_transfer, logits[:, perm], cfg)
    acc_good = accuracy(predict_logits(good, x_test), y_test)
    acc_bad = accuracy(predict_logits(bad, x_test), y_test)
    assert acc_good > 0.85, acc_good
    assert acc_good > acc_bad + 0.3, (acc_good, acc_bad)
    assert agreement(predict_logits(good, x_test), test_logits) > 0.85


def _unchanged(model, before):
    return all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


@pytest.mark.parametrize("case", ["logit_rows", "label_range", "nan_input", "teacher_classes", "shape",
                                  "all_unlabelled", "scratch_label_range", "scratch_unlabelled"])
def test_bad_input_raises_before_training(small_mnist, case):
    ts, logits, *_ = small_mnist
    x, y, t = ts.x_labelled[:64].clone(), ts.y_labelled[:64].clone(), logits[:64].clone()
    student = make_student(SPEC, 0)
    before = [p.detach().clone() for p in student.parameters()]
    cfg = KDConfig(epochs=1)
    expected = {
        "logit_rows": (lambda: distill(student, x, y, t[:10], cfg), r"teacher_logits must be \(N, C\) with N=64"),
        "label_range": (lambda: distill(student, x, y.index_fill(0, torch.tensor([3]), 12), t, cfg),
                        r"labels must lie in \[0, 9\].*rows \[3\] hold \[12\]"),
        "nan_input": (lambda: distill(student, x.index_fill(0, torch.tensor([5]), float("nan")), y, t, cfg),
                      r"NaN or inf \(first bad samples: \[5\]\)"),
        "teacher_classes": (lambda: distill(student, x, y % 3, t[:, :3], cfg),
                            "student outputs 10 classes but the teacher's soft labels have 3"),
        "shape": (lambda: distill(student, x.reshape(64, 28, 28)[:, :20], y, t, cfg), "cannot take inputs"),
        "all_unlabelled": (lambda: distill(student, x, torch.full_like(y, UNLABELLED), t, cfg),
                           "every row is unlabelled"),
        "scratch_label_range": (lambda: train_scratch(student, x, y - 1, cfg), r"labels must lie in \[0, 9\]"),
        "scratch_unlabelled": (lambda: train_scratch(student, x, ts.y_transfer[-64:], cfg),
                               r"labels must lie in \[0, 9\]; rows"),
    }
    call, match = expected[case]
    with pytest.raises(ValueError, match=match):
        call()
    assert _unchanged(student, before)
