"""Write the sample user CSVs of recipes/text_csv_example.yaml: short seeded product reviews with a
`review` column and a string `sentiment` column (negative / neutral / positive).

Each review mixes filler words with one to three opinion words; 10% of the labels are flipped so the
task is not perfectly separable. Usage: python recipes/make_sample_text_csv.py [OUT_DIR] [--n-train N]
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

OPINION = {"positive": ["great", "lovely", "excellent", "works well", "very happy", "recommend it", "sturdy"],
           "negative": ["broke", "awful", "waste of money", "disappointed", "returned it", "flimsy", "too slow"],
           "neutral": ["arrived on time", "as described", "it is fine", "average", "does the job", "okay"]}
FILLER = ["the", "box", "this", "kettle", "lamp", "charger", "bought", "for", "my", "kitchen", "last", "week",
          "after", "using", "it", "daily", "and"]


def review(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 6) + rng.sample(OPINION[label], rng.randint(1, 3))
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def write_split(path: Path, n: int, rng: random.Random) -> Path:
    labels = sorted(OPINION)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for i in range(n):
            label = labels[i % len(labels)]
            shown = rng.choice(labels) if rng.random() < 0.1 else label
            writer.writerow([review(rng, label), shown])
    return path


def make_sample_text_csv(out_dir: Path, *, n_train: int = 600, n_test: int = 150, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_split(out_dir / "reviews_train.csv", n_train, rng),
            write_split(out_dir / "reviews_test.csv", n_test, rng)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=150)
    args = parser.parse_args()
    for path in make_sample_text_csv(args.out_dir, n_train=args.n_train, n_test=args.n_test):
        print(path)
