"""Batched generation for causal LMs: the requests of one batch decode together with the KV cache on.

Static batching (the issue allows it): the prompts of a batch are left-padded to one width, prefilled in
one forward (position ids count real tokens only, so padding does not shift them), then decoded one token
per step for the whole batch. Each row stops on its own: an end-of-sequence token, its own `max_tokens`,
one of its own `stop` strings (cut from the text, as OpenAI does), or its request going away (timeout,
disconnect). Finished rows leave the batch and the KV cache (`batch_select_indices`), so a long request
does not make the short ones of its batch pay for its steps. Greedy at temperature 0, else temperature and
top-p (nucleus) sampling, seeded per request when a seed is given.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from torch import nn

from api.serving.predictors import InvalidInput, architecture, needs_tokenizer

MAX_TOKENS_LIMIT = 1024
MAX_STOPS = 4  # as OpenAI


def _cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@dataclasses.dataclass
class GenItem:
    prompt_ids: list[int]
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


class _Idle:
    cancelled = False  # the job of a warm-up row


@dataclasses.dataclass
class _Row:
    item: GenItem
    job: Any
    tokens: list[int] = dataclasses.field(default_factory=list)
    text: str | None = None
    finish: str | None = None
    generator: torch.Generator | None = None


class CausalLM:
    route = "completions"

    def __init__(self, model: nn.Module, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = getattr(model.generation_config, "eos_token_id", None)
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            self.eos.add(tokenizer.eos_token_id)
        self.context = int(getattr(model.config, "max_position_embeddings", 2048))
        # transformers 5.2x renamed `past_key_values` to `cache` (the old name warns, then goes in 5.40)
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        # the prefill needs the last position's logits only: (B, T, vocab) would cost T times the lm_head
        self.last_logits = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @classmethod
    def accepts(cls, model: nn.Module) -> bool:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        return architecture(model) in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())

    @classmethod
    def from_export(cls, model: nn.Module, tokenizer=None) -> CausalLM:
        return cls(model, needs_tokenizer(model, tokenizer))

    # -- validation (event loop) ----------------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidInput("this model's tokenizer has no chat template; use /v1/completions with a prompt")
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare_prompts(self, prompts: list[str], *, max_tokens: int, stop: list[str], temperature: float,
                        top_p: float, seed: int | None, special_tokens: bool = True) -> tuple[list[GenItem], int]:
        if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise InvalidInput(f"max_tokens must be in 1..{MAX_TOKENS_LIMIT}, got {max_tokens}")
        if len(stop) > MAX_STOPS or not all(isinstance(s, str) and s for s in stop):
            raise InvalidInput(f"stop must be up to {MAX_STOPS} non-empty strings, got {stop!r}")
        items = []
        for i, prompt in enumerate(prompts):
            ids = self.tokenizer(prompt, add_special_tokens=special_tokens)["input_ids"]
            if not ids:
                raise InvalidInput(f"prompt {i} is empty after tokenization; send some text")
            if len(ids) + max_tokens > self.context:
                raise InvalidInput(f"prompt {i} has {len(ids)} tokens; with max_tokens={max_tokens} that exceeds "
                                   f"the model's context of {self.context}; shorten it or lower max_tokens")
            items.append(GenItem(ids, max_tokens, tuple(stop), temperature, top_p, seed))
        return items, len(items)

    # -- the batch (worker thread) --------------------------------------------------------------
    def warmup(self) -> None:
        ids = self.tokenizer("Hello", add_special_tokens=True)["input_ids"] or [self.pad_id]
        self._generate([_Row(GenItem(ids, 2), _Idle())])

    @torch.inference_mode()
    def run_batch(self, jobs: list) -> list[list[dict[str, Any]]]:
        rows = [_Row(item, job) for job in jobs for item in job.payload]
        for row in rows:
            if row.item.seed is not None and row.item.temperature > 0:
                row.generator = torch.Generator().manual_seed(row.item.seed)
        self._generate(rows)
        out: dict[int, list[dict[str, Any]]] = {id(job): [] for job in jobs}
        for row in rows:
            out[id(row.job)].append({"text": row.text or "", "finish_reason": row.finish or "length",
                                     "prompt_tokens": len(row.item.prompt_ids),
                                     "completion_tokens": len(row.tokens)})
        return [out[id(job)] for job in jobs]

    def _prefill(self, rows: list[_Row]):
        width = max(len(r.item.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)      # (B, T)
        mask = torch.zeros((len(rows), width), dtype=torch.long)                # (B, T)
        for i, row in enumerate(rows):
            n = len(row.item.prompt_ids)
            ids[i, width - n:] = torch.tensor(row.item.prompt_ids)
            mask[i, width - n:] = 1
        positions = (mask.cumsum(-1) - 1).clamp_min(0)                           # (B, T)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **self.last_logits)
        return _cache(out), out.logits[:, -1], mask, positions[:, -1:]

    def _generate(self, rows: list[_Row]) -> None:
        past, logits, mask, position = self._prefill(rows)
        live = list(range(len(rows)))  # indices into rows of the batch's current members
        while True:
            tokens = self._pick(logits, [rows[i] for i in live])                # (b,)
            keep = [k for k, i in enumerate(live) if not self._advance(rows[i], int(tokens[k]))]
            if not keep:
                return
            if len(keep) < len(live):
                index = torch.tensor(keep)
                past.batch_select_indices(index)
                tokens, mask, position = tokens[index], mask[index], position[index]
                live = [live[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)      # (b, T + 1)
            position = position + 1                                             # (b, 1)
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=position,
                             use_cache=True, **{self.cache_arg: past})
            past, logits = _cache(out), out.logits[:, -1]                       # (b, V)

    def _advance(self, row: _Row, token: int) -> bool:
        """Append `token` to `row`; True when the row is finished."""
        if row.job.cancelled:
            row.finish = "cancelled"
            return True
        if token in self.eos:
            row.finish = "stop"
        else:
            row.tokens.append(token)
        if row.item.stop:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            cut = min((text.find(s) for s in row.item.stop if s in text), default=-1)
            if cut >= 0:
                row.text, row.finish = text[:cut], "stop"
                return True
        if row.finish is None and len(row.tokens) >= row.item.max_tokens:
            row.finish = "length"
        if row.finish is not None:
            row.text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            return True
        return False

    @staticmethod
    def _pick(logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Next token per row: argmax at temperature 0, else a top-p sample at the row's temperature."""
        greedy = logits.argmax(-1)                                              # (b,)
        for k, row in enumerate(rows):
            if row.item.temperature <= 0:
                continue
            probs = torch.softmax(logits[k].float() / row.item.temperature, dim=-1)  # (V,)
            if row.item.top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                outside = sorted_p.cumsum(0) - sorted_p > row.item.top_p
                probs = probs.scatter(0, order[outside], 0.0)
            greedy[k] = torch.multinomial(probs, 1, generator=row.generator)[0]
        return greedy
