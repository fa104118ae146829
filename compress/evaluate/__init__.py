"""Evaluation shared by every stage: classification quality, causal-LM quality and system cost."""

from compress.evaluate.classification import (
    accuracy,
    agreement,
    classification_metrics,
    kl_to_teacher,
    predict_logits,
)

__all__ = ["accuracy", "agreement", "classification_metrics", "kl_to_teacher", "predict_logits"]
