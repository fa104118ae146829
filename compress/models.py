"""The plain (non-HF) model zoo: MLP and the MNIST CNN, each rebuildable from a JSON spec.

Exports of plain models store `model.safetensors` plus the spec, so a loader rebuilds the exact
architecture (including widths shrunk by structured pruning) without pickles. Models take raw
pixels in [0, 1] and normalise inside `forward`, so every model of a run sees the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the ccexam teacher was trained with these


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear. Layers live in `self.layers`."""

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (128,), num_classes: int = 10,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        if in_features < 1 or num_classes < 2 or any(h < 1 for h in hidden):
            raise ValueError(f"MLP needs positive sizes and >= 2 classes, got in_features={in_features}, "
                             f"hidden={list(hidden)}, num_classes={num_classes}")
        self.spec = {"arch": "mlp", "in_features": in_features, "hidden": list(hidden),
                     "num_classes": num_classes, "mean": mean, "std": std}
        self.mean, self.std = mean, std
        self.input_shape = (in_features,)  # one sample (what a server validates requests against)
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.flatten(1) - self.mean) / self.std  # (B, in_features)
        return self.layers(x)  # (B, num_classes)


class MnistCNN(nn.Module):
    """The ccexam MNIST architecture; `channels`/`hidden` may shrink under structured pruning.

    features = Conv(1,c1,3,p1) ReLU MaxPool2 Conv(c1,c2,3,p1) ReLU MaxPool2;
    classifier = Linear(c2*7*7, hidden) ReLU Linear(hidden, num_classes). State-dict keys match
    ccexam's `weights/mnist.pth` for the default sizes.
    """

    def __init__(self, channels: Sequence[int] = (32, 64), hidden: int = 128, num_classes: int = 10,
                 in_channels: int = 1, image_size: int = 28, mean: float = MNIST_MEAN, std: float = MNIST_STD):
        super().__init__()
        c1, c2 = channels
        self.spec = {"arch": "mnist_cnn", "channels": [c1, c2], "hidden": hidden, "num_classes": num_classes,
                     "in_channels": in_channels, "image_size": image_size, "mean": mean, "std": std}
        self.mean, self.std = mean, std
        self.in_channels, self.image_size = in_channels, image_size
        self.input_shape = (in_channels, image_size, image_size)  # one sample
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Linear(c2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.in_channels, self.image_size, self.image_size)  # (B, C, H, W)
        x = (x - self.mean) / self.std
        return self.classifier(self.features(x).flatten(1))  # (B, num_classes)


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP, "mnist_cnn": MnistCNN}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a zoo model from its spec (as stored next to an export's `model.safetensors`)."""
    spec = dict(spec)
    arch = spec.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} in model spec; expected one of {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[arch](**spec)
    except TypeError as err:
        raise ValueError(f"model spec for {arch!r} has wrong fields: {err}") from err


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The spec that `build_model` turns back into `model`'s architecture."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise TypeError(f"{type(model).__name__} has no `spec`; only zoo models ({sorted(ARCHITECTURES)}) "
                        "can be exported as plain safetensors + spec (use the HF layout for transformers)")
    return dict(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put `models` in eval mode for the block, then give each back the train/eval state it had."""
    states = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, state in zip(models, states, strict=True):
            m.train(state)
