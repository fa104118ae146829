"""Plain (non-HF) layout: `model.safetensors` + `architecture.json` (+ `quantization.json`).

The architecture spec comes from `compress.models.model_spec`, so `build_model` rebuilds the exact zoo
model (including widths shrunk by pruning). A bitsandbytes-quantized model stores its state dict as is
(packed weights + quant state, see compress.quantize.bnb); loading re-creates the bitsandbytes layers
from those tensors, or, without bitsandbytes, dequantizes them in pure torch into plain nn.Linear.
`sparse=True` stores a pruned model through `compress.prune.sparse.save_sparse`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from compress.export.weights import is_pickle, load_weights, merge_safetensors_metadata
from compress.models import build_model, model_spec

WEIGHTS = "model.safetensors"
ARCHITECTURE = "architecture.json"
QUANTIZATION = "quantization.json"


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_plain(model: nn.Module, root: Path, *, metadata: dict[str, str], sparse: bool = False) -> dict[str, Any]:
    """Write the plain layout into `root`; returns the manifest fields describing it."""
    from compress.techniques import quantized_layers

    spec = model_spec(model)
    qinfo = quantized_layers(model)
    if sparse and qinfo:
        raise ValueError("sparse=True stores pruned float weights; this model is quantized "
                         f"({sorted(qinfo)}); export it with sparse=False")
    tensors = _state_dict(model)
    if sparse:
        from compress.prune.sparse import save_sparse

        save_sparse(root / WEIGHTS, tensors, metadata=metadata)
    else:
        save_file(tensors, root / WEIGHTS)
    merge_safetensors_metadata(root / WEIGHTS, {"format": "pt", **metadata})
    (root / ARCHITECTURE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    if qinfo:
        qconf = {"config": getattr(model, "quantization_config", None), "modules": qinfo}
        (root / QUANTIZATION).write_text(json.dumps(qconf, indent=2, sort_keys=True) + "\n")
    return {"layout": "plain", "sparse": sparse, "quantized": bool(qinfo), "architecture": spec.get("arch")}


def _read_tensors(root: Path, manifest: dict[str, Any], allow_pickle: bool) -> dict[str, torch.Tensor]:
    if manifest.get("sparse"):
        from compress.prune.sparse import load_sparse

        return load_sparse(root / WEIGHTS)
    weights = [n for n in manifest["files"] if Path(n).stem == "model" and (n.endswith(".safetensors") or is_pickle(n))]
    if WEIGHTS in weights:
        return load_file(root / WEIGHTS)
    if not weights:
        raise FileNotFoundError(f"{root} has no {WEIGHTS}; re-export the model")
    return load_weights(root / weights[0], allow_pickle=allow_pickle)


def _swap_in(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)


def load_plain(root: Path, manifest: dict[str, Any], *, allow_pickle: bool = False,
               use_bitsandbytes: bool | None = None) -> nn.Module:
    """Rebuild the model of a verified plain export (eval mode, CPU). Each quantized layer is rebuilt by
    the technique that wrote it (`compress.techniques`), or dequantized into a plain layer where
    `use_bitsandbytes` is False or the technique's runtime cannot be imported."""
    spec = json.loads((root / ARCHITECTURE).read_text())
    model = build_model(spec)
    tensors = _read_tensors(root, manifest, allow_pickle)
    qfile = root / QUANTIZATION
    qinfo: dict[str, dict[str, Any]] = json.loads(qfile.read_text())["modules"] if qfile.is_file() else {}
    tensors, rebuilt = load_quantized_layers(model, tensors, qinfo, native=use_bitsandbytes is not False)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not any(k.startswith(n + ".") for n in rebuilt)]
    if missing or unexpected:
        raise ValueError(f"{root / WEIGHTS} does not match {ARCHITECTURE}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}; re-export the model")
    if getattr(model, "quantization_config", None) is None and rebuilt:
        model.quantization_config = json.loads(qfile.read_text()).get("config")
    return model.eval()


def load_quantized_layers(model: nn.Module, tensors: dict[str, torch.Tensor], qinfo: dict[str, dict[str, Any]],
                           *, native: bool) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Replace each quantized layer of the float `model` by the one its technique rebuilds from the
    stored tensors (native, when its runtime imports), or put its dequantized float tensors back;
    returns the tensors left for `load_state_dict` and the names of the rebuilt layers."""
    from compress.techniques import quantizer

    rest = dict(tensors)
    rebuilt: set[str] = set()
    for name, info in qinfo.items():
        prefix = name + "."
        own = {k[len(prefix):]: rest.pop(k) for k in [k for k in rest if k.startswith(prefix)]}
        technique = quantizer(info["kind"])
        if native and technique.rebuild_layer is not None:
            try:
                _swap_in(model, name, technique.rebuild_layer(own, info))
                rebuilt.add(name)
                continue
            except ImportError:  # the technique's runtime (e.g. bitsandbytes) is absent: dequantize
                pass
        if technique.dequantize_layer is not None:
            rest.update({prefix + k: v for k, v in technique.dequantize_layer(own, info).items()})
        else:
            raise ValueError(f"layer {name!r} is quantized with {technique.name!r}, which can neither be rebuilt "
                             "nor dequantized here; install the technique's runtime")
    return rest, rebuilt
