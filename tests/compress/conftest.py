"""Fixtures for the LLM and task tests: the real SmolLM2 tokenizer (cached once under SHRINKWRAP_CACHE_DIR) and
tiny random Llama models that share its 49,152-token vocabulary."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from compress.llm.teacher import load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer("smollm2")


def tiny_llama(
    tokenizer, *, layers: int = 2, hidden: int = 32, seed: int = 0, tie: bool = False
) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tie,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper than the 0.02-std init, so the teacher has a distribution worth copying;
        model.model.embed_tokens.weight.normal_(0, 1.0)  # untied: a tied head just repeats the last token
        if not tie:
            model.lm_head.weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="session")
def make_tiny(tokenizer):
    """Factory: make_tiny(layers=2, hidden=32, seed=0, tie=False) -> a tiny random Llama with the real
    vocabulary."""
    return lambda **kw: tiny_llama(tokenizer, **kw)


@pytest.fixture(scope="session")
def tiny_teacher(tokenizer):
    return tiny_llama(tokenizer, layers=2, hidden=32, seed=0)
