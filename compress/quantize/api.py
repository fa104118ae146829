"""`quantize_(model, Int8Config() | NF4Config() | FP4Config())`: weight quantization with bitsandbytes.

Why: int8 cuts linear-layer weight bytes ~4x and 4-bit ~7-8x at a small quality cost, so a distilled
or pruned student ships smaller. Two paths share one set of configs:

- plain torch models (the MNIST students): `quantize_` swaps `nn.Linear` for `bnb.nn.Linear8bitLt`
  (LLM.int8, Dettmers et al. 2022, https://arxiv.org/abs/2208.07339) or `bnb.nn.Linear4bit`
  (NF4/FP4 from QLoRA, Dettmers et al. 2023, https://arxiv.org/abs/2305.14314), in place;
- HF causal LMs: `load_quantized_hf(source, config)` loads through transformers' `BitsAndBytesConfig`
  (`to_bnb_config`), so `save_pretrained` / `from_pretrained` keep working.

Techniques are bundles in `compress.techniques.QUANTIZERS` (one module each registers its own); `quantize_`
finds the bundle whose config class matches, so there are no if-chains on technique names.

Sample recipe stage (YAML):

    quantize:
      type: NF4Config
      double_quant: true
      compute_dtype: bfloat16
      skip_modules: [lm_head]
"""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.config import CompressConfig


def technique_for(config: CompressConfig):
    """The registered technique whose config class is exactly `type(config)`."""
    from compress.techniques import QUANTIZERS, load_all

    load_all()
    for technique in QUANTIZERS.values():
        if technique.config is not None and type(config) is technique.config:
            return technique
    raise TypeError(f"no quantizer for {type(config).__name__}; expected one of "
                    f"{sorted(t.config.__name__ for t in QUANTIZERS.values() if t.config is not None)}")


def _is_hf(model: nn.Module) -> bool:
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)


def quantize_(model: nn.Module, config: CompressConfig, calibration: Any = None) -> nn.Module:
    """Quantize `model`'s linear layers in place as `config` says; returns `model`.

    HF transformers models of a technique transformers knows (bitsandbytes) are refused: load them
    quantized with `load_quantized_hf` so that the model's `quantization_config` (what `from_pretrained`
    needs to reload an export) is set. `calibration` goes to techniques that declare `needs_calibration`.
    """
    technique = technique_for(config)
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_ needs an nn.Module, got {type(model).__name__}")
    if _is_hf(model) and technique.hf_quantization_config is not None:
        raise TypeError(f"{type(model).__name__} is a transformers model; quantize it on load with "
                        "compress.quantize.load_quantized_hf(source, config) so save_pretrained/from_pretrained "
                        "round-trip")
    return technique.apply(model, config, calibration)


def load_quantized_hf(source: str, config: CompressConfig, *, dtype: str = "float32",
                      device_map: str | dict | None = None, trust_remote_code: bool = False):
    """Load an HF causal LM (`compress.llm.teacher.load_causal_lm` source: "smollm2", a folder or a hub
    id) quantized by bitsandbytes as `config` says; returns `(model, tokenizer)` in eval mode.

    device_map defaults to the first CUDA device when there is one, else "cpu" (bitsandbytes >= 0.45
    runs int8 and 4-bit layers on CPU). 4-bit layers get the CPU bf16 repacking switched off so an
    export after inference stores exactly the quantized weights."""
    import torch

    from compress.llm.teacher import load_causal_lm
    from compress.quantize.bnb import disable_cpu_repacking

    technique = technique_for(config)
    if technique.hf_quantization_config is None:
        raise TypeError(f"transformers cannot load {technique.name!r} quantized itself; load the model in "
                        f"float and call quantize_(model, config, calibration)")
    bnb_config = technique.hf_quantization_config(config)
    if device_map is None:
        device_map = {"": 0} if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_causal_lm(source, dtype=dtype, device_map=device_map,
                                      trust_remote_code=trust_remote_code, quantization_config=bnb_config)
    disable_cpu_repacking(model)  # keeps stored 4-bit tensors exact for export (see compress.quantize.bnb)
    return model, tokenizer
