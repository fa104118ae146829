"""Where the flow arm's CPU goes: the mnist recipe through Prefect + the registry, sampled by py-spy.

py-spy samples every thread's stack (`--idle` off: only samples where the thread is on the CPU), so
the variant fan-out threads count too. Each sample is put in one bucket by the frames it holds:

- hashing: hashlib / sha256 under the registry or the flows;
- artifact store: copies into and out of the content-addressed store (registry/store.py);
- registry SQL: SQLAlchemy and the database driver;
- Prefect: the task engine, its API client, logging, events (no compress/ frame below);
- stage I/O: checkpoints and exports written and read back (safetensors, compress/export);
- compute: everything else under compress/ (training, pruning, quantization, evaluation);
- other: interpreter start-up, imports, the rest.

    .venv/bin/python bench/overhead_profile.py [--recipe recipes/mnist.yaml] [--rate 100]

Needs `pip install py-spy` (a tool, not a dependency). Writes bench/results/flows_overhead_profile.md
with the share of each bucket, per stage where a stage frame is on the stack.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKETS = [  # (bucket, pattern over the whole stack); first match wins
    ("hashing", re.compile(r"hashlib|_sha256|sha256_file|hash_file|digest")),
    ("artifact store", re.compile(r"registry/store\.py|shutil")),
    ("registry SQL", re.compile(r"sqlalchemy|psycopg|sqlite3")),
    ("stage I/O (checkpoints, exports)", re.compile(r"safetensors|compress/export/|save_checkpoint|load_teacher|"
                                                     r"materiali[sz]e")),
    ("compute (compress/)", re.compile(r"compress/")),
    ("Prefect", re.compile(r"prefect/")),
]
STAGE = re.compile(r"\b(dataset|teacher|teacher_data|distill|prune|quantize|evaluate|export|register)_stage\b")


def inner(recipe_path: Path) -> None:
    """The flow arm alone (run under py-spy)."""
    import torch
    from prefect.testing.utilities import prefect_test_harness

    torch.set_num_threads(1)
    from flows.flow import compress_model
    from flows.recipe import Recipe
    from registry.session import ensure_schema

    ensure_schema()
    with prefect_test_harness(server_startup_timeout=180):
        compress_model(Recipe.from_yaml(recipe_path))


def classify(collapsed: Path) -> tuple[collections.Counter, collections.Counter, int]:
    buckets, by_stage, total = collections.Counter(), collections.Counter(), 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        bucket = next((name for name, rx in BUCKETS if rx.search(stack)), "other")
        if bucket in ("hashing", "artifact store", "registry SQL") and "compress/" in stack \
                and "registry/" not in stack and "flows/record.py" not in stack:
            bucket = "compute (compress/)"  # e.g. a dataset checksum inside compress/
        buckets[bucket] += n
        stage = STAGE.search(stack)
        by_stage[(stage.group(1) if stage else "flow/other", bucket)] += n
    return buckets, by_stage, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "mnist.yaml")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.recipe)
        return
    work = Path(tempfile.mkdtemp(prefix="shrinkwrap-profile-"))
    env = {**os.environ, "SHRINKWRAP_HOME": str(work / "home"), "PREFECT_HOME": str(work / "prefect")}
    out = work / "flow.collapsed"
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "--format", "raw", "--rate", str(args.rate), "--threads",
           "-o", str(out), "--", sys.executable, __file__, "--inner", "--recipe", str(args.recipe)]
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    buckets, by_stage, total = classify(out)
    lines = [f"# Where the flow arm's CPU goes ({args.recipe.name}, py-spy {args.rate} Hz, on-CPU samples of "
             f"every thread of the flow process; the Prefect server process is not sampled; torch threads 1)", "",
             f"{total} samples ({total / args.rate:.1f} CPU-seconds). Reproduce: `python bench/overhead_profile.py`.",
             "", "| bucket | share of CPU |", "|---|---:|"]
    lines += [f"| {name} | {100 * n / total:.1f}% |" for name, n in buckets.most_common()]
    stages = sorted({s for s, _ in by_stage})
    lines += ["", "Per stage (share of all samples):", "", "| stage | " + " | ".join(b for b, _ in buckets.most_common())
              + " |", "|---|" + "---:|" * len(buckets)]
    for st in stages:
        cells = [f"{100 * by_stage[(st, b)] / total:.1f}%" for b, _ in buckets.most_common()]
        lines.append(f"| {st} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results" / "flows_overhead_profile.md").write_text(text)


if __name__ == "__main__":
    main()
