"""Teacher-data generation: a causal LM answers prompts; the answers become a resumable JSONL dataset.

Seed method: sequence-level knowledge distillation (Kim & Rush 2016) trains a student on teacher outputs;
storing the teacher's top-k logits per response token also enables token-level KD (Hinton et al. 2015)
without re-running the teacher.

Dataset format (one JSON object per line, UTF-8):
    prompt_hash     sha256 of the prompt text, first 16 hex digits (the resume key)
    prompt          the instruction as given;  input_text: what the model saw (chat template applied)
    response        decoded answer (special tokens removed)
    prompt_ids      token ids of input_text;  response_ids: generated ids, ending with eos when finished
    finish          "eos" or "length"
    sample_seed     torch seed of the batch this record was sampled in
    generation      GenerateConfig.to_dict() plus the teacher's name (identical on every line)
    topk_ids, topk_logits   only when top_k_logits > 0: per response token, the teacher's k most likely
                    next-token ids and their raw (temperature-1, unprocessed) logits; lists of length
                    len(response_ids) x k. Lists keep each line self-contained so a batch append stays atomic.

Resuming: each finished batch is appended with one write + flush + fsync; a restart reads the file,
cuts a truncated last line, and skips prompts whose hash is already present.

    cfg = GenerateConfig(max_new_tokens=48, temperature=0.7, top_p=0.9, seed=0, batch_size=8, top_k_logits=16)
    path = generate_dataset(teacher, tokenizer, prompts, "data/teacher.jsonl", config=cfg)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from compress.config import CompressConfig
from compress.evaluate.lm import input_device
from compress.models import eval_mode


@dataclasses.dataclass
class GenerateConfig(CompressConfig):
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 0.9
    do_sample: bool = True
    seed: int = 0
    batch_size: int = 8
    top_k_logits: int = 0          # 0: no logits stored; k > 0: store the teacher's top-k per response token
    use_chat_template: bool = True  # only applies when the tokenizer has one

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {self.max_new_tokens}, "
                             f"{self.batch_size}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
        if self.top_k_logits < 0:
            raise ValueError(f"top_k_logits must be >= 0 (0 = none), got {self.top_k_logits}")


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def format_prompt(tokenizer, prompt: str, use_chat_template: bool = True) -> str:
    """The text the model sees: the chat template with a generation prompt when the tokenizer has one."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def read_dataset(path: str | Path, *, repair: bool = False) -> list[dict]:
    """Records of a generated dataset. A truncated last line (an interrupted append) is dropped, and with
    `repair=True` also cut from the file; a bad line anywhere else raises."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} does not exist; create it with generate_dataset()")
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1                       # bytes up to the last newline: whole lines
    records = []
    for number, line in enumerate(data[:complete].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number} is not a valid JSON record ({err}); the file is corrupt "
                             "before its last line, regenerate it") from err
    good_bytes = complete
    if repair and good_bytes < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def _append_atomic(path: Path, records: list[dict]) -> None:
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with open(path, "ab") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())


def _eos_ids(model, tokenizer) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def _generate_batch(model, tokenizer, prompts: list[str], config: GenerateConfig, seed: int,
                    meta: dict) -> list[dict]:
    texts = [format_prompt(tokenizer, p, config.use_chat_template) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    device = input_device(model)
    sampling = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p, "top_k": 0} \
        if config.do_sample else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    torch.manual_seed(seed)
    out = model.generate(input_ids=enc["input_ids"].to(device),
                         attention_mask=enc["attention_mask"].to(device),
                         max_new_tokens=config.max_new_tokens, use_cache=True, return_dict_in_generate=True,
                         output_logits=config.top_k_logits > 0, pad_token_id=tokenizer.pad_token_id,
                         **sampling)
    width = enc["input_ids"].shape[1]
    new = out.sequences[:, width:].cpu()                                           # (B, new)
    if config.top_k_logits:
        logits = torch.stack(out.logits, dim=1).float()                           # (B, new, V)
        top_vals, top_ids = logits.topk(config.top_k_logits, dim=-1)              # (B, new, k)
        top_vals, top_ids = top_vals.cpu(), top_ids.cpu()
    eos = _eos_ids(model, tokenizer)
    records = []
    for i, prompt in enumerate(prompts):
        ids = new[i].tolist()
        stop = next((j for j, t in enumerate(ids) if t in eos), None)
        ids = ids if stop is None else ids[:stop + 1]
        prompt_ids = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
        record = {"prompt_hash": prompt_hash(prompt), "prompt": prompt, "input_text": texts[i],
                  "response": tokenizer.decode(ids, skip_special_tokens=True), "prompt_ids": prompt_ids,
                  "response_ids": ids, "finish": "length" if stop is None else "eos",
                  "sample_seed": seed, "generation": meta}
        if config.top_k_logits:
            record["topk_ids"] = top_ids[i, :len(ids)].tolist()
            record["topk_logits"] = [[round(v, 4) for v in row] for row in top_vals[i, :len(ids)].tolist()]
        records.append(record)
    return records


def generate_dataset(model, tokenizer, prompts: list[str], out_path: str | Path, *,
                     config: GenerateConfig | None = None, teacher_name: str | None = None,
                     on_batch: Callable[[int, list[dict]], None] | None = None,
                     progress: bool = True) -> Path:
    """Generate teacher answers for `prompts` into the JSONL at `out_path`, resuming a previous run.

    Duplicate prompts are generated once. `on_batch(batch_index, records)` runs after each batch is on
    disk (progress hooks; tests raise from it to simulate a crash). Returns `out_path`.
    """
    config = config or GenerateConfig()
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty strings")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token first")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    name = teacher_name or getattr(model.config, "_name_or_path", "") or type(model).__name__
    meta = {**config.to_dict(), "teacher": str(name)}
    done: set[str] = set()
    if out_path.exists():
        existing = read_dataset(out_path, repair=True)
        for record in existing:
            if record.get("generation") != meta:
                raise ValueError(f"{out_path} was generated with {record['generation']}, not {meta}; "
                                 "pass the same config and teacher to resume, or a new out_path")
        done = {r["prompt_hash"] for r in existing}
    todo = list({prompt_hash(p): p for p in prompts if prompt_hash(p) not in done}.values())
    total = len({prompt_hash(p) for p in prompts})
    with eval_mode(model), tqdm(total=total, initial=total - len(todo), desc="teacher generation",
                                unit="prompt", disable=not progress) as bar:
        for index, start in enumerate(range(0, len(todo), config.batch_size)):
            batch = todo[start:start + config.batch_size]
            seed = config.seed * 1_000_003 + int(prompt_hash(batch[0]), 16) % 1_000_003
            records = _generate_batch(model, tokenizer, batch, config, seed, meta)
            _append_atomic(out_path, records)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(index, records)
    return out_path


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[str], out_path: str | Path, *, top_k: int = 8,
                max_length: int = 128, batch_size: int = 8, progress: bool = True) -> Path:
    """Teacher top-k logits over plain corpus `texts`, written (atomically, replacing `out_path`) as dataset
    records that `distill_lm` reads like generated ones: the first token is the prompt, the rest the
    response, so every later token gets the teacher's distribution (token-level KD on corpus text, as in
    Minitron's recovery). One teacher forward per text instead of one per training step."""
    if isinstance(texts, str) or not texts or top_k < 1:
        raise ValueError(f"need a non-empty list of texts and top_k >= 1, got {type(texts).__name__}, {top_k}")
    encoded = [ids for ids in (tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts)
               if len(ids) >= 2]
    if not encoded:
        raise ValueError("every text tokenises to fewer than 2 tokens; pass longer passages")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    device = input_device(model)
    meta = {"kind": "score_texts", "top_k": top_k, "max_length": max_length,
            "teacher": str(getattr(model.config, "_name_or_path", "") or type(model).__name__)}
    with eval_mode(model):
        for start in tqdm(range(0, len(encoded), batch_size), desc="teacher scoring", disable=not progress):
            chunk = encoded[start:start + batch_size]
            ids = torch.full((len(chunk), max(map(len, chunk))), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, seq in enumerate(chunk):
                ids[i, :len(seq)], mask[i, :len(seq)] = torch.tensor(seq), 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()  # (B, T, V)
            values, indices = logits.topk(top_k, dim=-1)                                         # (B, T, k)
            _append_atomic(tmp, [{"prompt_hash": prompt_hash(str(seq)), "prompt_ids": seq[:1],
                                  "response_ids": seq[1:], "topk_ids": indices[i, :len(seq) - 1].tolist(),
                                  "topk_logits": values[i, :len(seq) - 1].cpu().round(decimals=4).tolist(),
                                  "generation": meta} for i, seq in enumerate(chunk)])
    os.replace(tmp, out_path)
    return out_path
