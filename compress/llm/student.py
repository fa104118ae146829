"""Student construction: a smaller LlamaForCausalLM that shares the teacher's tokenizer and vocabulary.

Why: token-level KD compares next-token distributions, so student and teacher must share a vocabulary.

The default student (`pruned_student`) is the teacher pruned structurally (Minitron, Muralidharan et al. 2024:
MLP channels and heads ranked by calibration activations, compress/prune/structured_llm.py), then recovered
by `distill_lm` from the unpruned teacher. On SmolLM2-135M that starts close to the teacher, whereas cutting
depth does not (bench/results/llm_prune.md):

    calibration = calibration_ids(tokenizer, passages, max_length=128)
    student = pruned_student(teacher, calibration, StructuredLLMPruneConfig(target=0.1))

The older option, `make_student`, keeps the teacher's config and changes depth/width. With
`init_from_teacher=True` it copies
the teacher's embeddings, final norm and a subset of its decoder layers (layer dropping as in
DistilBERT, Sanh et al. 2019, and "Shortened LLaMA", Kim et al. 2024), which needs the same width.
The default subset is the first `num_layers` layers: on SmolLM2-135M a 2-layer student from layers
[0, 1] starts at 18.8 nats/token on teacher text, from [0, 29] (evenly spaced) at 70 (random init: ~11).

    student = make_student(teacher, num_layers=2, init_from_teacher=True)         # 576 wide, layers 0, 1
    student = make_student(teacher, num_layers=6, hidden_size=384, intermediate_size=1024,
                           num_attention_heads=6, num_key_value_heads=2)           # random init, ~28M
"""

from __future__ import annotations

import copy

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from compress.prune.structured_llm import StructuredLLMPruneConfig, structured_llm_prune_

_WIDTH_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """`keep` indices spread over 0..total-1, always including the first and the last layer."""
    if not 1 <= keep <= total:
        raise ValueError(f"keep must be in 1..{total} (the teacher's layer count), got {keep}")
    if keep == 1:
        return [0]
    return [round(i * (total - 1) / (keep - 1)) for i in range(keep)]


def student_config(teacher_config: LlamaConfig, *, num_layers: int, hidden_size: int | None = None,
                   intermediate_size: int | None = None, num_attention_heads: int | None = None,
                   num_key_value_heads: int | None = None) -> LlamaConfig:
    """The teacher's Llama config with fewer layers and optionally narrower; vocabulary and special
    token ids unchanged. head_dim follows hidden_size // num_attention_heads when width changes."""
    base = teacher_config.to_dict()
    for key in ("quantization_config", "_name_or_path", "architectures", "auto_map"):
        base.pop(key, None)
    hidden = hidden_size or base["hidden_size"]
    heads = num_attention_heads or base["num_attention_heads"]
    kv_heads = num_key_value_heads or min(base.get("num_key_value_heads") or heads, heads)
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden_size {hidden} must divide by num_attention_heads {heads}, and heads by "
                         f"num_key_value_heads {kv_heads}; pick compatible head counts")
    narrower = (hidden, heads) != (base["hidden_size"], base["num_attention_heads"])
    base.update(num_hidden_layers=num_layers, hidden_size=hidden, num_attention_heads=heads,
                num_key_value_heads=kv_heads,
                intermediate_size=intermediate_size or base["intermediate_size"],
                head_dim=hidden // heads if narrower else base.get("head_dim") or hidden // heads)
    config = LlamaConfig(**base)
    config.architectures = ["LlamaForCausalLM"]
    return config


def make_student(teacher, *, num_layers: int, hidden_size: int | None = None,
                 intermediate_size: int | None = None, num_attention_heads: int | None = None,
                 num_key_value_heads: int | None = None, init_from_teacher: bool = False,
                 layer_indices: list[int] | None = None, seed: int = 0) -> LlamaForCausalLM:
    """A float32 student on CPU. `init_from_teacher` copies embeddings, norm, lm_head and the decoder
    layers `layer_indices` (default: the first `num_layers`) from `teacher`; widths must then match."""
    if getattr(teacher.config, "model_type", None) != "llama":
        raise ValueError(f"make_student builds Llama students from a Llama teacher; got model_type "
                         f"{getattr(teacher.config, 'model_type', None)!r}. Use any HF causal LM with the "
                         "same vocabulary as the student instead")
    config = student_config(teacher.config, num_layers=num_layers, hidden_size=hidden_size,
                            intermediate_size=intermediate_size, num_attention_heads=num_attention_heads,
                            num_key_value_heads=num_key_value_heads)
    torch.manual_seed(seed)
    student = LlamaForCausalLM(config).float()
    if init_from_teacher:
        changed = [k for k in _WIDTH_KEYS if getattr(config, k) != getattr(teacher.config, k)]
        if changed:
            raise ValueError(f"init_from_teacher copies whole layers, so widths must match the teacher; "
                             f"{changed} differ. Drop the width arguments or set init_from_teacher=False")
        teacher_layers = teacher.config.num_hidden_layers
        indices = list(layer_indices) if layer_indices is not None else list(range(num_layers))
        if len(indices) != num_layers or not all(0 <= i < teacher_layers for i in indices):
            raise ValueError(f"layer_indices must list {num_layers} layers in 0..{teacher_layers - 1}, "
                             f"got {indices}")
        _copy_from_teacher(student, teacher, indices)
        student.config.teacher_layers = list(indices)  # recorded in the saved config
    return student


@torch.no_grad()
def _copy_from_teacher(student: LlamaForCausalLM, teacher, indices: list[int]) -> None:
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    for key in s_state:
        source = key
        if key.startswith("model.layers."):
            parts = key.split(".")
            parts[2] = str(indices[int(parts[2])])
            source = ".".join(parts)
        if source not in t_state:
            raise RuntimeError(f"teacher has no tensor {source!r} for student {key!r}; is it a Llama model?")
        tensor = t_state[source]
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"teacher tensor {source} is {tensor.dtype} (quantised?); load the teacher in "
                             "float to initialise a student from it")
        s_state[key].copy_(tensor.to(s_state[key].device, torch.float32))
    student.tie_weights()


def calibration_ids(tokenizer, texts: list[str], *, max_length: int = 128) -> list[torch.Tensor]:
    """One (1, T) input-id tensor per text (truncated to `max_length`), the calibration format of
    `pruned_student` / structured-llm; texts of fewer than 2 tokens are skipped."""
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings (calibration passages)")
    ids = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    out = [torch.tensor([i], dtype=torch.long) for i in ids if len(i) >= 2]
    if not out:
        raise ValueError("every calibration text tokenises to fewer than 2 tokens; pass longer passages")
    return out


def pruned_student(teacher, calibration: list[torch.Tensor] | None,
                   config: StructuredLLMPruneConfig | None = None) -> LlamaForCausalLM:
    """A float32 copy of `teacher` with `config.target` of its non-embedding parameters removed
    structurally (the teacher is left untouched). The pruning report's numbers are recorded in
    `student.config.pruning` (saved with the model)."""
    config = config or StructuredLLMPruneConfig()
    student = copy.deepcopy(teacher).float()
    report = structured_llm_prune_(student, config, calibration)
    student.config.pruning = {**report.config, "params_before": report.params_before,
                              "effective_params": report.effective_params, "kept_layers": report.kept_layers}
    student.eval()
    return student
