"""The causal-LM path end to end on a tiny budget: the real SmolLM2 teacher (packaged GGUF, converted
once into the cache), 4 generated answers, a 1-layer student, 2 distillation steps, fp32 + int8 variants with perplexity / agreement / tokens/s, HF-layout exports and
registry versions, and a re-evaluation of one of them."""

from __future__ import annotations

import pytest
import yaml
from flows_testing import ROOT

from flows.flow import compress_model
from flows.recipe import Recipe
from registry import repository as repo
from registry.session import session_scope

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def tiny_smollm2() -> dict:
    data = yaml.safe_load((ROOT / "recipes" / "smollm2.yaml").read_text())
    data["name"] = "smollm2-test"
    # a 1-layer first_layers student keeps this test's exports small (the default, a 25%-pruned SmolLM2,
    # writes ~430 MB per export; its path runs on a tiny Llama in tests/compress/tasks/test_task_stages.py)
    data["llm"].update(n_prompts=4, n_heldout=2, max_new_tokens=8, gen_batch_size=4, steps=2, batch_size=2,
                       max_length=64, student="first_layers", student_layers=1, kd_source="topk")
    data["quantize"]["variants"] = data["quantize"]["variants"][:2]  # fp32, int8
    data["gguf"] = {"types": [], "variants": []}
    return data


def test_llm_recipe_end_to_end(prefect, registry_env):
    from compress.export import load_export
    from compress.tasks.causal_lm import load_hf
    from flows.reevaluate import reevaluate_version

    summary = compress_model(Recipe.model_validate(tiny_smollm2()))
    assert set(summary["variants"]) == {"fp32", "int8"}
    _, tokenizer = load_hf(summary["variants"]["fp32"]["export"])
    ids = tokenizer("To be, or not to be", return_tensors="pt")["input_ids"]
    for name, v in summary["variants"].items():
        assert v["metrics"]["perplexity"] > 1 and "agreement" in v["metrics"], name
        logits = load_export(v["export"])(ids).logits  # the export really loads and runs
        assert logits.shape == (1, ids.shape[1], len(tokenizer)) and logits.isfinite().all(), name
    assert summary["variants"]["int8"]["metrics"]["file_bytes"] < summary["variants"]["fp32"]["metrics"]["file_bytes"]
    with session_scope() as s:
        _, total = repo.list_versions(s, model_name="smollm2-test")
        fp32 = summary["registered"]["versions"]["fp32"]
        repo.set_alias(s, model_name="smollm2-test", version=fp32, alias="reeval")
    assert total == 2

    # re-evaluation of a causal-LM version goes through its task (it used to call the classifier)
    again = reevaluate_version.fn("smollm2-test", "reeval")
    registered = summary["variants"]["fp32"]["metrics"]["perplexity"]
    assert again["fresh"]["perplexity"] == pytest.approx(registered, rel=1e-4)
