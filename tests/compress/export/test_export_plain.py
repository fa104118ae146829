"""Plain-layout exports: round trips (fp32 exact, quantized exact through bitsandbytes and through the
pure-torch loader), metadata, model card, manifest checks, pickle refusal and atomicity."""

import json
import struct

import pytest
import torch
from safetensors import safe_open
from torch import nn

from compress.export import (
    ExportCorrupt,
    PickleRefused,
    export_model,
    load_export,
    load_weights,
    verify_export,
)
from compress.models import MLP, MnistCNN
from compress.quantize import FP4Config, Int8Config, NF4Config, quantize_

X = torch.rand(16, 784, generator=torch.Generator().manual_seed(1))
META = {"recipe_hash": "abc123", "parent_sha256": "0" * 64, "technique": {"type": "NF4Config"}}


def _logits(model):
    with torch.no_grad():
        return model.eval()(X)


def _mlp():
    torch.manual_seed(0)
    return MLP(784, (48,), 10)


def test_fp32_round_trip_is_exact_and_carries_metadata_and_card(tmp_path):
    model = MnistCNN((4, 8), 32)
    res = export_model(model, tmp_path / "cnn", metadata=META, metrics={"accuracy": 0.9912},
                       lineage=[{"stage": "distill", "artifact": "sha:1"}, "prune p=0.5"],
                       reproduce="shrinkwrap run recipes/mnist.yaml")
    assert sorted(res.files) == ["README.md", "architecture.json", "manifest.json", "model.safetensors"]
    assert res.bytes == sum(p.stat().st_size for p in res.path.iterdir())
    loaded = load_export(res.path)
    assert isinstance(loaded, MnistCNN) and torch.equal(_logits(loaded), _logits(model))
    with safe_open(res.path / "model.safetensors", "pt") as fh:
        meta = fh.metadata()
    assert meta["recipe_hash"] == "abc123" and json.loads(meta["technique"]) == {"type": "NF4Config"}
    assert meta["version.torch"] == torch.__version__ and meta["format"] == "pt"
    card = (res.path / "README.md").read_text()
    assert "| accuracy | 0.9912 |" in card and "shrinkwrap run recipes/mnist.yaml" in card
    assert "1. stage: distill, artifact: sha:1" in card and "2. prune p=0.5" in card
    assert not list(tmp_path.glob(".cnn.tmp-*"))


@pytest.mark.parametrize("config", [Int8Config(), NF4Config(), NF4Config(double_quant=True), FP4Config()],
                         ids=lambda c: str(c.to_dict()))
def test_quantized_round_trip_with_and_without_bitsandbytes(tmp_path, config):
    model = quantize_(_mlp(), config)
    ref = _logits(model)
    res = export_model(model, tmp_path / "q", metadata=META)
    assert "quantization.json" in res.files
    quant = json.loads((res.path / "quantization.json").read_text())
    assert quant["config"]["type"] == type(config).__name__
    with safe_open(res.path / "model.safetensors", "pt") as fh:  # stored packed, not dequantized
        dtype = fh.get_tensor("layers.0.weight").dtype
    assert dtype == (torch.int8 if isinstance(config, Int8Config) else torch.uint8)

    again = load_export(res.path)  # bitsandbytes layers rebuilt from the stored tensors
    assert torch.equal(_logits(again), ref)

    plain = load_export(res.path, use_bitsandbytes=False)  # pure-torch dequantized nn.Linear
    assert all(type(m) is nn.Linear for m in plain.modules() if isinstance(m, nn.Linear))
    if isinstance(config, Int8Config):
        # bitsandbytes' int8 matmul also quantizes the activations; the dequantized float layer does not
        assert (_logits(plain) - ref).abs().max() < 0.02 * ref.abs().max()
    else:
        # 4-bit: same dequantized weights, same float matmul -> identical logits
        assert torch.allclose(_logits(plain), ref, rtol=0, atol=1e-6)


def test_quantized_export_after_inference_is_unchanged(tmp_path):
    model = quantize_(_mlp(), NF4Config(double_quant=True))
    a = export_model(model, tmp_path / "a")
    _logits(model)
    b = export_model(model, tmp_path / "b")
    assert a.files["model.safetensors"] == b.files["model.safetensors"]


def _export(tmp_path):
    return export_model(_mlp(), tmp_path / "e", metadata=META).path


def test_flipped_byte_is_rejected_naming_the_file(tmp_path):
    path = _export(tmp_path)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ExportCorrupt, match=r"model\.safetensors is corrupt.*re-export"):
        load_export(path)


def test_truncated_file_is_rejected(tmp_path):
    path = _export(tmp_path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ExportCorrupt, match="truncated"):
        load_export(path)


@pytest.mark.parametrize("damage", ["no_manifest", "bad_manifest", "missing_file", "extra_file"])
def test_manifest_problems_are_rejected(tmp_path, damage):
    path = _export(tmp_path)
    if damage == "no_manifest":
        (path / "manifest.json").unlink()
    elif damage == "bad_manifest":
        (path / "manifest.json").write_text("{not json")
    elif damage == "missing_file":
        (path / "architecture.json").unlink()
    else:
        (path / "evil.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ExportCorrupt, match=str(path)):
        verify_export(path)


def test_pickles_refused_unless_allowed(tmp_path):
    model = _mlp()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(PickleRefused, match="allow_pickle=True"):
        load_weights(tmp_path / "model.pt")
    state = load_weights(tmp_path / "model.pt", allow_pickle=True)
    assert torch.equal(state["layers.0.weight"], model.state_dict()["layers.0.weight"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        load_weights(tmp_path / "evil.pt", allow_pickle=True)


def test_export_with_pickle_weights_needs_allow_pickle(tmp_path):
    """An export folder whose weights are a pickle (foreign writer): refused, or read weights_only."""
    from compress.export.manifest import write_manifest

    model = _mlp()
    path = _export(tmp_path)
    (path / "model.safetensors").unlink()
    torch.save(model.state_dict(), path / "model.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").unlink()
    write_manifest(path, {k: v for k, v in manifest.items() if k not in ("files", "format", "version")})
    with pytest.raises(PickleRefused):
        load_export(path)
    assert torch.equal(_logits(load_export(path, allow_pickle=True)), _logits(model))


def test_export_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = _export(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(_mlp(), path)
    with pytest.raises(TypeError, match="has no `spec`"):
        export_model(nn.Linear(3, 3), tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))
    model = MLP(784, (8,), 10)
    export_model(model, path, overwrite=True)
    assert torch.equal(_logits(load_export(path)), _logits(model))


def test_safetensors_header_stays_valid(tmp_path):
    path = _export(tmp_path)
    raw = (path / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8:8 + length])["__metadata__"]["parent_sha256"] == "0" * 64


def test_sparse_export_round_trip(tmp_path):
    sparse = pytest.importorskip("compress.prune.sparse")
    assert hasattr(sparse, "save_sparse")
    model = _mlp()
    with torch.no_grad():
        model.layers[0].weight[:, ::2] = 0
    res = export_model(model, tmp_path / "s", sparse=True, metadata=META)
    assert json.loads((res.path / "manifest.json").read_text())["sparse"] is True
    assert torch.equal(_logits(load_export(res.path)), _logits(model))
    with pytest.raises(ValueError, match="quantized"):
        export_model(quantize_(_mlp(), Int8Config()), tmp_path / "s2", sparse=True)
