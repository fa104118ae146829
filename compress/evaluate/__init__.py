"""Evaluation shared by every stage: classification quality, causal-LM quality and system cost."""

from compress.evaluate.classification import (
    accuracy,
    agreement,
    classification_metrics,
    kl_to_teacher,
    predict_logits,
)
from compress.evaluate.lm import (
    generation_speed,
    lm_metrics,
    perplexity,
    prefill_decode_latency,
    response_perplexity,
    teacher_agreement,
)

__all__ = ["accuracy", "agreement", "classification_metrics", "kl_to_teacher", "predict_logits",
           "generation_speed", "lm_metrics", "perplexity", "prefill_decode_latency", "response_perplexity",
           "teacher_agreement"]

from compress.evaluate.system import (  # noqa: E402  (appended by the quantization/export area)
    estimate_bytes,
    file_bytes,
    latency,
    parameter_count,
    peak_memory,
    runtime_comparison,
    system_metrics,
    weight_bytes,
)

__all__ += ["estimate_bytes", "file_bytes", "latency", "parameter_count", "peak_memory", "runtime_comparison",
            "system_metrics", "weight_bytes"]
