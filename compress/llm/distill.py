"""Distil a causal-LM teacher into a smaller student with a shared tokenizer.

loss = (1 - kd_weight) * CE + kd_weight * T^2 * KD, over response tokens only (prompt tokens masked):
- CE: sequence-level KD (Kim & Rush 2016), next-token cross-entropy on the teacher's sampled responses;
- KD: token-level KD (Hinton et al. 2015), KL(teacher_T || student_T) at temperature T, either on the
  teacher's full distribution (a live `teacher`, kd_source="teacher") or on the top-k logits stored by
  `generate_dataset` (kd_source="topk"): p = softmax(topk_logits / T) renormalised over the k ids, and
  KD = sum_k p_k (log p_k - log q_k) with q the student's full-vocabulary softmax at T (>= 0, zero iff
  the student puts exactly p on those ids).
Records with a "text" field (raw corpus, no prompt) train plain language modelling on every token, which
gives the no-teacher baseline with kd_weight=0.

    report = distill_lm(student, tokenizer, "teacher.jsonl", LMDistillConfig(max_steps=100, kd_weight=0.5))
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from compress.config import CompressConfig
from compress.evaluate.lm import input_device
from compress.llm.generate import format_prompt, read_dataset

IGNORE = -100


@dataclasses.dataclass
class LMDistillConfig(CompressConfig):
    epochs: int = 1
    max_steps: int | None = None   # optimizer steps; when set it overrides epochs
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 8
    grad_accum: int = 1            # micro-batches per optimizer step
    temperature: float = 2.0
    kd_weight: float = 0.5         # alpha: 0 = pure sequence-level CE, 1 = pure token-level KD
    kd_source: Literal["auto", "topk", "teacher", "none"] = "auto"  # auto: teacher if given, else top-k
    max_length: int = 256
    grad_clip: float = 1.0
    seed: int = 0
    bf16: bool = True              # bf16 autocast, used on CUDA only

    def __post_init__(self):
        if self.epochs < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError(f"need epochs >= 1 and max_steps None or >= 1, got {self.epochs}, "
                             f"{self.max_steps}")
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_length < 2:
            raise ValueError(f"need batch_size, grad_accum >= 1 and max_length >= 2, got {self.batch_size}, "
                             f"{self.grad_accum}, {self.max_length}")
        if self.lr <= 0 or self.temperature <= 0:
            raise ValueError(f"lr and temperature must be > 0, got {self.lr}, {self.temperature}")
        if not 0 <= self.kd_weight <= 1:
            raise ValueError(f"kd_weight mixes CE and KD, so it must be in [0, 1], got {self.kd_weight}")
        if self.kd_source not in ("auto", "topk", "teacher", "none"):
            raise ValueError(f"kd_source must be auto, topk, teacher or none, got {self.kd_source!r}")


def kd_loss_full(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """T^2 * mean over N positions of KL(softmax(t/T) || softmax(s/T)); both (N, V)."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return temperature ** 2 * (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def kd_loss_topk(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logits: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """T^2 * mean over N of sum_k p_k (log p_k - log q_k); student (N, V), teacher ids/logits (N, k)."""
    log_p = F.log_softmax(topk_logits.float() / temperature, dim=-1)                       # (N, k)
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, topk_ids)  # (N, k)
    return temperature ** 2 * (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def _example(record: dict, tokenizer, max_length: int) -> dict:
    """Token ids, labels (IGNORE on prompt) and per-token top-k for one dataset record."""
    if "text" in record:
        ids = tokenizer(record["text"])["input_ids"][:max_length]
        return {"ids": ids, "labels": list(ids), "topk": None}
    prompt = record.get("prompt_ids")
    response = record.get("response_ids")
    if prompt is None or response is None:
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("response"), str):
            raise ValueError(f"a record needs 'text', or 'prompt' and 'response', got keys {sorted(record)}")
        prompt = tokenizer(format_prompt(tokenizer, record["prompt"]), add_special_tokens=False)["input_ids"]
        response = tokenizer(record["response"], add_special_tokens=False)["input_ids"]
        response = response + [tokenizer.eos_token_id]
    topk = (record["topk_ids"], record["topk_logits"]) if "topk_ids" in record else None
    keep_prompt = max(1, min(len(prompt), max_length - len(response)))  # cut the prompt from the left
    prompt = prompt[-keep_prompt:]
    response = response[:max_length - len(prompt)]
    if topk is not None:
        topk = (topk[0][:len(response)], topk[1][:len(response)])
    return {"ids": prompt + response, "labels": [IGNORE] * len(prompt) + response, "topk": topk,
            "prompt_len": len(prompt)}


def _collate(examples: list[dict], pad_id: int, k: int) -> dict[str, torch.Tensor]:
    width = max(len(e["ids"]) for e in examples)
    batch = {"input_ids": torch.full((len(examples), width), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
             "labels": torch.full((len(examples), width), IGNORE, dtype=torch.long)}
    if k:  # row p holds the teacher's distribution for the token at position p
        batch["topk_ids"] = torch.zeros((len(examples), width, k), dtype=torch.long)
        batch["topk_logits"] = torch.zeros((len(examples), width, k))
    for i, e in enumerate(examples):
        n = len(e["ids"])
        batch["input_ids"][i, :n] = torch.tensor(e["ids"])
        batch["attention_mask"][i, :n] = 1
        batch["labels"][i, :n] = torch.tensor(e["labels"])
        if k and e["topk"] is not None and e["topk"][0]:
            start, rows = e["prompt_len"], len(e["topk"][0])
            batch["topk_ids"][i, start:start + rows] = torch.tensor(e["topk"][0])
            batch["topk_logits"][i, start:start + rows] = torch.tensor(e["topk"][1])
    return batch


def _kd_source(config: LMDistillConfig, teacher, k: int) -> str:
    source = config.kd_source
    if source == "auto":
        source = "teacher" if teacher is not None else "topk" if k else "none"
    if source == "teacher" and teacher is None:
        raise ValueError("kd_source='teacher' needs teacher=...; pass the teacher model or use 'topk'")
    if source == "topk" and not k:
        raise ValueError("kd_source='topk' needs a dataset generated with top_k_logits > 0")
    if source == "none" and config.kd_weight > 0:
        raise ValueError(f"kd_weight={config.kd_weight} but there is no KD signal (no teacher, no top-k "
                         "logits in the dataset); pass teacher=..., or set kd_weight=0")
    return source


def _logits_at(model, ids: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Next-token logits (N, V) only where `valid` (B, L-1): the LM head runs on loss positions only,
    which matters because a 49k-vocabulary head dominates a small student's compute."""
    head = model.get_output_embeddings()
    base = getattr(model, "model", None)
    if head is None or base is None or model.config.model_type not in ("llama", "mistral", "qwen2"):
        return model(input_ids=ids, attention_mask=mask).logits[:, :-1][valid]
    hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]    # (B, L-1, H)
    return head(hidden[valid])                                                       # (N, V)


def _step_losses(student, teacher, batch: dict, source: str, config: LMDistillConfig):
    device = input_device(student)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    targets = batch["labels"][:, 1:].to(device)                                      # (B, L-1)
    valid = targets != IGNORE
    s = _logits_at(student, ids, mask, valid).float()                                # (N, V)
    ce = F.cross_entropy(s, targets[valid])
    if source == "teacher":
        with torch.no_grad():
            t_dev = input_device(teacher)
            t = _logits_at(teacher, ids.to(t_dev), mask.to(t_dev), valid.to(t_dev))
        kd = kd_loss_full(s, t.to(device), config.temperature)
    elif source == "topk":
        kd = kd_loss_topk(s, batch["topk_ids"][:, 1:].to(device)[valid],
                          batch["topk_logits"][:, 1:].to(device)[valid], config.temperature)
    else:
        kd = torch.zeros((), device=device)
    return (1 - config.kd_weight) * ce + config.kd_weight * kd, ce, kd, int(valid.sum())


def distill_lm(student, tokenizer, dataset_path, config: LMDistillConfig | None = None, teacher=None, *,
               progress: bool = True) -> dict:
    """Train `student` in place on a generated (or raw-text, or `score_texts`) JSONL dataset, or on a list
    of them (records pooled); returns a report dict with steps, tokens, seconds, per-step losses and the
    config. Only parameters with requires_grad train (freeze the embeddings to save a third of the step)."""
    config = config or LMDistillConfig()
    paths = [dataset_path] if isinstance(dataset_path, (str, Path)) else list(dataset_path)
    records = [r for path in paths for r in read_dataset(path)]
    if not records:
        raise ValueError(f"dataset {dataset_path} is empty; generate it first")
    examples = [e for e in (_example(r, tokenizer, config.max_length) for r in records) if len(e["ids"]) >= 2]
    widths = {len(e["topk"][0][0]) for e in examples if e["topk"] and e["topk"][0]}
    if len(widths) > 1:
        raise ValueError(f"the datasets store top-k logits of different widths {sorted(widths)}; generate and "
                         "score them with the same top_k_logits")
    k = max(widths, default=0)
    source = _kd_source(config, teacher, k)
    k = k if source == "topk" else 0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    per_step = config.batch_size * config.grad_accum
    total = config.max_steps or config.epochs * math.ceil(len(examples) / per_step)
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    def lr_factor(step: int) -> float:  # linear warmup, then linear decay to 10%
        return min(1.0, (step + 1) / (config.warmup_steps + 1)) * max(0.1, 1 - step / total)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    device = input_device(student)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda")
    order: list[int] = []
    losses, ces, kds, tokens = [], [], [], 0
    student.train()
    if teacher is not None:
        teacher.eval()
    start = time.perf_counter()
    for _ in tqdm(range(total), desc="distill", unit="step", disable=not progress):
        optimizer.zero_grad(set_to_none=True)
        step_loss = step_ce = step_kd = 0.0
        for _ in range(config.grad_accum):
            if len(order) < config.batch_size:
                order += torch.randperm(len(examples), generator=gen).tolist()
            chunk, order = order[:config.batch_size], order[config.batch_size:]
            batch = _collate([examples[i] for i in chunk], pad_id, k)
            with autocast:
                loss, ce, kd, n = _step_losses(student, teacher, batch, source, config)
            (loss / config.grad_accum).backward()
            step_loss += loss.item() / config.grad_accum
            step_ce += ce.item() / config.grad_accum
            step_kd += kd.item() / config.grad_accum
            tokens += n
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(step_loss)
        ces.append(step_ce)
        kds.append(step_kd)
    student.eval()
    return {"steps": total, "examples": len(examples), "tokens": tokens, "kd_source": source,
            "seconds": time.perf_counter() - start, "losses": losses, "ce": ces, "kd": kds,
            "loss_first": losses[0], "loss_last": losses[-1], "config": config.to_dict()}
