"""Causal-LM metrics: perplexity, agreement/KL with a teacher, generation speed and latency.

- perplexity: exp of the token-weighted mean next-token NLL over all texts (each text tokenised on its
  own, truncated to `max_length`, right-padded; pad positions do not count).
- teacher_agreement: top-1 next-token agreement and mean KL(teacher || student) in nats over non-pad
  positions (the token-level view of Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").
- generation_speed / prefill_decode_latency: wall-clock throughput with and without the KV cache, under
  the timing protocol (compress/evaluate/timing.py: exclusive lock, fixed torch threads) after an
  untimed warm-up generation, over at least `min_tokens` new tokens (the prompt set is repeated).
- lm_metrics' size: `model_size` (compress/evaluate/system.py): logical parameters (a packed nf4 layer
  counts its unpacked values) and stored bytes including absmax scales and code maps.

All functions only call `model(...)` / `model.generate(...)`, so bitsandbytes-quantised (int8 / nf4)
and `device_map="auto"` models work too; inputs go to the device of the input embeddings.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from compress.evaluate.system import model_size
from compress.evaluate.timing import exclusive_timing
from compress.models import eval_mode


def input_device(model: nn.Module) -> torch.device:
    """Device that input ids must live on (the input embedding's, also for dispatched models)."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("tokenizer has neither a pad nor an eos token; set tokenizer.pad_token first")
    return pad


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts is empty; pass at least one text")
    return list(texts)


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into (input_ids, attention_mask), both (B, T_max) int64."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, :len(seq)] = 1
    return ids, mask


@torch.no_grad()
def sequence_nll(model: nn.Module, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> tuple[float, int]:
    """Sum of next-token NLL (nats) over positions whose target is a real token, and their count."""
    device = input_device(model)
    ids, mask = input_ids.to(device), attention_mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()       # (B, T, V)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
    valid = (mask[:, 1:] * mask[:, :-1]).bool()                              # (B, T-1)
    return nll[valid].sum().item(), int(valid.sum().item())


@torch.no_grad()
def perplexity(model: nn.Module, tokenizer, texts: list[str], *, max_length: int = 256,
               batch_size: int = 8) -> float:
    """exp(mean NLL per predicted token) over `texts`; texts shorter than 2 tokens are skipped."""
    texts = _check_texts(texts)
    if max_length < 2 or batch_size < 1:
        raise ValueError(f"need max_length >= 2 and batch_size >= 1, got {max_length}, {batch_size}")
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    encoded = [e for e in encoded if len(e) >= 2]
    if not encoded:
        raise ValueError("every text tokenises to fewer than 2 tokens; perplexity needs longer texts")
    with eval_mode(model):
        total, count = 0.0, 0
        for i in range(0, len(encoded), batch_size):
            ids, mask = right_pad(encoded[i:i + batch_size], _pad_id(tokenizer))
            nll, n = sequence_nll(model, ids, mask)
            total, count = total + nll, count + n
    return math.exp(total / count)


@torch.no_grad()
def response_perplexity(model: nn.Module, prompt_ids: list[list[int]], response_ids: list[list[int]], *,
                        batch_size: int = 8, pad_id: int = 0) -> float:
    """exp(mean NLL of response tokens given their prompt): what sequence-level KD trains for."""
    if len(prompt_ids) != len(response_ids) or not response_ids:
        raise ValueError(f"need as many prompts as responses (>= 1), got {len(prompt_ids)}, "
                         f"{len(response_ids)}")
    device = input_device(model)
    with eval_mode(model):
        total, count = 0.0, 0
        for i in range(0, len(prompt_ids), batch_size):
            pairs = list(zip(prompt_ids[i:i + batch_size], response_ids[i:i + batch_size], strict=True))
            ids, mask = right_pad([p + r for p, r in pairs], pad_id)
            target = torch.zeros_like(mask, dtype=torch.bool)                          # (B, T)
            for j, (p, r) in enumerate(pairs):
                target[j, len(p):len(p) + len(r)] = True
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
            total += nll[target[:, 1:]].sum().item()
            count += int(target[:, 1:].sum())
    if count == 0:
        raise ValueError("no response tokens to score (all responses empty or prompts empty)")
    return math.exp(total / count)


@torch.no_grad()
def teacher_agreement(student: nn.Module, teacher: nn.Module, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None, *, batch_size: int = 8) -> dict[str, float]:
    """Top-1 next-token agreement and mean KL(teacher || student) (nats) over non-pad positions."""
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids "
                         f"{tuple(input_ids.shape)}")
    same, kl_sum, count = 0, 0.0, 0
    with eval_mode(student, teacher):
        for i in range(0, len(input_ids), batch_size):
            ids, mask = input_ids[i:i + batch_size], attention_mask[i:i + batch_size]
            s_dev, t_dev = input_device(student), input_device(teacher)
            s = student(input_ids=ids.to(s_dev), attention_mask=mask.to(s_dev))
            t = teacher(input_ids=ids.to(t_dev), attention_mask=mask.to(t_dev))
            s_logits, t_logits = s.logits.float().cpu(), t.logits.float().cpu()   # (B, T, V)
            if s_logits.shape[-1] != t_logits.shape[-1]:
                raise ValueError(f"student vocabulary {s_logits.shape[-1]} != teacher vocabulary "
                                 f"{t_logits.shape[-1]}; token-level comparison needs a shared tokenizer")
            valid = mask.bool().cpu()                                               # (B, T)
            s_logits, t_logits = s_logits[valid], t_logits[valid]                  # (N, V)
            same += (s_logits.argmax(-1) == t_logits.argmax(-1)).sum().item()
            log_t, log_s = F.log_softmax(t_logits, -1), F.log_softmax(s_logits, -1)
            kl_sum += (log_t.exp() * (log_t - log_s)).sum().item()
            count += s_logits.shape[0]
    if count == 0:
        raise ValueError("attention_mask has no non-pad positions")
    return {"agreement": same / count, "kl_to_teacher": kl_sum / count}


def _generate_timed(model: nn.Module, enc: dict, max_new_tokens: int, use_cache: bool, pad_id: int,
                    device: torch.device) -> tuple[int, float]:
    _sync(device)
    start = time.perf_counter()
    out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                         use_cache=use_cache, pad_token_id=pad_id)
    _sync(device)
    return (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0], time.perf_counter() - start


@torch.no_grad()
def generation_speed(model: nn.Module, tokenizer, prompts: list[str], *, max_new_tokens: int = 32,
                     use_cache: bool = True, batch_size: int = 8, warmup: bool = True, min_tokens: int = 0,
                     threads: int | None = None) -> dict[str, float]:
    """Greedy generation throughput: exactly `max_new_tokens` per prompt (eos suppressed), left padding.

    Holds the timing lock on `threads` torch threads; one untimed warm-up generation first (`warmup`);
    the prompt set is repeated until at least `min_tokens` new tokens were timed."""
    prompts = _check_texts(prompts)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device, pad = input_device(model), _pad_id(tokenizer)
    batches = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True, padding_side="left")
        batches.append({k: v.to(device) for k, v in enc.items()})
    with eval_mode(model), exclusive_timing(threads) as used:
        if warmup:
            _generate_timed(model, batches[0], min(4, max_new_tokens), use_cache, pad, device)
        new_tokens, seconds = 0, 0.0
        while new_tokens == 0 or new_tokens < min_tokens:
            for enc in batches:
                n, dt = _generate_timed(model, enc, max_new_tokens, use_cache, pad, device)
                new_tokens, seconds = new_tokens + n, seconds + dt
    return {"tokens_per_s": new_tokens / seconds, "new_tokens": float(new_tokens), "seconds": seconds,
            "use_cache": float(use_cache), "threads": float(used)}


@torch.no_grad()
def prefill_decode_latency(model: nn.Module, input_ids: torch.Tensor, *, new_tokens: int = 16,
                           threads: int | None = None) -> dict[str, float]:
    """Time one prefill forward over `input_ids` (B, T) and then `new_tokens` greedy cached decode steps,
    after one untimed warm-up forward, holding the timing lock on `threads` torch threads."""
    if input_ids.ndim != 2 or new_tokens < 1:
        raise ValueError(f"need input_ids (B, T) and new_tokens >= 1, got {tuple(input_ids.shape)}, "
                         f"{new_tokens}")
    device = input_device(model)
    ids = input_ids.to(device)
    with eval_mode(model), exclusive_timing(threads):
        model(input_ids=ids, use_cache=True)  # warm-up: first-call allocations and lazy inits
        _sync(device)
        start = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        _sync(device)
        prefill = time.perf_counter() - start
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)       # (B, 1)
        start = time.perf_counter()
        for _ in range(new_tokens):
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(device)
        decode = time.perf_counter() - start
    return {"prefill_ms": prefill * 1e3, "decode_ms_per_token": decode * 1e3 / new_tokens}


def model_bytes(model: nn.Module) -> int:
    """Bytes of every stored tensor, absmax scales and quantization state included (`model_size`)."""
    return model_size(model).bytes


def lm_metrics(model: nn.Module, tokenizer, texts: list[str], teacher: nn.Module | None = None, *,
               max_length: int = 256, batch_size: int = 8, speed_prompts: list[str] | None = None,
               max_new_tokens: int = 16, min_tokens: int = 128, threads: int | None = None) -> dict[str, float]:
    """perplexity; `parameters` (logical), `bytes` (with scales), nonzero_params and retained_fraction;
    tokens/s with and without KV cache (warm-up, >= `min_tokens` new tokens, fixed `threads`, recorded
    as `threads`); with a teacher also agreement and kl_to_teacher on `texts`. Speed uses
    `speed_prompts` (default: the first 4 texts' starts)."""
    texts = _check_texts(texts)
    size = model_size(model).metrics()
    out = {"perplexity": perplexity(model, tokenizer, texts, max_length=max_length, batch_size=batch_size),
           "parameters": size.pop("params"), "bytes": size.pop("weight_bytes"), **size}
    prompts = speed_prompts or [t[:200] for t in texts[:4]]
    for key, cache in (("tokens_per_s", True), ("tokens_per_s_no_cache", False)):
        speed = generation_speed(model, tokenizer, prompts, max_new_tokens=max_new_tokens, use_cache=cache,
                                 min_tokens=min_tokens, threads=threads)
        out[key], out["threads"] = speed["tokens_per_s"], speed["threads"]
    if teacher is not None:
        encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
        ids, mask = right_pad(encoded, _pad_id(tokenizer))
        out.update(teacher_agreement(model, teacher, ids, mask, batch_size=batch_size))
    return out
