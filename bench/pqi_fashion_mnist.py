"""SAP (PQ Index pruning) vs lottery ticket vs one-shot magnitude on Fashion-MNIST, MLP 784-128-256-10.

Diao et al., "Pruning Deep Neural Networks from a Sparsity Perspective", ICLR 2023. Every method
starts from the same seeded initialisation, trains E epochs dense (round 0), then per round prunes,
rewinds the survivors to their initial values (as the paper's code does for every method) and trains
E epochs. Arms:
- SAP layer / SAP neuron: PQIPruneConfig(p=0.5, q=1, eta=0, gamma, beta=0.9), scope layer / neuron;
- LT: lottery ticket, global magnitude, 20% of the remaining weights per round;
- one-shot @arm: global magnitude pruning of the round-0 dense model straight to that SAP arm's
  fraction of round t (same sparsity as the SAP arm in the same row), rewind, train E epochs.
Then: exported bytes (dense safetensors vs sparse safetensors of the final SAP model) and CPU
latency of a structured-pruned model (neurons removed) vs dense.

    .venv/bin/python bench/pqi_fashion_mnist.py --rounds 10 --epochs 2 --n-train 20000
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress.data import load_dataset  # noqa: E402
from compress.evaluate.classification import accuracy, predict_logits  # noqa: E402
from compress.models import MLP, count_parameters  # noqa: E402
from compress.prune import (  # noqa: E402
    MagnitudePruneConfig,
    PQIPruneConfig,
    iterative_prune,
    layers_table,
    load_sparse,
    one_shot_curve,
    plot_rounds,
    prune_structured_,
    rounds_table,
    save_sparse,
)
from compress.train import fit  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs per round (paper: many more)")
    ap.add_argument("--n-train", type=int, default=20000, help="training subset size (60000 = all)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--gamma", type=float, default=1.0, help="SAP gamma (>1 prunes faster)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--structured-amount", type=float, default=0.5, help="fraction of neurons removed")
    ap.add_argument("--results", type=Path, default=ROOT / "bench/results/pqi_fashion_mnist.md")
    ap.add_argument("--plot", type=Path, default=ROOT / "bench/out/pqi_fashion_mnist.png")
    return ap.parse_args()


def fresh_model(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(784, [128, 256], 10)


def latency_ms(model: torch.nn.Module, x: torch.Tensor, reps: int = 200) -> float:
    """Median wall time of one forward pass in ms (after warm-up)."""
    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def file_bytes(fn, *args) -> int:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.safetensors"
        fn(path, *args)
        return path.stat().st_size


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion_mnist", n_train=args.n_train, seed=args.seed)
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    fit_kwargs = {"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}

    def eval_fn(model):
        return accuracy(predict_logits(model, xt), yt)

    t_start = time.perf_counter()
    g = f"{args.gamma:g}"
    arms = {
        f"SAP layer g={g}": (PQIPruneConfig(gamma=args.gamma, scope="layer"), True),
        f"SAP neuron g={g}": (PQIPruneConfig(gamma=args.gamma, scope="neuron"), True),
        "LT": (MagnitudePruneConfig(amount=0.2, scope="global"), True),
    }
    if args.gamma != 1.0:  # the paper's default gamma, to show how far it gets on its own
        arms["SAP layer g=1"] = (PQIPruneConfig(gamma=1.0, scope="layer"), True)
    curves, finals = {}, {}
    for label, (config, rewind) in arms.items():
        t0 = time.perf_counter()
        model = fresh_model(args.seed)
        curves[label] = iterative_prune(model, x, y, config=config, rounds=args.rounds, epochs=args.epochs,
                                        rewind=rewind, eval_fn=eval_fn, fit_kwargs=fit_kwargs)
        finals[label] = model
        print(f"{label}: {time.perf_counter() - t0:.0f} s, final {100 * curves[label][-1].retained_fraction:.2f}% "
              f"weights, acc {100 * curves[label][-1].accuracy:.2f}%", flush=True)
    main = f"SAP layer g={g}"
    sap_arms = [lb for lb in arms if lb.startswith("SAP") and lb.endswith(f"g={g}")]
    for label in sap_arms:  # one-shot at exactly the fractions each SAP arm reached
        levels = [r.retained_fraction for r in curves[label][1:]]
        t0 = time.perf_counter()
        curves[f"one-shot @{label}"] = one_shot_curve(fresh_model(args.seed), x, y, retained=levels,
                                                      epochs=args.epochs, rewind=True, eval_fn=eval_fn,
                                                      fit_kwargs=fit_kwargs)
        print(f"one-shot @{label}: {time.perf_counter() - t0:.0f} s", flush=True)
    dense_acc = curves[main][0].accuracy

    # exported bytes: dense safetensors vs sparse encoding of the final SAP-layer model
    sap = finals[main]
    dense_bytes = file_bytes(lambda p: save_file({k: v.contiguous() for k, v in fresh_model(0).state_dict().items()},
                                                 str(p)))
    sparse_bytes = file_bytes(lambda p: save_sparse(p, sap.state_dict()))
    with tempfile.TemporaryDirectory() as d:
        save_sparse(Path(d) / "m.safetensors", sap.state_dict())
        restored = load_sparse(Path(d) / "m.safetensors")
    exact = all(torch.equal(restored[k], v) for k, v in sap.state_dict().items())

    # structured: remove neurons of the dense trained model, fine-tune E epochs, compare latency
    dense = fresh_model(args.seed)
    fit(dense, x, y, epochs=args.epochs, **fit_kwargs)
    dense_acc_struct = eval_fn(dense)
    struct_rows = []
    for name, kwargs in [(f"amount={args.structured_amount}", {"amount": args.structured_amount}),
                         (f"SAP on neuron norms (gamma={args.gamma:g})", {"config": PQIPruneConfig(gamma=args.gamma)})]:
        small = prune_structured_(copy.deepcopy(dense), **kwargs)
        acc0 = eval_fn(small)
        fit(small, x, y, epochs=args.epochs, **fit_kwargs)
        struct_rows.append((name, small.spec["hidden"], count_parameters(small), acc0, eval_fn(small), small))
    for label in sap_arms:  # the final SAP models have whole dead neurons: remove them exactly
        small = prune_structured_(copy.deepcopy(finals[label]), amount=0.0)
        acc = eval_fn(small)
        struct_rows.append((f"{label} final ({100 * curves[label][-1].retained_fraction:.2f}% weights), dead "
                            "neurons removed (amount=0, no fine-tune)", small.spec["hidden"], count_parameters(small),
                            curves[label][-1].accuracy, acc, small))
    lat = {}
    for bs in (1, 256):
        xb = xt[:bs]
        lat[bs] = [latency_ms(dense, xb)] + [latency_ms(r[-1], xb) for r in struct_rows]
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    Path(args.plot).with_suffix(".json").write_text(json.dumps({k: [r.to_dict() for r in v]
                                                                for k, v in curves.items()}, default=float))

    total = time.perf_counter() - t_start
    write_results(args, main, curves, dense_acc, dense_bytes, sparse_bytes, exact, dense, dense_acc_struct,
                  struct_rows, lat, total)


def goal_table(curves, dense_acc) -> list[str]:
    """Every SAP round at <= 10% weights vs dense and vs one-shot at exactly the same fraction."""
    lines = ["| arm | round | weights % | acc % | vs dense (goal >= -2) | one-shot acc % | vs one-shot (goal >= +5) "
             "| both goals |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for label in [lb for lb in curves if lb.startswith("SAP")]:
        one_shot = curves.get(f"one-shot @{label}")
        for r in curves[label]:
            if r.retained_fraction > 0.10:
                continue
            gap = 100 * (r.accuracy - dense_acc)
            if one_shot is None:
                lines.append(f"| {label} | {r.round} | {100 * r.retained_fraction:.2f} | {100 * r.accuracy:.2f} | "
                             f"{gap:+.2f} | - | - | - |")
                continue
            os_acc = one_shot[r.round].accuracy
            adv = 100 * (r.accuracy - os_acc)
            both = "yes" if gap >= -2 and adv >= 5 else "no"
            lines.append(f"| {label} | {r.round} | {100 * r.retained_fraction:.2f} | {100 * r.accuracy:.2f} | "
                         f"{gap:+.2f} | {100 * os_acc:.2f} | {adv:+.2f} | {both} |")
    for label in [lb for lb in curves if lb.startswith("SAP") or lb == "LT"]:
        if all(r.retained_fraction > 0.10 for r in curves[label]):
            last = curves[label][-1]
            lines.append(f"| {label} | {last.round} | {100 * last.retained_fraction:.2f} | "
                         f"{100 * last.accuracy:.2f} | never reached <= 10% | - | - | - |")
    return lines


def write_results(args, main, curves, dense_acc, dense_bytes, sparse_bytes, exact, dense, dense_acc_struct,
                  struct_rows, lat, total) -> None:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    final = curves[main][-1]
    lines = [
        "# PQ Index pruning (SAP) on Fashion-MNIST, MLP 784-128-256-10",
        "",
        f"Command: `.venv/bin/python bench/pqi_fashion_mnist.py --rounds {args.rounds} --epochs {args.epochs} "
        f"--n-train {args.n_train} --gamma {args.gamma}`",
        "",
        f"Settings: `{json.dumps(settings)}`; test set: all 10000 Fashion-MNIST test images. Adam, "
        "rewind to the initial weights after every pruning round for every arm (as in the paper's code), "
        f"{args.epochs} epochs per round on {args.n_train} training images (the paper trains far longer; "
        f"shortened to fit a shared 2-core CPU). Total wall time {total:.0f} s with {args.threads} torch thread(s).",
        "",
        "## Remaining weights and test accuracy per round",
        "",
        rounds_table(curves),
        "",
        f"Dense model (round 0): {100 * dense_acc:.2f}% test accuracy.",
        "",
        "## Goals (at <= 10% remaining weights)",
        "",
        *goal_table(curves, dense_acc),
        "",
        *[part for label in curves if label.startswith("SAP") for part in (
            f"## Per-layer PQ Index (before pruning) and kept % after each round: {label}"
            + (" (layer PQI shown; decisions use per-row PQI)" if "neuron" in label else ""),
            "", layers_table(curves[label]), "")],
        "",
        f"## Exported bytes (final {main} model)",
        "",
        "| export | bytes | vs dense |",
        "|---|---:|---:|",
        f"| dense safetensors | {dense_bytes} | 1.00x |",
        f"| sparse safetensors (bitmask + values), {100 * final.retained_fraction:.2f}% weights | {sparse_bytes} | "
        f"{dense_bytes / sparse_bytes:.2f}x smaller |",
        "",
        f"`load_sparse` restores the pruned state dict bit-exactly: {exact}.",
        "",
        "## Structured pruning (neurons physically removed) — CPU latency, 1 thread",
        "",
        "Rows 2-3 prune the dense trained model and fine-tune one round (E epochs); the last rows remove the "
        "dead neurons of the final SAP models exactly (outputs unchanged). Latency: median of 200 forward passes "
        "on a shared, loaded machine, so only ratios within this run mean anything.",
        "",
        "| model | hidden | params | acc before fine-tune % | acc % | latency bs=1 ms | latency bs=256 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| dense | {dense.spec['hidden']} | {count_parameters(dense)} | - | {100 * dense_acc_struct:.2f} | "
        f"{lat[1][0]:.4f} | {lat[256][0]:.3f} |",
    ]
    for i, (name, hidden, n_params, acc0, acc, _) in enumerate(struct_rows, start=1):
        lines.append(f"| {name} | {hidden} | {n_params} | {100 * acc0:.2f} | {100 * acc:.2f} | "
                     f"{lat[1][i]:.4f} ({lat[1][0] / lat[1][i]:.2f}x) | {lat[256][i]:.3f} "
                     f"({lat[256][0] / lat[256][i]:.2f}x) |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    plot_rounds(curves, args.plot, title="Fashion-MNIST MLP", dense_accuracy=dense_acc)
    print(f"wrote {args.results} and {args.plot}")


if __name__ == "__main__":
    main()
