"""The text_classification task through the real flow (Prefect + PostgreSQL registry) on a tiny BERT: a
user's own trained BertForSequenceClassification folder and CSV files in, registered versions with
quality / speed / size metrics and lineage out, and exports that plain transformers `pipeline()` loads in
a process without shrinkwrap. Bad user data is refused before any stage runs, naming the column."""

from __future__ import annotations

from pathlib import Path

import pytest
from text_testing import load_outside, one_thread, write_csv, write_model  # noqa: F401 (one_thread: autouse)

from flows.flow import compress_model
from flows.recipe import Recipe
from registry import repository as repo
from registry.session import session_scope

pytestmark = [pytest.mark.postgres]
VARIANTS = ("fp32", "nf4")
METRICS = ("accuracy", "macro_f1", "agreement", "kl_to_teacher", "latency_b1_p50_ms", "latency_b32_p95_ms",
           "seqs_per_s_b32", "params", "file_bytes")


def trained_classifier(root: Path, train_csv: Path) -> Path:
    """What a user brings: a (tiny) BertForSequenceClassification already trained on their labels."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compress.text.data import load_files
    from compress.text.train import TrainSettings, encode, train_classifier

    folder = write_model(root, classifier=True, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    texts, labels = load_files({"train": str(train_csv)}, text_column="review", label_column="sentiment").splits["train"]
    train_classifier(model, encode(tokenizer, texts, 16), torch.tensor(labels),
                     TrainSettings(epochs=10, batch_size=16, lr=3e-3))
    model.save_pretrained(folder)
    return folder


def text_recipe(tmp_path: Path, **changes) -> dict:
    train, test = write_csv(tmp_path / "train.csv", 64, 0), write_csv(tmp_path / "test.csv", 24, 1)
    data = {"name": "text-flow-test", "task": "text_classification",
            "data": {"train": str(train), "test": str(test), "text_column": "review", "label_column": "sentiment",
                     "max_length": 16},
            "teacher": {"model": str(tmp_path / "teacher")},
            "distill": {"epochs": 4, "batch_size": 16, "lr": 3e-3},
            "prune": {"ffn": 0.5, "recover": {"epochs": 1, "batch_size": 16, "lr": 1e-3}},
            "quantize": {"variants": [{"name": "fp32", "technique": "none"}, {"name": "nf4", "technique": "nf4"}]},
            "evaluate": {"latency_iters": 2, "warmup": 1},
            "promote": {"alias": "staging", "gates": [{"metric": "accuracy", "op": ">=", "value": 0.5}]}}
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    return data


def test_text_recipe_registers_versions_and_pipeline_loads_exports(prefect, registry_env, tmp_path):
    recipe = text_recipe(tmp_path)
    trained_classifier(tmp_path / "teacher", Path(recipe["data"]["train"]))
    summary = compress_model(Recipe.model_validate(recipe))

    with session_scope() as s:
        stages = {st.name: st.status for st in repo.list_stages(s, run_id=summary["run_id"])}
        versions, total = repo.list_versions(s, model_name="text-flow-test")
        by_variant = {v.description.split()[1]: v for v in versions}
        metrics = {name: repo.latest_values(s, version_id=v.id) for name, v in by_variant.items()}
        lineage = repo.version_lineage(s, model_name="text-flow-test", version=by_variant["nf4"].version)
        aliases = repo.list_aliases(s, model_name="text-flow-test")
    expected = {"dataset", "teacher", "teacher_data", "distill", "prune", "register",
                *(f"{stage}[{v}]" for stage in ("quantize", "evaluate", "export") for v in VARIANTS)}
    assert stages == dict.fromkeys(expected, "completed")
    assert total == 2 and set(by_variant) == set(VARIANTS)
    for name, m in metrics.items():
        assert set(METRICS) <= set(m), (name, sorted(m))
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["agreement"] <= 1 and m["latency_b1_p50_ms"] > 0, (name, m)
    # the words decide the label, so the trained teacher and its distilled, pruned student get them right
    assert metrics["fp32"]["accuracy"] >= 0.8 and metrics["fp32"]["agreement"] >= 0.8, metrics["fp32"]
    assert metrics["nf4"]["file_bytes"] < metrics["fp32"]["file_bytes"]
    assert {"dataset", "teacher", "soft-labels", "checkpoint", "export"} <= {n.kind for n in lineage["nodes"]}
    assert set(aliases) == {"staging"}

    exports = [Path(summary["variants"][v]["export"]) for v in VARIANTS]
    loaded = load_outside(exports, "good great love the day", tmp_path)
    assert [r["linear"] for r in loaded] == ["Linear", "Linear4bit"]
    for result in loaded:
        assert result["labels"] == ["neg", "pos"] and result["label"] in ("neg", "pos")
        assert not result["shrinkwrap"]


def test_missing_label_column_refused_before_any_stage(prefect, registry_env, tmp_path):
    from compress.text.data import TextDataError

    recipe = text_recipe(tmp_path)
    write_csv(Path(recipe["data"]["train"]), 16, 0, columns=("review",))  # the label column is gone
    write_model(tmp_path / "teacher", classifier=True)
    with session_scope() as s:
        _, before = repo.list_runs(s)
    with pytest.raises(TextDataError, match=r"train\.csv \(train split\): no column 'sentiment' "
                                            r"\(recipe field data\.label_column\)"):
        compress_model(Recipe.model_validate(recipe))
    with session_scope() as s:
        _, after = repo.list_runs(s)
    assert after == before  # no registry run, so no stage started
