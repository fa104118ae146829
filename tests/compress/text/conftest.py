"""Fixtures for the text-classification tests: a tiny BERT tokenizer over a written vocab file, a tiny
randomly initialised BertForSequenceClassification / BertModel saved as folders, small CSV splits, and a
recipe object shaped like the one flows/recipe.py builds."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

WORDS = {"pos": ["good", "great", "happy", "joy", "love", "fine"],
         "neg": ["bad", "sad", "awful", "hate", "poor", "grim"],
         "neu": ["the", "a", "and", "of", "to", "it", "was", "day", "film", "book"]}


def write_tokenizer(root: Path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for ws in WORDS.values() for w in ws})]
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(root)
    return tokenizer


def tiny_config(**kw):
    from transformers import BertConfig

    # widths of 64: bitsandbytes' CPU 4-bit kernels work in blocks of 64 inputs
    return BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=64, **kw)


def write_model(root: Path, *, classifier: bool) -> Path:
    import torch
    from transformers import BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    tokenizer = write_tokenizer(root)
    model = (BertForSequenceClassification(tiny_config(num_labels=2)) if classifier
             else BertModel(tiny_config()))
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def sentence(rng: random.Random, label: str) -> str:
    words = rng.choices(WORDS["neu"], k=5) + rng.choices(WORDS[label], k=2)
    rng.shuffle(words)
    return " ".join(words)


def write_csv(path: Path, n: int, seed: int, labels=("pos", "neg")) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i in range(n):
            label = labels[i % len(labels)]
            writer.writerow([sentence(rng, label), label])
    return path


def make_recipe(**sections):
    """A real `task: text_classification` recipe (flows/recipe.py) with a test latency budget."""
    from flows.recipe import Recipe

    data = {"name": "tiny-text", "task": "text_classification", "evaluate": {"latency_iters": 2, "warmup": 1}}
    data.update({k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in sections.items()})
    return Recipe.model_validate(data)


@pytest.fixture
def csv_data(tmp_path):
    return write_csv(tmp_path / "train.csv", 64, 0), write_csv(tmp_path / "test.csv", 24, 1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
