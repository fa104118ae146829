"""The `none` technique: the float model as it is (the fp32 variant beside the quantized ones)."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.evaluate.system import model_size
from compress.techniques import QuantTechnique, register_quantizer


def _identity(model: nn.Module, config: Any = None, calibration: Any = None) -> nn.Module:
    return model


NONE = register_quantizer(QuantTechnique(name="none", config=None, apply=_identity, size=model_size,
                                         module=__name__, description="no quantization (float weights)"))
