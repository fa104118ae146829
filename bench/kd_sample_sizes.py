"""Distilled vs from-scratch MLP students on MNIST across labelled sample sizes (Hinton et al. 2015).

Student: MLP 784-128-10, a FRESH one per (arm, n, seed), the same initial weights in every arm
(`make_student(spec, seed)`), same optimiser (Adam), learning rate, batch size and batch-order seed.
Teacher: the packaged ccexam CNN (99.05%), whose logits on the 60k pool are computed once and cached.

Arms, each given the SAME budget of optimiser steps (epochs = steps * batch / set size):
- scratch:       cross-entropy on the n labelled samples;
- kd-same:       KD on the same n inputs only (no extra data);
- kd-transfer:   KD on a transfer set of `--transfer` inputs from the pool (the n labelled ones first,
                 the rest unlabelled: soft term only), the option the issue asks for.
Goal: distilled >= scratch at every n; at n <= 4000 distillation closes >= half the scratch-teacher gap.

    .venv/bin/python bench/kd_sample_sizes.py                 # full: 6 sizes x 3 seeds
    .venv/bin/python bench/kd_sample_sizes.py --quick         # 1 seed, 3 sizes, fewer steps
    .venv/bin/python bench/kd_sample_sizes.py --tune 1000     # T / alpha / transfer grid at one n
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress import assets  # noqa: E402
from compress.data import Dataset, load_dataset, transfer_set  # noqa: E402
from compress.distill import (  # noqa: E402
    KDConfig,
    distill,
    load_soft_labels,
    make_student,
    save_soft_labels,
    soft_labels,
    train_scratch,
)
from compress.evaluate import classification_metrics, predict_logits  # noqa: E402
from compress.teacher import load_packaged_teacher  # noqa: E402

SPEC = {"arch": "mlp", "in_features": 784, "hidden": [128], "num_classes": 10}
ARMS = ("scratch", "kd-same", "kd-transfer")


def teacher_logits(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher logits on the training pool and the test set, cached as safetensors soft-label files."""
    out = []
    teacher = None
    for split, x in (("train", data.x_train), ("test", data.x_test)):
        path = assets.cache_dir() / f"kd_soft_labels_ccexam-mnist_mnist-{split}.safetensors"
        if path.is_file():
            logits, _ = load_soft_labels(path)
            if logits.shape == (len(x), data.num_classes):
                out.append(logits)
                continue
        teacher = teacher or load_packaged_teacher()
        logits = soft_labels(teacher, x)
        save_soft_labels(path, logits, metadata={"teacher": "ccexam-mnist", "dataset": "mnist", "split": split})
        out.append(logits)
    return out[0], out[1]


def epochs_for(steps: int, n: int, batch: int) -> int:
    return max(1, round(steps * batch / n))


def run_arm(arm: str, data: Dataset, pool_logits: torch.Tensor, test_logits: torch.Tensor, *, n: int, seed: int,
            steps: int, transfer: int, base: KDConfig) -> dict[str, float]:
    ts = transfer_set(data, n, max(n, min(transfer, len(data.x_train))) if arm == "kd-transfer" else n, seed)
    size = len(ts.x_transfer)
    cfg = dataclasses.replace(base, epochs=epochs_for(steps, size, base.batch_size), seed=seed)
    student = make_student(SPEC, seed)
    start = time.perf_counter()
    if arm == "scratch":
        train_scratch(student, ts.x_labelled, ts.y_labelled, cfg)
    else:
        distill(student, ts.x_transfer, ts.y_transfer, pool_logits[ts.index], cfg)
    metrics = classification_metrics(predict_logits(student, data.x_test), data.y_test, test_logits)
    return {**metrics, "seconds": time.perf_counter() - start, "epochs": cfg.epochs, "set": size}


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 16000, 32000])
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..k-1)")
    p.add_argument("--steps", type=int, default=5000, help="optimiser steps per run, equal for every arm")
    p.add_argument("--transfer", type=int, default=60000, help="transfer-set size of the kd-transfer arm")
    p.add_argument("--temperature", type=float, default=20.0)
    p.add_argument("--alpha", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--quick", action="store_true", help="1 seed, sizes 1000 4000 16000, 1500 steps")
    p.add_argument("--tune", type=int, metavar="N", help="grid over T, alpha, lr, transfer size at n=N, scored "
                   "on a validation split (pool rows 50000..59999, never trained on), not on the test set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kd_sample_sizes.md")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.sizes, args.steps = 1, [1000, 4000, 16000], 1500
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist")
    pool_logits, test_logits = teacher_logits(data)
    teacher_acc = classification_metrics(test_logits, data.y_test)["accuracy"]
    base = KDConfig(temperature=args.temperature, alpha=args.alpha, lr=args.lr, batch_size=args.batch_size)
    if args.tune:
        return tune(args, data, pool_logits, base)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for n in args.sizes:
        for seed in range(args.seeds):
            for arm in args.arms:
                r = run_arm(arm, data, pool_logits, test_logits, n=n, seed=seed, steps=args.steps,
                            transfer=args.transfer, base=base)
                results.setdefault((arm, n), []).append(r)
                print(f"n={n} seed={seed} {arm}: acc={r['accuracy']:.4f} agree={r['agreement']:.4f} "
                      f"epochs={r['epochs']} {r['seconds']:.1f}s", flush=True)
    table = render(results, args, teacher_acc)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    plot(results, args, teacher_acc, ROOT / "bench" / "out" / f"{args.out.stem}.png")
    return 0


def tune(args, data: Dataset, pool_logits: torch.Tensor, base: KDConfig) -> int:
    """Grid at n=args.tune, seed 100, scored on validation rows the runs never see (pool 50000..59999)."""
    val = Dataset("mnist-val", data.x_train[:50000], data.y_train[:50000], data.x_train[50000:],
                  data.y_train[50000:], 10)
    train_logits, val_logits = pool_logits[:50000], pool_logits[50000:]
    n = args.tune
    grid: list[tuple[str, dict]] = [("scratch", {"lr": lr}) for lr in (3e-4, 1e-3, 3e-3)]
    grid += [("scratch", {"lr": 1e-3, "weight_decay": 1e-4})]
    grid += [("kd-same", {"temperature": t, "alpha": a}) for t in (4.0, 20.0, 50.0) for a in (0.0, 0.1)]
    grid += [("kd-transfer", {"temperature": t, "alpha": 0.0, "transfer": m}) for m in (4 * n, 50000)
             for t in (4.0, 20.0)]
    grid += [("kd-transfer", {"temperature": 20.0, "alpha": 0.1, "transfer": 50000})]
    lines = [f"## Tuning grid at n={n} (seed 100, {args.steps} steps per run, scored on the 10k validation split)",
             "", "| arm | settings | val acc | agreement |", "|---|---|---|---|"]
    for arm, kw in grid:
        kw = dict(kw)
        transfer = kw.pop("transfer", n)
        cfg = dataclasses.replace(base, **kw)
        r = run_arm(arm, val, train_logits, val_logits, n=n, seed=100, steps=args.steps, transfer=transfer, base=cfg)
        desc = ", ".join(f"{k}={v}" for k, v in {**kw, **({"transfer": transfer} if arm == "kd-transfer" else {})}.items())
        lines.append(f"| {arm} | {desc} | {100 * r['accuracy']:.2f} | {100 * r['agreement']:.2f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    out = args.out.with_name(args.out.stem + f"_tune_n{n}.md")
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def render(results, args, teacher_acc: float) -> str:
    lines = [
        "# KD vs scratch across sample sizes (MNIST, student MLP 784-128-10)", "",
        f"Command: `.venv/bin/python bench/kd_sample_sizes.py {' '.join(sys.argv[1:])}`", "",
        f"Settings: seeds 0..{args.seeds - 1}; {args.steps} Adam steps per run for every arm (batch "
        f"{args.batch_size}, lr {args.lr}); KD T={args.temperature}, alpha={args.alpha} (hard-label weight); "
        f"kd-transfer uses {args.transfer} pool inputs (n labelled + the rest unlabelled); teacher: packaged "
        f"ccexam CNN, test accuracy {100 * teacher_acc:.2f}%. Test set: 10k MNIST test.", "",
        "Accuracy in % (mean ± std over seeds); 'gap closed' = (kd - scratch) / (teacher - scratch); "
        "agreement = fraction of test inputs where student and teacher agree.", "",
        "| n | " + " | ".join(f"{a} acc" for a in args.arms) + " | teacher | "
        + " | ".join(f"gap closed {a}" for a in args.arms if a != "scratch")
        + " | " + " | ".join(f"{a} agree" for a in args.arms) + " |",
        "|" + "---|" * (2 + 2 * len(args.arms) + len([a for a in args.arms if a != "scratch"])),
    ]
    for n in args.sizes:
        accs = {a: [r["accuracy"] for r in results[(a, n)]] for a in args.arms}
        row = [str(n), *(mean_std(accs[a]) for a in args.arms), f"{100 * teacher_acc:.2f}"]
        if "scratch" in accs:
            s = statistics.mean(accs["scratch"])
            gap = teacher_acc - s
            row += [f"{(statistics.mean(accs[a]) - s) / gap:.2f}" if gap > 0 else "n/a"
                    for a in args.arms if a != "scratch"]
        else:
            row += ["n/a" for a in args.arms if a != "scratch"]
        row += [mean_std([r["agreement"] for r in results[(a, n)]]) for a in args.arms]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Epochs per run (same step budget): " + "; ".join(
        f"n={n}: " + ", ".join(f"{a} {results[(a, n)][0]['epochs']}" for a in args.arms) for n in args.sizes), ""]
    return "\n".join(lines)


def plot(results, args, teacher_acc: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for a in args.arms:
        means = [100 * statistics.mean(r["accuracy"] for r in results[(a, n)]) for n in args.sizes]
        sds = [100 * statistics.stdev([r["accuracy"] for r in results[(a, n)]]) if args.seeds > 1 else 0.0
               for n in args.sizes]
        ax.errorbar(args.sizes, means, yerr=sds, marker="o", capsize=3, label=a)
    ax.axhline(100 * teacher_acc, color="k", ls="--", label="teacher (ccexam CNN)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled training samples n")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MNIST, MLP 784-128-10 student")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
