"""GGUF export for llama.cpp and Ollama users on CPU: F16, Q8_0 or Q4_0, written with the `gguf` package.

Why: llama.cpp (and Ollama, LM Studio, ...) run GGUF files on a laptop CPU without Python. We write
the llama architecture the way llama.cpp's convert_hf_to_gguf.py does (tensor names blk.N.attn_q ...,
q/k rows permuted to its rotary layout, norms in F32), and quantize with the gguf package's reference
quantizers (block of 32 values: Q8_0 = int8 + one fp16 scale, Q4_0 = 4-bit symmetric + one fp16
scale). The token embedding is stored as Q8_0 in a Q4_0 file (the packaged SmolLM2 GGUF does the same;
it doubles as the tied output layer). A model quantized by the `gptq` technique is written from its
dequantized weights (re-rounded to the file's type), except that a symmetric 4-bit group-32 GPTQ layer
goes into a Q4_0 file as it is (`exact_q4_0`): llama.cpp then runs GPTQ's calibrated weights.

Tokenizer metadata is copied from a GGUF file (the teacher's, `tokenizer_gguf`) when there is one,
else built from the tokenizer (BPE tokenizers with tokenizer.json: tokens, types, merges).

    export_gguf(model, tokenizer, "out/model-q8_0.gguf", "Q8_0", tokenizer_gguf=assets.smollm2_gguf())
    llama-cli -m out/model-q8_0.gguf -p "Once upon a time"
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

QTYPES = ("F16", "Q8_0", "Q4_0")
_BLOCK_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down"}
_ARCHITECTURES = ("llama",)


def _gguf():
    import gguf

    return gguf


def _load_model(source: nn.Module | str | os.PathLike) -> nn.Module:
    if isinstance(source, nn.Module):
        return source
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(Path(source), dtype=torch.float32).eval()


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """HF-named float32 tensors of `model`; QuantLinear layers (gptq) dequantized to `.weight`."""
    from compress.quantize.calibrated import QuantLinear

    out = {k: v.detach().float().cpu() for k, v in model.state_dict().items() if v.is_floating_point()}
    for name, module in model.named_modules():
        if isinstance(module, QuantLinear):
            for key in [k for k in out if k.startswith(name + ".weight_")]:
                del out[key]
            out[name + ".weight"] = module.dequantized_weight()
    return out


def permute_rotary(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k row order: (heads, 2, half, in) -> (heads, half, 2, in), as convert_hf_to_gguf.py."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _heads(gguf_name: str, config) -> int | None:
    """Heads to permute the rows of a q/k projection by, None for every other tensor."""
    part = gguf_name.split(".")[-2]
    return {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}.get(part)


def gguf_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """{GGUF tensor name: float32 tensor} for a Llama-architecture transformers model."""
    config = model.config
    if getattr(config, "model_type", None) not in _ARCHITECTURES:
        raise ValueError(f"GGUF export supports {list(_ARCHITECTURES)} models, got model_type "
                         f"{getattr(config, 'model_type', None)!r}; export it as safetensors instead")
    state, out = float_state(model), {}
    out["token_embd.weight"] = state.pop("model.embed_tokens.weight")
    out["output_norm.weight"] = state.pop("model.norm.weight")
    head = state.pop("lm_head.weight", None)
    if head is not None and not getattr(config, "tie_word_embeddings", False):
        out["output.weight"] = head
    for i in range(config.num_hidden_layers):
        for hf, gg in _BLOCK_NAMES.items():
            name, w = f"blk.{i}.{gg}.weight", state.pop(f"model.layers.{i}.{hf}.weight")
            heads = _heads(name, config)
            out[name] = w if heads is None else permute_rotary(w, heads)
    leftover = [k for k in state if not k.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise ValueError(f"GGUF llama layout has no place for {leftover[:5]} (biases or extra modules); "
                         "export this model as safetensors instead")
    return out


def exact_q4_0(model: nn.Module) -> dict[str, np.ndarray]:
    """Q4_0 blocks written straight from the codes of symmetric 4-bit group-32 QuantLinears (gptq):
    Q4_0 stores x = (q - 8) * d per 32 values, exactly our (code) * scale, so no second rounding.
    Block layout (ggml block_q4_0): fp16 d, then 16 bytes with q[j] in the low and q[j + 16] in the
    high nibble. Returns {GGUF tensor name: uint8 (out, in / 32 * 18)}."""
    from compress.quantize.calibrated import QuantLinear

    hf_to_gguf = {f"model.layers.{i}.{hf}": f"blk.{i}.{gg}.weight"
                  for i in range(model.config.num_hidden_layers) for hf, gg in _BLOCK_NAMES.items()}
    out = {}
    for name, m in model.named_modules():
        if not (isinstance(m, QuantLinear) and m.bits == 4 and m.sym and m.group_size == 32 and name in hf_to_gguf):
            continue
        gname = hf_to_gguf[name]
        q, d = m.codes() + 8, m.weight_scale.to(torch.float16)                 # (out, in), (out, in / 32)
        heads = _heads(gname, model.config)
        if heads is not None:
            q, d = permute_rotary(q, heads), permute_rotary(d, heads)
        q = q.to(torch.uint8).reshape(q.shape[0], -1, 32)                       # (out, blocks, 32)
        nibbles = q[..., :16] | (q[..., 16:] << 4)                              # (out, blocks, 16)
        d_bytes = d.contiguous().view(torch.uint8).reshape(q.shape[0], -1, 2)   # (out, blocks, 2)
        out[gname] = torch.cat([d_bytes, nibbles], -1).reshape(q.shape[0], -1).numpy()
    return out


def _tensor_type(name: str, tensor: torch.Tensor, qtype: str) -> str:
    if tensor.ndim == 1:
        return "F32"
    if qtype == "Q4_0" and name == "token_embd.weight":
        return "Q8_0"
    return qtype


def _encode(name: str, tensor: torch.Tensor, ttype: str) -> tuple[np.ndarray, Any]:
    gguf = _gguf()
    arr = tensor.numpy().astype(np.float32)
    if ttype == "F32":
        return arr, gguf.GGMLQuantizationType.F32
    if ttype == "F16":
        return arr.astype(np.float16), gguf.GGMLQuantizationType.F16
    qt = gguf.GGMLQuantizationType[ttype]
    block = gguf.GGML_QUANT_SIZES[qt][0]
    if arr.shape[-1] % block:
        raise ValueError(f"{name} has rows of {arr.shape[-1]} values; {ttype} needs a multiple of {block}. "
                         "Export with qtype='F16' instead")
    return gguf.quants.quantize(arr, qt), qt


def export_gguf(model: nn.Module | str | os.PathLike, tokenizer, path: str | os.PathLike, qtype: str = "Q8_0", *,
                tokenizer_gguf: str | os.PathLike | None = None, name: str | None = None) -> Path:
    """Write `model` (a transformers Llama model or its folder) as one GGUF file at `path` of `qtype`
    ("F16" | "Q8_0" | "Q4_0"); tokenizer metadata from `tokenizer_gguf` if given, else from `tokenizer`.
    Written to a temp file and renamed into place. Returns the path."""
    if qtype not in QTYPES:
        raise ValueError(f"qtype must be one of {list(QTYPES)}, got {qtype!r}")
    gguf = _gguf()
    model = _load_model(model)
    config, tensors = model.config, gguf_tensors(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(tmp, "llama")
    try:
        _write_config(writer, config, qtype, name or path.stem)
        if tokenizer_gguf is not None:
            copy_tokenizer_fields(writer, tokenizer_gguf)
        else:
            tokenizer_fields(writer, tokenizer)
        exact = exact_q4_0(model) if qtype == "Q4_0" else {}
        for tname, tensor in tensors.items():
            if tname in exact:
                data, raw = exact[tname], gguf.GGMLQuantizationType.Q4_0
            else:
                data, raw = _encode(tname, tensor, _tensor_type(tname, tensor, qtype))
            writer.add_tensor(tname, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def _write_config(writer, config, qtype: str, name: str) -> None:
    gguf = _gguf()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[qtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta", getattr(config, "rope_theta", 10000.0))


def copy_tokenizer_fields(writer, source: str | os.PathLike) -> int:
    """Copy every tokenizer.* key of the GGUF file `source` into `writer`; returns how many."""
    gguf = _gguf()
    reader = gguf.GGUFReader(source)
    count = 0
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
        count += 1
    if not count:
        raise ValueError(f"{source} holds no tokenizer.* metadata; pass the tokenizer instead of tokenizer_gguf")
    return count


def tokenizer_fields(writer, tokenizer) -> None:
    """tokenizer.ggml.* for a BPE tokenizer with a tokenizer.json (GPT-2 style: tokens, types, merges)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise ValueError(f"GGUF tokenizer metadata can be built for BPE tokenizers only, got "
                         f"{model.get('type') or type(tokenizer).__name__}; pass tokenizer_gguf=<a GGUF of the same model>")
    vocab = {**model["vocab"], **{t["content"]: t["id"] for t in spec.get("added_tokens", [])}}
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3 = control, 1 = normal
    writer.add_token_merges(merges)
    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        if getattr(tokenizer, attr, None) is not None:
            add(getattr(tokenizer, attr))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
