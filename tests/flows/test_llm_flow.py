"""The causal-LM path end to end on a tiny budget: the real SmolLM2 teacher (packaged GGUF, converted
once into the cache), 4 generated answers, a 1-layer student, 2 distillation steps, fp32 + int8 variants
with perplexity / agreement / tokens/s, HF-layout exports and registry versions."""

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
    data["llm"].update(n_prompts=4, n_heldout=2, max_new_tokens=8, gen_batch_size=4, student_layers=1, steps=2,
                       batch_size=2, max_length=64)
    data["quantize"]["variants"] = data["quantize"]["variants"][:2]  # fp32, int8
    return data


def test_llm_recipe_end_to_end(prefect, registry_env):
    from compress.export import load_export

    summary = compress_model(Recipe.model_validate(tiny_smollm2()))
    assert set(summary["variants"]) == {"fp32", "int8"}
    for name, v in summary["variants"].items():
        assert v["metrics"]["perplexity"] > 1 and "agreement" in v["metrics"], name
        assert load_export(v["export"]) is not None
    assert summary["variants"]["int8"]["metrics"]["file_bytes"] < summary["variants"]["fp32"]["metrics"]["file_bytes"]
    with session_scope() as s:
        _, total = repo.list_versions(s, model_name="smollm2-test")
    assert total == 2
