"""Write the sample user dataset of recipes/npz_example.yaml: a seeded synthetic 4-class problem.

x: 20-dim vectors drawn around 4 random class centres (unit noise), float32; y: int64 class ids.
Usage: python recipes/make_sample_npz.py [OUT.npz] [--n-train N] [--n-test N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make_sample_npz(out: Path, *, n_train: int = 2000, n_test: int = 500, dim: int = 20, classes: int = 4,
                    seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, size=(classes, dim))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, size=n)
        x = centres[y] + rng.normal(0, 1.0, size=(n, dim))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent / "data" / "sample.npz")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=500)
    args = parser.parse_args()
    print(make_sample_npz(args.out, n_train=args.n_train, n_test=args.n_test))
