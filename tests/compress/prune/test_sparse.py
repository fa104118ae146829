"""Sparse safetensors: bit-exact round trips, real byte savings, metadata, plain-file compatibility."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from compress.models import MLP
from compress.prune import MagnitudePruneConfig, is_sparse_file, load_sparse, prune_, save_sparse
from compress.prune.sparse import pack_bits, unpack_bits


def odd_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 50, generator=g)
    w[torch.rand(64, 50, generator=g) < 0.9] = 0
    w[0, :3] = torch.tensor([-0.0, float("nan"), float("-inf")])  # bit patterns, not values, decide
    half = torch.randn(33, 17, generator=g).to(torch.bfloat16)
    half[half.abs() < 1.5] = 0
    return {
        "sparse.weight": w,
        "half.weight": half,
        "fp16.weight": torch.zeros(40, 40, dtype=torch.float16).index_fill_(1, torch.tensor([2]), 1.5),
        "dense.bias": torch.randn(50, generator=g),
        "ids": torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7] * 10, dtype=torch.int64),
        "flags": torch.tensor([True, False, True]),
        "scalar": torch.tensor(0.0),
        "empty": torch.zeros(0, 4),
    }


def test_round_trip_is_bit_exact_and_smaller(tmp_path):
    sd = odd_state_dict()
    path = tmp_path / "m.safetensors"
    stats = save_sparse(path, sd, metadata={"spec": '{"arch": "mlp"}'})
    assert is_sparse_file(path)
    assert stats["sparse_tensors"] == 4  # sparse, half, fp16, ids; bias/bool/scalar/empty stay dense
    back = load_sparse(path)
    assert set(back) == set(sd)
    for name, t in sd.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        if t.dtype != torch.bool:
            assert torch.equal(back[name].view(view), t.view(view)), name  # bit-exact (-0.0, NaN)
        else:
            assert torch.equal(back[name], t)
    assert back["sparse.weight"][0, 0].item() == 0 and torch.signbit(back["sparse.weight"][0, 0])
    dense_path = tmp_path / "dense.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dense_path))
    assert path.stat().st_size < 0.5 * dense_path.stat().st_size
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["spec"] == '{"arch": "mlp"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.safetensors", "m.safetensors"]  # no temp files


def test_pruned_model_exports_smaller_and_reloads_exactly(tmp_path):
    torch.manual_seed(0)
    model = MLP(784, [64, 32], 10)
    prune_(model, MagnitudePruneConfig(amount=0.9))
    stats = save_sparse(tmp_path / "m.safetensors", model.state_dict())
    assert stats["file_bytes"] < 0.3 * stats["dense_bytes"]
    fresh = MLP(784, [64, 32], 10)
    fresh.load_state_dict(load_sparse(tmp_path / "m.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_tied_tensors_and_plain_files(tmp_path):
    w = torch.zeros(20, 20)
    w[0, 0] = 1.0
    save_sparse(tmp_path / "tied.safetensors", {"a": w, "b": w, "c": w[:10]})  # shared storage is fine
    back = load_sparse(tmp_path / "tied.safetensors")
    assert torch.equal(back["a"], w) and torch.equal(back["c"], w[:10])
    save_file({"x": torch.ones(3)}, str(tmp_path / "plain.safetensors"))
    assert not is_sparse_file(tmp_path / "plain.safetensors")
    assert torch.equal(load_sparse(tmp_path / "plain.safetensors")["x"], torch.ones(3))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert not is_sparse_file(tmp_path / "junk.safetensors")
    assert not is_sparse_file(tmp_path / "missing.safetensors")


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="dict\\[str, str\\]"):
        save_sparse(tmp_path / "m.safetensors", {"a": torch.zeros(3)}, metadata={"n": 3})
    with pytest.raises(ValueError, match="reserved"):
        save_sparse(tmp_path / "m.safetensors", {"a": torch.zeros(3)}, metadata={"shrinkwrap.sparse": "{}"})
    with pytest.raises(ValueError, match="::"):
        save_sparse(tmp_path / "m.safetensors", {"a::values": torch.zeros(3)})
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_bit_packing_round_trip(n):
    mask = torch.rand(n, generator=torch.Generator().manual_seed(n)) < 0.3
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 7) // 8
    assert torch.equal(unpack_bits(packed, n), mask)
