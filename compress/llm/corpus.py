"""Prompt corpora for teacher-data generation: Shakespeare, the King James Bible or a user JSONL.

Seed method (sequence-level KD, Kim & Rush 2016, "Sequence-Level Knowledge Distillation"): a teacher
answers instruction prompts and a smaller student learns from the answers. The prompts here come from
offline text: a seeded sample of passages (a few consecutive lines of a Shakespeare play, or a few
consecutive KJV verses read through the Debian `bible` CLI), each wrapped in an instruction template.

    prompts = make_prompts("shakespeare", 200, seed=0)      # list[str]
    prompts = make_prompts("kjv", 200, seed=0)
    prompts = make_prompts("my_prompts.jsonl", 200)         # lines of {"prompt": "..."}
    texts = corpus_passages("shakespeare", 200, seed=1)     # raw passages (the no-teacher baseline)
"""

from __future__ import annotations

import functools
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

from compress import assets

SOURCES = ("shakespeare", "kjv")
TEMPLATES = (
    "Explain in plain modern English what this passage says:\n\n{passage}",
    "Summarise this passage in one or two sentences:\n\n{passage}",
    "Who is speaking or acting in this passage, and what do they want?\n\n{passage}",
    "Continue this passage in the same style for a few lines:\n\n{passage}",
    "What is the main idea of this passage?\n\n{passage}",
)
_BOILERPLATE = re.compile(r"gutenberg|copyright|www\.|http|electronic|e-?text|license", re.IGNORECASE)


@functools.cache
def _shakespeare_lines(path: Path) -> tuple[str, ...]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return tuple(line.rstrip() for line in text.splitlines())


def _shakespeare_passage(rng: random.Random, files: list[Path], min_chars: int, max_chars: int) -> str | None:
    lines = _shakespeare_lines(rng.choice(files))
    start = rng.randrange(max(1, len(lines) - 1))
    while start < len(lines) - 1 and lines[start].strip():  # begin at a speech / paragraph boundary
        start += 1
    picked: list[str] = []
    for line in lines[start:]:
        if sum(len(x) + 1 for x in picked) + len(line) > max_chars:
            break
        picked.append(line)
    passage = "\n".join(picked).strip()
    if len(passage) < min_chars or _BOILERPLATE.search(passage):
        return None
    return re.sub(r"\n{3,}", "\n\n", passage)


@functools.lru_cache(maxsize=1)
def kjv_verses() -> tuple[tuple[str, str], ...]:
    """All KJV verses as (reference, text), read once through the `bible` CLI (package bible-kjv)."""
    if shutil.which("bible") is None or not assets.kjv_available():
        raise assets.AssetNotFound("the KJV text needs the Debian `bible` CLI and /usr/lib/bible.data; "
                                   "install them with: sudo apt-get install bible-kjv")
    out = subprocess.run(["bible", "-l2000", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    verses, chapter = [], ""
    for line in out.splitlines():
        match = re.match(r"^\s+(\d+) (.*)$", line)
        if match and chapter:
            verses.append((f"{chapter}:{match.group(1)}", match.group(2).strip()))
        elif line.strip():
            chapter = line.strip()
    if len(verses) < 1000:
        raise RuntimeError(f"the `bible` CLI returned only {len(verses)} verses; "
                           "is bible-kjv installed fully?")
    return tuple(verses)


def _kjv_passage(rng: random.Random, min_chars: int, max_chars: int) -> str | None:
    verses = kjv_verses()
    start = rng.randrange(len(verses))
    book = verses[start][0].rsplit(" ", 1)[0]
    picked: list[str] = []
    for ref, text in verses[start:]:
        if ref.rsplit(" ", 1)[0] != book or sum(len(x) + 1 for x in picked) + len(text) > max_chars:
            break
        picked.append(text)
    passage = " ".join(picked)
    return passage if len(passage) >= min_chars else None


def corpus_passages(source: str, n: int, *, seed: int = 0, min_chars: int = 200,
                    max_chars: int = 500) -> list[str]:
    """`n` distinct passages of `min_chars`..`max_chars` characters from "shakespeare" or "kjv"."""
    if source not in SOURCES:
        raise ValueError(f"corpus source must be one of {SOURCES} (or a .jsonl path for prompts), "
                         f"got {source!r}")
    if n < 1 or not 0 < min_chars <= max_chars:
        raise ValueError(f"need n >= 1 and 0 < min_chars <= max_chars, got n={n}, {min_chars}, {max_chars}")
    rng = random.Random(seed)
    files = assets.shakespeare_texts() if source == "shakespeare" else []
    found: dict[str, None] = {}
    for _ in range(n * 50):
        passage = (_shakespeare_passage(rng, files, min_chars, max_chars) if files
                   else _kjv_passage(rng, min_chars, max_chars))
        if passage:
            found[passage] = None
            if len(found) == n:
                return list(found)
    raise RuntimeError(f"found only {len(found)} of {n} passages of {min_chars}..{max_chars} characters in "
                       f"{source}; lower n or widen the length range")


def read_jsonl_prompts(path: str | Path) -> list[str]:
    """Prompts from a JSONL file whose lines are objects with a non-empty string "prompt"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist; "
                                "pass a JSONL file of {\"prompt\": ...} lines")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}); each line must be "
                             "{\"prompt\": \"...\"}") from err
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"]:
            raise ValueError(f"{path}:{number} has no non-empty string \"prompt\"; got {line[:80]!r}")
        prompts.append(record["prompt"])
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def make_prompts(source: str | Path, n: int, *, seed: int = 0, min_chars: int = 200,
                 max_chars: int = 500) -> list[str]:
    """`n` instruction prompts: passages of "shakespeare"/"kjv" in seeded templates, or a JSONL file's
    prompts (a seeded sample of `n` when it holds more)."""
    if str(source) not in SOURCES:
        prompts = read_jsonl_prompts(source)
        return prompts if n >= len(prompts) else random.Random(seed).sample(prompts, n)
    passages = corpus_passages(str(source), n, seed=seed, min_chars=min_chars, max_chars=max_chars)
    rng = random.Random(seed + 1)
    return [rng.choice(TEMPLATES).format(passage=p) for p in passages]
