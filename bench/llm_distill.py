"""Benchmark: SmolLM2-135M-Instruct teacher -> ~35M-parameter student by synthetic data + token-level KD.

Rows: teacher; the student as initialised (teacher embeddings + first layers); the student distilled on
teacher generations (sequence-level CE + top-k token-level KL); and an equal-budget student trained on
raw corpus passages without the teacher (same init, steps, batch size and max length).
Metrics on held-out teacher responses: perplexity given the prompt and alone, top-1 agreement and KL
with the teacher, greedy tokens/s with and without KV cache, parameters and bytes.

    .venv/bin/python bench/llm_distill.py                       # CPU defaults (see --help)
    .venv/bin/python bench/llm_distill.py --n-train 400 --steps 400 --batch-size 16   # on a GPU
Generation is resumable: rerunning reuses bench/out/llm_distill/teacher_<source>.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress.evaluate.lm import lm_metrics, response_perplexity  # noqa: E402
from compress.llm.corpus import corpus_passages, make_prompts  # noqa: E402
from compress.llm.distill import LMDistillConfig, distill_lm  # noqa: E402
from compress.llm.generate import GenerateConfig, generate_dataset, prompt_hash, read_dataset  # noqa: E402
from compress.llm.student import make_student  # noqa: E402
from compress.llm.teacher import load_causal_lm  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="smollm2")
    p.add_argument("--source", default="shakespeare", help="shakespeare | kjv | a prompts .jsonl")
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--n-heldout", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--top-k", type=int, default=16, help="teacher logits stored per response token")
    p.add_argument("--gen-batch", type=int, default=8)
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--kd-weight", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--speed-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench/out/llm_distill")
    p.add_argument("--results", type=Path, default=ROOT / "bench/results/llm_distill.md")
    return p.parse_args(argv)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(path)
    return path


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:,.{digits}f}" if abs(value) < 1e4 else f"{value:,.0f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    teacher, tok = load_causal_lm(args.teacher)
    teacher.to(args.device)
    timings["teacher load s"] = time.perf_counter() - t0

    prompts = make_prompts(args.source, args.n_train + args.n_heldout, seed=args.seed)
    gen_cfg = GenerateConfig(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.9, seed=args.seed,
                             batch_size=args.gen_batch, top_k_logits=args.top_k)
    data_path = args.out_dir / f"teacher_{Path(args.source).stem}.jsonl"
    t0 = time.perf_counter()
    generate_dataset(teacher, tok, prompts, data_path, config=gen_cfg, teacher_name=args.teacher)
    timings["generation s (this run; resumed runs count only the rest)"] = time.perf_counter() - t0
    by_hash = {r["prompt_hash"]: r for r in read_dataset(data_path)}
    train = [by_hash[prompt_hash(p)] for p in prompts[:args.n_train]]
    heldout = [by_hash[prompt_hash(p)] for p in prompts[args.n_train:]]
    train_path = write_jsonl(args.out_dir / "train.jsonl", train)
    raw_path = write_jsonl(args.out_dir / "raw.jsonl", [{"text": t} for t in corpus_passages(
        Path(args.source).stem if args.source in ("shakespeare", "kjv") else "shakespeare",
        args.n_train, seed=args.seed + 1000)])
    texts = [r["response"] for r in heldout if r["response"].strip()]
    speed_prompts = [r["input_text"] for r in heldout[:4]]

    def train_student(path: Path, kd_weight: float) -> tuple[torch.nn.Module, dict]:
        student = make_student(teacher.float().cpu(), num_layers=args.student_layers, init_from_teacher=True)
        student.to(args.device)
        teacher.to(args.device)
        cfg = LMDistillConfig(max_steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                              lr=args.lr, kd_weight=kd_weight, temperature=args.temperature,
                              max_length=args.max_length, seed=args.seed,
                              kd_source="topk" if kd_weight > 0 else "none")
        return student, distill_lm(student, tok, path, cfg)

    distilled, d_report = train_student(train_path, args.kd_weight)
    distilled.save_pretrained(args.out_dir / "student_distilled")
    tok.save_pretrained(args.out_dir / "student_distilled")
    raw_student, r_report = train_student(raw_path, 0.0)
    init_student = make_student(teacher.float().cpu(), num_layers=args.student_layers, init_from_teacher=True)
    init_student.to(args.device)

    rows = {}
    for name, model in [("teacher SmolLM2-135M", teacher), (f"student init ({args.student_layers} layers)",
                        init_student), ("student distilled (teacher data + top-k KD)", distilled),
                        ("student equal budget, raw corpus", raw_student)]:
        t0 = time.perf_counter()
        rows[name] = lm_metrics(model, tok, texts, teacher=teacher, max_length=args.max_length,
                                speed_prompts=speed_prompts, max_new_tokens=args.speed_tokens)
        rows[name]["response_ppl"] = response_perplexity(
            model, [r["prompt_ids"] for r in heldout], [r["response_ids"] for r in heldout],
            pad_id=tok.pad_token_id)
        print(f"{name}: {rows[name]} ({time.perf_counter() - t0:.0f} s)", flush=True)

    table = ["| model | perplexity of held-out responses given prompt | perplexity (responses alone) "
             "| agreement | KL to teacher | tokens/s (KV cache) | tokens/s (no cache) | parameters | bytes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        table.append(f"| {name} | {fmt(m['response_ppl'], 2)} | {fmt(m['perplexity'], 2)} "
                     f"| {fmt(m['agreement'])} | {fmt(m['kl_to_teacher'])} "
                     f"| {fmt(m['tokens_per_s'], 1)} | {fmt(m['tokens_per_s_no_cache'], 1)} "
                     f"| {m['parameters'] / 1e6:.1f} M | {m['bytes'] / 1e6:.1f} MB |")
    budget = [
        f"- device: {args.device}, torch threads {args.threads}; teacher {args.teacher}, "
        f"prompts from {args.source}",
        f"- generation: {len(train)} train + {len(heldout)} held-out prompts, {gen_cfg.to_dict()}",
        f"- distilled: {d_report['steps']} steps x batch {args.batch_size} x accum {args.grad_accum}, "
        f"{d_report['tokens']} response tokens, kd_weight {args.kd_weight}, T {args.temperature}, "
        f"lr {args.lr}, "
        f"{d_report['seconds']:.0f} s; loss {d_report['loss_first']:.2f} -> {d_report['loss_last']:.2f}",
        f"- raw-corpus baseline: {r_report['steps']} steps x batch {args.batch_size}, {r_report['tokens']} "
        f"tokens (every token of {args.n_train} passages), {r_report['seconds']:.0f} s; "
        f"loss {r_report['loss_first']:.2f} -> {r_report['loss_last']:.2f}",
        *(f"- {k}: {v:.0f}" for k, v in timings.items()),
    ]
    text = "\n".join(["# LLM distillation: SmolLM2-135M teacher -> small student", "",
                      f"Command: `.venv/bin/python bench/llm_distill.py {' '.join(argv or sys.argv[1:])}`",
                      "",
                      *table, "", "Budget:", *budget, ""])
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text, encoding="utf-8")
    _plot(args.out_dir / "llm_distill_loss.png", d_report, r_report)
    return 0


def _plot(path: Path, d_report: dict, r_report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(d_report["ce"], label="distilled: CE on teacher responses")
    ax.plot(d_report["kd"], label="distilled: top-k KD (x T^2)")
    ax.plot(r_report["ce"], label="raw corpus: CE")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
