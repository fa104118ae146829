import pytest

from compress.llm.generate import GenerateConfig, generate_dataset, read_dataset
from compress.llm.teacher import TeacherNotFound, load_causal_lm


def test_missing_or_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(TeacherNotFound, match="does not exist"):
        load_causal_lm(str(tmp_path / "nope" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherNotFound, match="config.json"):
        load_causal_lm(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="dtype"):
        load_causal_lm("smollm2", dtype="float8")


def test_loads_a_local_checkpoint(tokenizer, make_tiny, tmp_path):
    make_tiny(layers=1, hidden=16).save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    model, tok = load_causal_lm(str(tmp_path / "ckpt"), dtype="bfloat16")
    assert not model.training and next(model.parameters()).dtype.is_floating_point
    assert str(next(model.parameters()).dtype) == "torch.bfloat16"
    assert tok.padding_side == "left" and tok.pad_token_id is not None and len(tok) == len(tokenizer)


@pytest.mark.slow
def test_real_smollm2_teacher_generates(tmp_path):
    model, tok = load_causal_lm("smollm2")  # converts the packaged GGUF once into the cache
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert getattr(model.config, "quantization_config", None) is None  # plain float checkpoint
    cfg = GenerateConfig(max_new_tokens=8, do_sample=False, batch_size=2, top_k_logits=2)
    prompts = ["What is the capital of France?", "Name a colour."]
    records = read_dataset(
        generate_dataset(model, tok, prompts, tmp_path / "t.jsonl", config=cfg, progress=False)
    )
    assert [r["prompt"] for r in records] == prompts
    assert "paris" in records[0]["response"].lower()
    assert all(r["response"].strip() and len(r["topk_ids"]) == len(r["response_ids"]) for r in records)
