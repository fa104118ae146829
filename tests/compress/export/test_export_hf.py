"""HF-layout exports of a tiny random Llama (no downloads): fp32, sharded, int8 and nf4 round trips,
the tokenizer and generation config, and the pure-torch loader for quantized HF exports."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from compress.export import ExportCorrupt, export_model, load_export
from compress.quantize import Int8Config, NF4Config, load_quantized_hf

IDS = torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(0))
META = {"recipe_hash": "r1", "parent_sha256": "f" * 64}


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 64)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Llama (widths multiple of 64, tied embeddings) saved with a tokenizer."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    path = tmp_path_factory.mktemp("tiny") / "src"
    model.save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return model, path


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def test_fp32_round_trip_exact_with_tokenizer_and_generation_config(tiny, tmp_path):
    model, src = tiny
    res = export_model(model, tmp_path / "hf", metadata=META, tokenizer=AutoTokenizer.from_pretrained(src),
                       metrics={"perplexity": 12.5}, reproduce="shrinkwrap run recipes/llm.yaml")
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"):
        assert name in res.files, sorted(res.files)
    with safe_open(res.path / "model.safetensors", "pt") as fh:
        assert fh.metadata()["recipe_hash"] == "r1" and fh.metadata()["format"] == "pt"
    loaded = load_export(res.path)
    assert torch.equal(_logits(loaded), _logits(model))
    plain_hf = AutoModelForCausalLM.from_pretrained(res.path)  # the HF layout loads without our code
    assert torch.equal(_logits(plain_hf), _logits(model))
    assert AutoTokenizer.from_pretrained(res.path)("w3 w4")["input_ids"] == [3, 4]


def test_large_models_are_sharded(tiny, tmp_path):
    model, _ = tiny
    res = export_model(model, tmp_path / "sharded", metadata=META, max_shard_size="40KB")
    shards = [n for n in res.files if n.endswith(".safetensors")]
    assert len(shards) > 1 and "model.safetensors.index.json" in res.files
    for shard in shards:
        with safe_open(res.path / shard, "pt") as fh:
            assert fh.metadata()["parent_sha256"] == "f" * 64
    assert torch.equal(_logits(load_export(res.path)), _logits(model))
    victim = res.path / shards[-1]
    victim.write_bytes(victim.read_bytes()[:-8])
    with pytest.raises(ExportCorrupt, match=shards[-1]):
        load_export(res.path)


@pytest.mark.parametrize("config", [Int8Config(), NF4Config(double_quant=True)], ids=["int8", "nf4-dq"])
def test_quantized_round_trip(tiny, tmp_path, config):
    model, src = tiny
    quant, tokenizer = load_quantized_hf(str(src), config)
    ref = _logits(quant)  # inference before export must not change what is stored
    assert not torch.equal(ref, _logits(model))  # really quantized
    res = export_model(quant, tmp_path / "q", metadata=META, tokenizer=tokenizer)
    qconf = json.loads((res.path / "config.json").read_text())["quantization_config"]
    assert qconf["load_in_8bit"] is isinstance(config, Int8Config)
    again = load_export(res.path)
    assert type(again.model.layers[0].mlp.up_proj) is type(quant.model.layers[0].mlp.up_proj)
    assert torch.equal(_logits(again), ref)

    plain = load_export(res.path, use_bitsandbytes=False)  # as on a machine without bitsandbytes
    assert type(plain.model.layers[0].mlp.up_proj) is torch.nn.Linear
    tol = 0.02 if isinstance(config, Int8Config) else 1e-5  # int8: bnb also quantizes activations
    assert (_logits(plain) - ref).abs().max() <= tol * ref.abs().max()
