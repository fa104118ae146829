"""Per-round pruning reports: markdown tables and a PNG plot of accuracy vs remaining weights.

Input is `{label: [RoundReport, ...]}` as returned by `iterative_prune` / `one_shot_curve`, so one
table or figure compares SAP against the lottery-ticket and one-shot baselines round by round.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from compress.prune.schedule import RoundReport

Curves = Mapping[str, Sequence[RoundReport]]


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f}" if pct else f"{v:.4f}"


def rounds_table(curves: Curves) -> str:
    """Markdown: one row per round, per method remaining-weight % and accuracy %."""
    labels = list(curves)
    head = "| round | " + " | ".join(f"{lb} weights % | {lb} acc %" for lb in labels) + " |"
    sep = "|---:|" + "---:|---:|" * len(labels)
    n = max(len(c) for c in curves.values())
    rows = []
    for t in range(n):
        cells = []
        for lb in labels:
            r = curves[lb][t] if t < len(curves[lb]) else None
            cells += [_fmt(r.retained_fraction) if r else "-", _fmt(r.accuracy) if r else "-"]
        rows.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


def layers_table(reports: Sequence[RoundReport]) -> str:
    """Markdown: per pruning round, each layer's PQI (before pruning) and retained fraction after."""
    pruned = [r for r in reports if r.prune is not None]
    if not pruned:
        return "(no pruning rounds)"
    names = [s.name for s in pruned[0].prune.layers]
    head = "| round | " + " | ".join(f"{n} PQI | {n} kept %" for n in names) + " |"
    sep = "|---:|" + "---:|---:|" * len(names)
    rows = []
    for r in pruned:
        stats = {s.name: s for s in r.prune.layers}
        cells = []
        for n in names:
            cells += [f"{stats[n].pqi:.4f}", _fmt(stats[n].retained_fraction)]
        rows.append(f"| {r.round} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


def plot_rounds(curves: Curves, path: str | os.PathLike, *, title: str = "Pruning",
                dense_accuracy: float | None = None) -> Path:
    """Accuracy vs remaining weights (log x) and remaining weights vs round; PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_w) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, reps in curves.items():
        xs = [100 * r.retained_fraction for r in reps]
        accs = [100 * r.accuracy if r.accuracy is not None else float("nan") for r in reps]
        ax_acc.plot(xs, accs, marker="o", ms=3, label=label)
        ax_w.plot([r.round for r in reps], xs, marker="o", ms=3, label=label)
    if dense_accuracy is not None:
        ax_acc.axhline(100 * dense_accuracy, color="gray", ls="--", lw=1, label="dense")
    ax_acc.set_xscale("log")
    ax_acc.invert_xaxis()
    ax_acc.set(xlabel="remaining weights % (log)", ylabel="test accuracy %", title=f"{title}: accuracy")
    ax_w.set(xlabel="round", ylabel="remaining weights %", title=f"{title}: sparsity schedule")
    ax_w.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    ax_acc.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_w.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_w.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_acc, ax_w):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path
