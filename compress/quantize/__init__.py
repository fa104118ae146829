"""Weight quantization with bitsandbytes: `quantize_(model, Int8Config() | NF4Config() | FP4Config())`
for plain torch models, `load_quantized_hf(source, config)` for HF causal LMs, and a pure-torch
dequantizer (`compress.quantize.dequant`) for loading quantized exports without bitsandbytes."""

from compress.quantize import bnb as _bnb_handlers  # noqa: F401  (registers the quantizers)
from compress.quantize.api import (
    QUANTIZERS,
    FP4Config,
    Int8Config,
    NF4Config,
    load_quantized_hf,
    quantize_,
    register_quantizer,
)
from compress.quantize.bnb import quantization_info, to_bnb_config
from compress.quantize.dequant import dequantize_state_dict

__all__ = ["QUANTIZERS", "FP4Config", "Int8Config", "NF4Config", "dequantize_state_dict", "load_quantized_hf",
           "quantization_info", "quantize_", "register_quantizer", "to_bnb_config"]
