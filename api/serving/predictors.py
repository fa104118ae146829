"""What the server does with a loaded export: one predictor class per kind of model, picked by asking each
class in `PREDICTORS` whether it `accepts` the model (no table of task names).

A predictor has two halves:
- `prepare(request)` runs on the event loop before the request is queued: it validates and converts the
  input, raising `InvalidInput` (422) for anything malformed, so a bad request never reaches a batch;
  it returns (payload, number of samples);
- `run_batch(jobs)` runs in the batcher's thread: one forward pass over every job's payload, returning
  one result per job.

Kinds: a plain zoo classifier (arrays in), a transformers sequence classifier with its tokenizer (texts
in: detected from config.json's architecture through transformers' own auto-model tables), and a causal
LM (api/serving/generation.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from api.errors import ApiError
from compress.export.hf import is_hf_model

MAX_TEXT_CHARS = 20_000


class InvalidInput(ApiError):
    """A request the model cannot take (wrong shape, wrong type, non-finite values, ...): 422."""

    def __init__(self, message: str):
        super().__init__(422, "invalid_input", message)


def architecture(model: nn.Module) -> str | None:
    names = getattr(getattr(model, "config", None), "architectures", None) or []
    return names[0] if names else None


def _probabilities(logits: torch.Tensor, labels: list[str]) -> list[dict[str, Any]]:
    probs = torch.softmax(logits.float(), dim=-1)  # (N, classes)
    best = probs.argmax(-1).tolist()
    return [{"label": labels[i], "label_id": i, "probabilities": [round(p, 6) for p in row]}
            for i, row in zip(best, probs.tolist(), strict=True)]


def _split(items: list, sizes: list[int]) -> list[list]:
    out, start = [], 0
    for n in sizes:
        out.append(items[start:start + n])
        start += n
    return out


def check_inputs(inputs: Any, max_batch: int) -> list:
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"`inputs` must be a non-empty list (one entry per sample), got "
                           f"{type(inputs).__name__}")
    if len(inputs) > max_batch:
        raise InvalidInput(f"`inputs` holds {len(inputs)} samples, this server takes at most {max_batch} per "
                           "request (--max-batch); split the request")
    return inputs


class ArrayClassifier:
    """A plain zoo classifier (compress.models): each input is a nested list of numbers with
    `model.input_shape`'s number of elements (e.g. 28x28 or 1x28x28 or 784 pixels in [0, 1])."""

    route = "predict"

    def __init__(self, model: nn.Module):
        self.model = model
        self.input_shape = tuple(model.input_shape)
        self.numel = math.prod(self.input_shape)
        self.labels = [str(i) for i in range(int(model.spec.get("num_classes", 0)))]

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        return not is_hf_model(model) and hasattr(model, "input_shape")

    @classmethod
    def from_export(cls, model: nn.Module, tokenizer=None) -> ArrayClassifier:
        return cls(model)

    def prepare(self, inputs: Any, max_batch: int) -> tuple[torch.Tensor, int]:
        rows = []
        for i, sample in enumerate(check_inputs(inputs, max_batch)):
            try:
                t = torch.as_tensor(sample, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as err:
                raise InvalidInput(f"inputs[{i}] is not a rectangular array of numbers ({err})") from None
            if t.numel() != self.numel:
                raise InvalidInput(f"inputs[{i}] has shape {list(t.shape)} ({t.numel()} values); this model "
                                   f"takes {list(self.input_shape)} ({self.numel} values) per sample")
            if not torch.isfinite(t).all():
                raise InvalidInput(f"inputs[{i}] holds NaN or infinite values")
            rows.append(t.reshape(self.input_shape))
        return torch.stack(rows), len(rows)  # (n, *input_shape)

    @torch.inference_mode()
    def warmup(self) -> None:
        self.model(torch.zeros(1, *self.input_shape))

    @torch.inference_mode()
    def run_batch(self, jobs: list) -> list[list[dict[str, Any]]]:
        x = torch.cat([job.payload for job in jobs])  # (B, *input_shape)
        preds = _probabilities(self.model(x), self.labels or [str(i) for i in range(10_000)])
        return _split(preds, [job.size for job in jobs])


class TextClassifier:
    """A transformers sequence classifier exported with its tokenizer; labels from config.id2label."""

    route = "predict"

    def __init__(self, model: nn.Module, tokenizer, *, max_length: int = 512):
        self.model, self.tokenizer = model, tokenizer
        id2label = model.config.id2label or {}
        self.labels = [str(id2label.get(i, i)) for i in range(model.config.num_labels)]
        limit = getattr(tokenizer, "model_max_length", max_length) or max_length
        self.max_length = min(max_length, limit, getattr(model.config, "max_position_embeddings", max_length))

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

        return architecture(model) in set(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values())

    @classmethod
    def from_export(cls, model: nn.Module, tokenizer=None) -> TextClassifier:
        return cls(model, needs_tokenizer(model, tokenizer))

    def prepare(self, inputs: Any, max_batch: int) -> tuple[list[str], int]:
        texts = check_inputs(inputs, max_batch)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput(f"inputs[{i}] must be a non-empty string (this model classifies text), "
                                   f"got {type(text).__name__}")
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidInput(f"inputs[{i}] has {len(text)} characters; at most {MAX_TEXT_CHARS}")
        return texts, len(texts)

    @torch.inference_mode()
    def warmup(self) -> None:
        self.model(**self.tokenizer(["warm up"], return_tensors="pt"))

    @torch.inference_mode()
    def run_batch(self, jobs: list) -> list[list[dict[str, Any]]]:
        texts = [t for job in jobs for t in job.payload]
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        logits = self.model(**enc).logits  # (B, num_labels)
        return _split(_probabilities(logits, self.labels), [job.size for job in jobs])


def needs_tokenizer(model: nn.Module, tokenizer):
    if tokenizer is None:
        raise ValueError(f"{architecture(model)} needs its tokenizer in the export folder; re-export with "
                         "export_model(model, dest, tokenizer=tokenizer)")
    return tokenizer
