"""Weight quantization. Each technique is one module that registers a bundle in
`compress.techniques.QUANTIZERS` (`none`, `int8`/`nf4`/`fp4` through bitsandbytes, `int8-dynamic`
on torch's fbgemm int8 kernels, ...):
`quantize_(model, config)` for plain torch models, `load_quantized_hf(source, config)` for HF causal LMs,
and a pure-torch dequantizer (`compress.quantize.dequant`) for loading exports without bitsandbytes."""

from compress.quantize.api import load_quantized_hf, quantize_, technique_for
from compress.quantize.bnb import FP4Config, Int8Config, NF4Config, quantization_info, to_bnb_config
from compress.quantize.dequant import dequantize_state_dict
from compress.quantize.dynamic_int8 import DynamicInt8Config
from compress.techniques import QUANTIZERS

__all__ = ["QUANTIZERS", "DynamicInt8Config", "FP4Config", "Int8Config", "NF4Config", "dequantize_state_dict", "load_quantized_hf",
           "quantization_info", "quantize_", "technique_for", "to_bnb_config"]
