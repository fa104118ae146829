"""The text_classification task end to end on tiny random BERTs: every stage method in sequence, the
pruned model really smaller, and the export loaded by transformers in a process without shrinkwrap."""

from __future__ import annotations

import json

import pytest
from text_testing import load_outside, make_recipe, write_csv, write_model

from compress.tasks import STAGES, Task
from flows.recipe import make_variant


@pytest.fixture(scope="module")
def task():
    from compress.tasks.text_classification import TASK

    return TASK


def test_registered_with_every_stage(task):
    from compress.tasks import TASKS

    assert TASKS["text_classification"] is task
    assert isinstance(task, Task)
    assert set(task.sources) == set(STAGES)


def test_stages_in_sequence_export_loads_in_transformers(task, tmp_path, csv_data):
    train, test = csv_data
    encoder = write_model(tmp_path / "encoder", classifier=False)
    extra = write_csv(tmp_path / "extra.csv", 32, 2, columns=("review",))  # unlabelled: a KD transfer set
    recipe = make_recipe(
        data={"train": str(train), "test": str(test), "unlabelled": str(extra), "text_column": "review",
              "label_column": "sentiment", "max_length": 16},
        teacher={"model": str(encoder), "num_labels": 2, "fine_tune": {"epochs": 10, "batch_size": 16, "lr": 3e-3}},
        distill={"epochs": 4, "batch_size": 16, "lr": 3e-3, "hidden_weight": 0.5},
        prune={"ffn": 0.5, "drop_layers": [1], "recover": {"epochs": 1, "batch_size": 16, "lr": 1e-3}})
    ds = task.dataset(recipe, tmp_path / "w1")
    assert ds.metadata["labels"] == ["neg", "pos"] and ds.metrics["n_train"] == 64 and ds.metrics["n_transfer"] == 32
    teacher = task.teacher(recipe, ds.path, tmp_path / "w2")
    assert teacher.metadata["fine_tuned"] and teacher.metrics["accuracy"] > 0.8  # words decide the label
    assert not any(k.startswith("transfer") for k in teacher.metrics)  # the transfer set is never evaluated
    soft = task.teacher_data(recipe, ds.path, teacher.path, tmp_path / "w3")
    assert soft.metrics == {"n_train": 64, "n_transfer": 32}
    student = task.distill(recipe, ds.path, soft.path, teacher.path, tmp_path / "w4")
    assert student.metrics["train_steps"] == 4 * (64 + 32) // 16  # labelled + transfer texts, 4 epochs
    assert student.metadata["teacher_layers"] == [0, 2] and student.metadata["kd"]
    assert student.metrics["params"] < teacher.metrics["params"]
    pruned = task.prune(recipe, ds.path, student.path, teacher.path, tmp_path / "w5")
    config = json.loads((pruned.path / "config.json").read_text())
    assert config["intermediate_size"] == 64 and config["num_hidden_layers"] == 1
    assert pruned.metrics["params_after"] < pruned.metrics["params_before"]
    from safetensors import safe_open

    with safe_open(pruned.path / "model.safetensors", "pt") as f:
        assert f.get_slice("bert.encoder.layer.0.intermediate.dense.weight").get_shape() == [64, 64]
        names = set(f.keys())
    assert "bert.encoder.layer.0.attention.self.query.weight" in names
    assert "bert.encoder.layer.1.attention.self.query.weight" not in names
    exports = {}
    for technique in ("none", "int8", "nf4"):
        variant = make_variant(f"v-{technique}", technique)
        quant = task.quantize(recipe, variant, pruned.path, ds.path, tmp_path / "w6")
        metrics = task.evaluate(recipe, quant.path, ds.path, teacher.path)
        for key in ("accuracy", "macro_f1", "agreement", "kl_to_teacher", "latency_b1_p50_ms",
                    "latency_b32_p95_ms", "seqs_per_s_b32", "params", "file_bytes"):
            assert key in metrics, key
        dest = task.export(recipe, variant, pruned.path, tmp_path / "exports" / technique, metrics=metrics,
                           lineage=[{"stage": "prune"}])
        assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= {p.name for p in dest.iterdir()}
        assert json.loads((dest / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
        exports[technique] = dest
    loaded = load_outside(list(exports.values()), "good great love the day", tmp_path)
    linear = {"none": "Linear", "int8": "Linear8bitLt", "nf4": "Linear4bit"}
    assert [r["linear"] for r in loaded] == [linear[t] for t in exports]
    for result in loaded:
        assert result["labels"] == ["neg", "pos"] and result["label"] in ("neg", "pos")
        assert not result["shrinkwrap"]


def test_classifier_teacher_used_as_is_and_student_without_teacher_data(task, tmp_path, csv_data):
    train, test = csv_data
    folder = write_model(tmp_path / "cls", classifier=True)
    recipe = make_recipe(data={"train": str(train), "test": str(test), "text_column": "review",
                               "label_column": "sentiment", "max_length": 16},
                         teacher={"model": str(folder)}, student={"layers": [3], "init": "random"},
                         distill={"epochs": 1, "batch_size": 32})
    ds = task.dataset(recipe, tmp_path / "w1")
    teacher = task.teacher(recipe, ds.path, tmp_path / "w2")
    assert not teacher.metadata["fine_tuned"] and "train_steps" not in teacher.metrics
    student = task.distill(recipe, ds.path, None, teacher.path, tmp_path / "w3")
    assert student.metadata == {"teacher_layers": [3], "kd": False}
    assert task.stage_params("dataset", recipe)["files"]["train"] != task.stage_params("dataset", recipe)[
        "files"]["test"]
