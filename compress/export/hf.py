"""HF layout: what `save_pretrained` writes (config.json with any `quantization_config`,
model.safetensors sharded past `max_shard_size`, generation_config.json) plus the tokenizer files, so
`AutoModelForCausalLM.from_pretrained(dir)` loads the export. Our metadata (recipe hash, parent sha256,
library versions, technique parameters) is merged into every safetensors header by rewriting the
header in place of a full tensor reload.

Loading without bitsandbytes: the config's quantization_config is dropped, the float architecture is
built from the config, and the state dict is dequantized in pure torch (compress.quantize.dequant).

Techniques transformers does not know (e.g. `int8-dynamic`): the layers they quantized are listed in
`quantization.json` (as in the plain layout) and config.json carries a `quantization_config` with
`quant_method: "shrinkwrap"`, so plain `from_pretrained` warns about an unknown quantization instead of
loading silently. `load_hf` builds the float architecture and lets each layer's technique rebuild (or
dequantize) it from its stored tensors, exactly like `load_plain`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.export.weights import PICKLE_SUFFIXES, merge_safetensors_metadata, refuse_pickle

QUANTIZATION = "quantization.json"  # same name and shape as the plain layout's
SHRINKWRAP_QUANT_METHOD = "shrinkwrap"


def is_hf_model(model: nn.Module) -> bool:
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)


def save_hf(model: nn.Module, root: Path, *, metadata: dict[str, str], tokenizer=None,
            max_shard_size: str | int = "2GB") -> dict[str, Any]:
    """Write the HF layout into `root`; returns manifest fields."""
    own_layers = _own_quantized_layers(model)
    if own_layers:
        own = {"config": getattr(model, "quantization_config", None), "modules": own_layers}
        model.config.quantization_config = {"quant_method": SHRINKWRAP_QUANT_METHOD,
                                            "techniques": sorted({i["kind"] for i in own_layers.values()})}
        (root / QUANTIZATION).write_text(json.dumps(own, indent=2, sort_keys=True) + "\n")
    try:
        model.save_pretrained(root, safe_serialization=True, max_shard_size=max_shard_size)
    finally:
        if own_layers:
            del model.config.quantization_config
    if tokenizer is not None:
        tokenizer.save_pretrained(root)
    for path in sorted(root.glob("*.safetensors")):
        merge_safetensors_metadata(path, {"format": "pt", **metadata})
    quant = getattr(model.config, "quantization_config", None)
    if quant is not None and not isinstance(quant, dict):
        quant = quant.to_dict()
    return {"layout": "hf", "sparse": False, "quantized": quant is not None or bool(own_layers),
            "architecture": (model.config.architectures or [type(model).__name__])[0]}


def _own_quantized_layers(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Layers quantized by a technique transformers cannot load itself (none when the model carries a
    transformers quantization config, e.g. bitsandbytes loaded through BitsAndBytesConfig)."""
    from compress.techniques import quantized_layers

    if getattr(model.config, "quantization_config", None) is not None:
        return {}
    return quantized_layers(model)


def _model_class(config):
    import transformers

    name = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, name, None) if name else None
    return cls if cls is not None else transformers.AutoModelForCausalLM


def load_hf(root: Path, manifest: dict[str, Any], *, allow_pickle: bool = False,
            use_bitsandbytes: bool | None = None, device_map: str | dict | None = None) -> nn.Module:
    """Load a verified HF export (eval mode). Quantized exports load through bitsandbytes when it is
    available (or `use_bitsandbytes=True`), else dequantized into the float architecture."""
    from transformers import AutoConfig

    pickles = [n for n in manifest["files"] if Path(n).suffix.lower() in PICKLE_SUFFIXES]
    if pickles and not allow_pickle:
        refuse_pickle(root / pickles[0])
    config = AutoConfig.from_pretrained(root, trust_remote_code=False)
    if (root / QUANTIZATION).is_file():
        return _load_layerwise(root, config, _model_class(config), native=use_bitsandbytes is not False)
    quantized = getattr(config, "quantization_config", None) is not None
    if quantized and use_bitsandbytes is None:
        try:
            import bitsandbytes  # noqa: F401
            use_bitsandbytes = True
        except ImportError:
            use_bitsandbytes = False
    cls = _model_class(config)
    if quantized and not use_bitsandbytes:
        return _load_dequantized(root, config, cls)
    if device_map is None:
        device_map = ({"": 0} if torch.cuda.is_available() else "cpu") if quantized else None
    model = cls.from_pretrained(root, device_map=device_map, trust_remote_code=False,
                                use_safetensors=not pickles)
    if quantized:
        from compress.quantize.bnb import disable_cpu_repacking

        disable_cpu_repacking(model)
    return model.eval()


def _read_safetensors(root: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(root.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


def _load_dequantized(root: Path, config, cls) -> nn.Module:
    from compress.quantize.dequant import dequantize_state_dict

    del config.quantization_config
    model = cls._from_config(config)
    return _load_into(model, dequantize_state_dict(_read_safetensors(root)), root, config)


def _load_layerwise(root: Path, config, cls, *, native: bool) -> nn.Module:
    """An export whose quantized layers `quantization.json` lists: float architecture from config.json,
    then each listed layer rebuilt (`native`) or dequantized by its technique (compress.export.plain)."""
    from compress.export.plain import load_quantized_layers

    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    model = cls._from_config(config)
    qinfo = json.loads((root / QUANTIZATION).read_text())
    tensors, rebuilt = load_quantized_layers(model, _read_safetensors(root), qinfo["modules"], native=native)
    model.quantization_config = qinfo.get("config")
    return _load_into(model, tensors, root, config, rebuilt=rebuilt)


def _load_into(model: nn.Module, tensors: dict[str, torch.Tensor], root: Path, config, *,
               rebuilt: set[str] = frozenset()) -> nn.Module:
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied and not any(k.startswith(n + ".") for n in rebuilt)]
    if missing or unexpected:
        raise ValueError(f"{root}: stored weights do not match config.json: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    return model.eval()
