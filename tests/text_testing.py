"""Shared helpers of the text-classification tests (tests/compress/text, tests/flows): a tiny BERT
tokenizer over a written vocab file, tiny randomly initialised BertForSequenceClassification / BertModel
folders, small CSV splits whose words decide the label, a recipe shaped like flows/recipe.py builds, and
`load_outside`, which loads exports with plain transformers in a process that cannot import shrinkwrap.

A module beside tests/conftest.py (whose folder pytest puts on sys.path), so any test can import it by name."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
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


def write_model(root: Path, *, classifier: bool, **config) -> Path:
    """A tiny random BertForSequenceClassification (classifier=True) or BertModel folder with its tokenizer."""
    import torch
    from transformers import BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    tokenizer = write_tokenizer(root)
    model = (BertForSequenceClassification(tiny_config(**{"num_labels": 2, **config})) if classifier
             else BertModel(tiny_config(**config)))
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def sentence(rng: random.Random, label: str) -> str:
    words = rng.choices(WORDS["neu"], k=5) + rng.choices(WORDS[label], k=2)
    rng.shuffle(words)
    return " ".join(words)


def write_csv(path: Path, n: int, seed: int, labels=("pos", "neg"), columns=("review", "sentiment")) -> Path:
    """`n` rows of (text, label) under the header `columns`; two label words per text decide its label."""
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(n):
            label = labels[i % len(labels)]
            writer.writerow([sentence(rng, label), label][:len(columns)])
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores). Autouse in
    every module that imports it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_recipe(**sections):
    """A real `task: text_classification` recipe (flows/recipe.py) with a test latency budget."""
    from flows.recipe import Recipe

    data = {"name": "tiny-text", "task": "text_classification", "evaluate": {"latency_iters": 2, "warmup": 1}}
    data.update({k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in sections.items()})
    return Recipe.model_validate(data)


LOAD_SCRIPT = """
import importlib.util, json, sys

class NoShrinkwrap:  # an editable install puts shrinkwrap's packages on every interpreter's path: block them
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("compress", "shrinkwrap", "flows", "registry", "api"):
            raise ImportError(f"{name}: shrinkwrap is blocked in this process")

sys.meta_path.insert(0, NoShrinkwrap())
from transformers import AutoModelForSequenceClassification, pipeline
try:
    importlib.import_module("compress")
    importable = True
except ImportError:
    importable = False
for folder in sys.argv[2:]:
    m = AutoModelForSequenceClassification.from_pretrained(folder)
    out = pipeline("text-classification", model=folder)(sys.argv[1])[0]
    print(json.dumps({"folder": folder, "label": out["label"], "score": out["score"],
                      "labels": sorted(m.config.label2id),
                      "linear": type(m.bert.encoder.layer[0].intermediate.dense).__name__,
                      "shrinkwrap": importable or any(k.startswith(("compress", "shrinkwrap")) for k in sys.modules)}))
"""


def load_outside(exports: list[Path], text: str, cwd: Path) -> list[dict]:
    """Load each export with plain transformers (from_pretrained and pipeline) in a subprocess where
    shrinkwrap cannot be imported: isolated (-I: no PYTHONPATH, no cwd on sys.path), run outside the
    repository, and with shrinkwrap's top-level packages blocked (an editable install would otherwise
    expose them through site-packages). Returns one dict per export; "shrinkwrap" is True if shrinkwrap
    was importable or imported."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1",
                                                                      "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-I", "-c", LOAD_SCRIPT, text, *map(str, exports)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
