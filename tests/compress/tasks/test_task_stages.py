"""Each task's stage methods called directly, in pipeline order, on tiny inputs: no Prefect, no database
(issue 13). Every output is checked for what the next stage and the user rely on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "recipes"))
from make_sample_npz import make_sample_npz  # noqa: E402

from compress.export import load_export, verify_export  # noqa: E402
from compress.tasks import STAGES, Task, get_task  # noqa: E402
from flows.recipe import Recipe  # noqa: E402


def _run_all(task, recipe, tmp_path: Path) -> dict:
    work = {s: tmp_path / s for s in (*STAGES, "exports")}
    for folder in work.values():
        folder.mkdir()
    out = {"dataset": task.dataset(recipe, work["dataset"])}
    out["teacher"] = task.teacher(recipe, out["dataset"].path, work["teacher"])
    out["teacher_data"] = task.teacher_data(recipe, out["dataset"].path, out["teacher"].path, work["teacher_data"])
    out["distill"] = task.distill(recipe, out["dataset"].path, out["teacher_data"].path, out["teacher"].path,
                                  work["distill"])
    out["prune"] = task.prune(recipe, out["dataset"].path, out["distill"].path, out["teacher"].path, work["prune"])
    for variant in recipe.quantize.variants:
        q = task.quantize(recipe, variant, out["prune"].path, out["dataset"].path, work["quantize"])
        metrics = task.evaluate(recipe, q.path, out["dataset"].path, out["teacher"].path)
        dest = task.export(recipe, variant, out["prune"].path, work["exports"] / variant.name, metrics=metrics,
                           lineage=[{"step": "test"}], dataset=out["dataset"].path)
        out[variant.name] = (q, metrics, dest)
    return out


def test_registered_tasks_implement_the_protocol():
    for name in ("classification", "causal_lm"):
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and set(task.sources) == set(STAGES)
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


def test_image_classification_stages_on_a_tiny_npz(tmp_path):
    npz = make_sample_npz(tmp_path / "d.npz", n_train=600, n_test=200)
    recipe = Recipe.model_validate({
        "name": "tiny", "dataset": {"name": "npz", "path": str(npz)},
        "teacher": {"source": "train", "train": {"epochs": 8, "mlp_hidden": [32]}},
        "student": {"hidden": [32]}, "distill": {"epochs": 10, "lr": 0.01},
        "prune": {"rounds": 1, "epochs": 1},
        "evaluate": {"latency_iters": 2, "warmup": 1},
        "quantize": {"variants": [{"name": "fp32", "technique": "none"},
                                  {"name": "int8", "technique": "int8", "options": {"threshold": 0.0}}]}})
    task = get_task("classification")
    out = _run_all(task, recipe, tmp_path)
    meta = json.loads((out["dataset"].path / "dataset.json").read_text())
    assert meta["num_classes"] == 4 and (out["dataset"].path / "data.npz").is_file()  # the user's file is kept
    assert out["teacher"].metrics["accuracy"] > 0.6 and out["teacher"].kind == "teacher"
    assert out["teacher_data"].metadata["rows"] == 600
    assert out["distill"].metrics["accuracy"] > 0.5 and "agreement" in out["distill"].metrics
    assert 0 < out["prune"].metrics["retained_fraction"] < 1 and out["prune"].plots[0].is_file()
    assert out["prune"].metrics["nonzero_params"] < out["prune"].metrics["params"]  # masked zeros not counted
    _, fp32, fp32_dest = out["fp32"]
    _, int8, int8_dest = out["int8"]
    assert fp32["accuracy"] == pytest.approx(out["prune"].metrics["accuracy"])  # export = the pruned model
    assert int8["file_bytes"] < fp32["file_bytes"] or fp32["file_bytes"] < 20_000  # sparse fp32 is tiny too
    assert abs(int8["accuracy"] - fp32["accuracy"]) < 0.1
    for dest in (fp32_dest, int8_dest):
        verify_export(dest)
        assert "recipe_hash" in (dest / "README.md").read_text() or (dest / "manifest.json").is_file()
    x = torch.randn(3, 20)
    assert load_export(int8_dest, use_bitsandbytes=False)(x).shape == (3, 4)


@pytest.mark.slow
def test_causal_lm_stages_on_a_tiny_llama(tmp_path, tokenizer, make_tiny):
    teacher_dir = tmp_path / "teacher-model"
    make_tiny(layers=2, hidden=32).save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    recipe = Recipe.model_validate({
        "name": "tiny-lm", "task": "causal_lm",
        "llm": {"teacher": str(teacher_dir), "n_prompts": 4, "n_heldout": 2, "max_new_tokens": 6,
                "gen_batch_size": 4, "steps": 2, "batch_size": 2, "max_length": 48, "kd_source": "teacher",
                "n_calibration": 2, "n_corpus_passages": 4, "student_pruning": {"target": 0.25}},
        "prune": {"rounds": 1, "gamma": 0.25, "ignore": ["lm_head", "embed_tokens"]},
        "quantize": {"variants": [{"name": "fp32", "technique": "none"},
                                  {"name": "int8", "technique": "int8", "options": {"skip_modules": ["lm_head"]}}]},
        "export": {"sparse": False}})
    out = _run_all(get_task("causal_lm"), recipe, tmp_path)
    assert len(json.loads(out["dataset"].path.read_text())["heldout"]) == 2
    assert json.loads(out["teacher"].path.read_text())["source"] == str(teacher_dir)
    assert len(out["teacher_data"].path.read_text().splitlines()) == 4
    assert out["distill"].metrics["perplexity"] > 1 and out["distill"].format == "hf"
    student_config = json.loads((out["distill"].path / "config.json").read_text())
    assert student_config["intermediate_size"] < 64 and student_config["num_hidden_layers"] == 2  # pruned width
    assert 0 < out["prune"].metrics["retained_fraction"] < 1
    for name in ("fp32", "int8"):
        _, metrics, dest = out[name]
        assert metrics["perplexity"] > 1 and metrics["file_bytes"] > 0
        model = load_export(dest)
        assert model.config.intermediate_size == student_config["intermediate_size"]
    assert out["int8"][1]["file_bytes"] < out["fp32"][1]["file_bytes"]


def test_a_field_another_task_uses_is_refused():
    from flows.recipe import RecipeError

    with pytest.raises(RecipeError, match="llm: unknown field"):
        Recipe.from_dict({"name": "m", "llm": {"steps": 3}})
    with pytest.raises(RecipeError, match="prune.epochs: unknown field"):  # silently ignored before
        Recipe.from_dict({"name": "m", "task": "causal_lm", "prune": {"epochs": 3}})
    with pytest.raises(RecipeError, match="dataset: unknown field"):
        Recipe.from_dict({"name": "m", "task": "causal_lm", "dataset": {"name": "mnist"}})
    with pytest.raises(RecipeError, match="unknown task 'speech'"):
        Recipe.from_dict({"name": "m", "task": "speech"})
    with pytest.raises(RecipeError, match="options.thresold: unknown field"):  # typed variant options
        Recipe.from_dict({"name": "m", "quantize": {"variants": [
            {"name": "q", "technique": "int8", "options": {"thresold": 1}}]}})


@pytest.mark.slow
def test_causal_lm_gptq_variant_and_gguf_files(tmp_path, tokenizer, make_tiny):
    """A calibrated technique gets corpus calibration windows from its task, and the recipe's gguf section
    writes GGUF files into the named variant's export, covered by its manifest, that transformers reads."""
    from transformers import AutoModelForCausalLM

    teacher_dir = tmp_path / "teacher-model"
    make_tiny(layers=2, hidden=32).save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    recipe = Recipe.model_validate({
        "name": "tiny-gptq", "task": "causal_lm",
        "llm": {"teacher": str(teacher_dir), "n_prompts": 4, "n_heldout": 2, "max_new_tokens": 6,
                "gen_batch_size": 4, "student": "first_layers", "student_layers": 1, "steps": 1, "batch_size": 2,
                "max_length": 48},
        "prune": {"enabled": False}, "calibration": {"n_samples": 4, "seq_len": 64},
        "gguf": {"types": ["Q8_0"], "variants": ["fp32"]},
        "quantize": {"variants": [{"name": "fp32", "technique": "none"},
                                  {"name": "w4", "technique": "gptq", "options": {"group_size": 32, "awq": False}}]},
        "export": {"sparse": False}})
    task = get_task("causal_lm")
    for folder in ("d", "t", "td", "s", "q", "x"):
        (tmp_path / folder).mkdir()
    data = task.dataset(recipe, tmp_path / "d").path
    teacher = task.teacher(recipe, data, tmp_path / "t").path
    td = task.teacher_data(recipe, data, teacher, tmp_path / "td").path
    student = task.distill(recipe, data, td, teacher, tmp_path / "s").path
    w4 = recipe.quantize.variants[1]
    q = task.quantize(recipe, w4, student, data, tmp_path / "q")
    assert "compressed-tensors" in (q.path / "config.json").read_text()
    metrics = task.evaluate(recipe, q.path, data, teacher)
    assert metrics["perplexity"] > 1
    fp32 = recipe.quantize.variants[0]
    dest = task.export(recipe, fp32, student, tmp_path / "x" / "fp32", metrics={}, lineage=[], dataset=data)
    manifest = verify_export(dest)
    assert "fp32-Q8_0.gguf" in manifest["files"]
    loaded = AutoModelForCausalLM.from_pretrained(dest, gguf_file="fp32-Q8_0.gguf")
    assert loaded.config.num_hidden_layers == 1

    from flows.recipe import RecipeError

    with pytest.raises(RecipeError, match="gguf.variants names"):
        Recipe.from_dict({**recipe.model_dump(mode="json"), "gguf": {"types": ["F16"], "variants": ["nope"]}})
