"""Quantization benchmark: fp32, bf16, int8 (LLM.int8), nf4 and fp4 rows, measured in one run.

    .venv/bin/python bench/quantize.py [--texts 8] [--max-length 256] [--skip-llm] [--skip-mnist]

SmolLM2-135M-Instruct (packaged GGUF, converted once by compress.llm.teacher; the fp32 load is the
teacher) on held-out Shakespeare passages: linear-layer bytes (the decoder blocks' nn.Linear layers,
counted from stored tensors incl. quant state; the tied lm_head is left in full precision, as
bitsandbytes does by default) and the ratio to fp32, export file bytes, perplexity and its delta to
fp32, top-1 next-token agreement and KL(fp32 || row) in nats, prefill and per-token decode latency as
ratios to fp32. The MNIST CNN teacher (ccexam) gets the same rows with accuracy/agreement/KL.

Goals (issue 5): int8 linear bytes >= 3.9x smaller, nf4 >= 7x; perplexity delta int8 <= +1%, nf4 <= +10%.
Anchor: AWQ 4-bit on Llama-2-7B moves perplexity 5.47 -> 5.60 (+2.4%).

Prints markdown tables, writes them to bench/results/quantize.md and a bar chart to bench/out/quantize.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compress import assets  # noqa: E402
from compress.evaluate.classification import agreement, kl_to_teacher, predict_logits  # noqa: E402
from compress.evaluate.lm import perplexity, prefill_decode_latency, right_pad, teacher_agreement  # noqa: E402
from compress.evaluate.system import (  # noqa: E402
    file_bytes,
    latency,
    parameter_count,
    runtime_comparison,
    weight_bytes,
)
from compress.export import export_model  # noqa: E402
from compress.quantize import FP4Config, Int8Config, NF4Config, load_quantized_hf, quantize_  # noqa: E402
from compress.quantize.dynamic_int8 import DynamicInt8Config, DynamicInt8Linear  # noqa: E402

OUT = ROOT / "bench" / "out" / "quantize"
RESULTS = ROOT / "bench" / "results" / "quantize.md"
ROWS = {"int8": Int8Config(), "nf4": NF4Config(), "fp4": FP4Config()}
GOALS = {"int8": (3.9, 1.0), "nf4": (7.0, 10.0)}  # (min linear-bytes ratio, max perplexity delta %)


def held_out_texts(n: int, chars: int = 1200) -> list[str]:
    """`n` passages of ~`chars` characters from the middle of the last Shakespeare text (skips headers)."""
    text = assets.shakespeare_texts()[-1].read_text(errors="replace")
    body = " ".join(text.split())
    start = len(body) // 3
    return [body[start + i * chars: start + (i + 1) * chars] for i in range(n)]


def block_linear(name: str, module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, DynamicInt8Linear)) and "lm_head" not in name


def interleaved_latency(models: dict[str, nn.Module], ids, *, rounds: int, threads: int) -> dict[str, dict]:
    """Prefill and per-token decode of every model, timed in `rounds` rounds of one measurement per model
    (each with its own untimed warm-up forward, under the timing lock on `threads` torch threads), so load
    from outside hits every row alike; p50 and p95 over the rounds."""
    runs: dict[str, list[dict]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            runs[name].append(prefill_decode_latency(model, ids, new_tokens=16, threads=threads))
    out = {}
    for name, rs in runs.items():
        out[name] = {}
        for key in rs[0]:
            values = sorted(r[key] for r in rs)
            out[name][key] = statistics.median(values)
            out[name][f"{key}_p95"] = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return out


def llm_rows(args) -> list[dict]:
    from compress.llm.teacher import load_causal_lm

    teacher, tok = load_causal_lm("smollm2", dtype="float32")
    texts = held_out_texts(args.texts)
    ids, mask = right_pad([tok(t, truncation=True, max_length=args.max_length)["input_ids"] for t in texts],
                          tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    prompt = ids[:1, :128]
    rows, models = [], {}
    variants = [("fp32", None), ("bf16", None), *ROWS.items(), ("int8-dynamic", DynamicInt8Config())]
    if args.variants:  # fp32 stays: it is every ratio's base
        variants = [(n, c) for n, c in variants if n == "fp32" or n in args.variants]
    for name, config in variants:
        start = time.perf_counter()
        if name == "fp32":
            model = teacher
        elif name == "bf16":
            model, _ = load_causal_lm("smollm2", dtype="bfloat16")
        elif isinstance(config, DynamicInt8Config):  # a torch technique: quantize_ on a float copy
            model = quantize_(load_causal_lm("smollm2", dtype="float32")[0], config)
        else:
            model, _ = load_quantized_hf("smollm2", config)
        row = {"model": "SmolLM2-135M", "variant": name, "params": parameter_count(model),
               "linear_bytes": weight_bytes(model, modules=block_linear), "weight_bytes": weight_bytes(model)}
        row["ppl"] = perplexity(model, tok, texts, max_length=args.max_length, batch_size=4)
        agree = teacher_agreement(model, teacher, ids, mask, batch_size=4)
        row["agreement"], row["kl"] = agree["agreement"], agree["kl_to_teacher"]
        dest = OUT / f"smollm2-{name}"
        shutil.rmtree(dest, ignore_errors=True)
        res = export_model(model, dest, metadata={"bench": "quantize", "variant": name}, tokenizer=tok)
        row["file_bytes"] = sum(file_bytes(res.path / n) for n in res.files if n.endswith(".safetensors"))
        shutil.rmtree(dest)  # keep bench/out small; the bytes are recorded
        row["seconds"] = time.perf_counter() - start
        print(f"  {name}: ppl {row['ppl']:.3f} in {row['seconds']:.0f}s", flush=True)
        rows.append(row)
        models[name] = model
    print(f"  timing {len(models)} rows interleaved, {args.rounds} rounds, {args.threads} threads", flush=True)
    speeds = interleaved_latency(models, prompt, rounds=args.rounds, threads=args.threads)
    for row in rows:
        row.update(speeds[row["variant"]])
    del models
    runtime = runtime_comparison(teacher, {"input_ids": prompt}, compile=args.compile, warmup=1, iters=5)
    return rows, runtime


def mnist_rows(args) -> list[dict]:
    from compress.data import load_dataset
    from compress.teacher import load_packaged_teacher

    data = load_dataset("mnist")
    x, y = data.x_test[:args.mnist_test], data.y_test[:args.mnist_test]
    teacher = load_packaged_teacher().eval()
    t_logits = predict_logits(teacher, x)
    rows = []
    for name, config in [("fp32", None), ("bf16", None), *ROWS.items()]:
        model = load_packaged_teacher().eval()
        if name == "bf16":
            model = model.to(torch.bfloat16)
            fn_x = x.to(torch.bfloat16)
        else:
            fn_x = x
            if config is not None:
                quantize_(model, config)
        logits = predict_logits(model, fn_x)
        row = {"model": "MNIST CNN", "variant": name, "params": parameter_count(model),
               "linear_bytes": weight_bytes(model, modules=lambda n, m: isinstance(m, nn.Linear)),
               "weight_bytes": weight_bytes(model), "accuracy": (logits.argmax(1) == y).float().mean().item(),
               "agreement": agreement(logits, t_logits), "kl": kl_to_teacher(logits, t_logits)}
        batch = fn_x[:64]
        with torch.inference_mode():
            row["latency_ms"] = latency(lambda m=model, b=batch: m(b), warmup=3, iters=20)["p50_ms"]
        dest = OUT / f"mnist-{name}"
        shutil.rmtree(dest, ignore_errors=True)
        res = export_model(model, dest, metadata={"bench": "quantize", "variant": name})
        row["file_bytes"] = file_bytes(res.path / "model.safetensors")
        rows.append(row)
    return rows


def _ratio(base: dict, row: dict, key: str) -> float:
    return base[key] / row[key]


def llm_table(rows: list[dict]) -> list[str]:
    base = rows[0]
    lines = ["| variant | linear MB | linear ratio vs fp32 | file MB | ppl | ppl delta | top-1 agree | KL (nats) "
             "| prefill ms (p50) | decode ms/token (p50) | prefill time x fp32 | decode time x fp32 |",
             "|---|---|---|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        delta = 100 * (r["ppl"] / base["ppl"] - 1)
        lines.append(f"| {r['variant']} | {r['linear_bytes'] / 1e6:.1f} | {_ratio(base, r, 'linear_bytes'):.2f}x "
                     f"| {r['file_bytes'] / 1e6:.1f} | {r['ppl']:.3f} | {delta:+.2f}% | {r['agreement']:.4f} "
                     f"| {r['kl']:.4f} | {r['prefill_ms']:.1f} | {r['decode_ms_per_token']:.1f} "
                     f"| {r['prefill_ms'] / base['prefill_ms']:.2f} "
                     f"| {r['decode_ms_per_token'] / base['decode_ms_per_token']:.2f} |")
    lines += ["", "Time ratios: above 1.00 the row is slower than fp32, below 1.00 faster; measured side by side in "
              "this run.", ""]
    for name, (min_ratio, max_delta) in GOALS.items():
        r = next((r for r in rows if r["variant"] == name), None)
        if r is None:
            continue
        ratio, delta = _ratio(base, r, "linear_bytes"), 100 * (r["ppl"] / base["ppl"] - 1)
        lines.append(f"- goal {name}: linear bytes {ratio:.2f}x (goal >= {min_ratio}x: "
                     f"{'met' if ratio >= min_ratio else 'MISSED'}), ppl delta {delta:+.2f}% (goal <= +{max_delta}%: "
                     f"{'met' if delta <= max_delta else 'MISSED'})")
    return lines


def runtime_table(rows: list[dict]) -> list[str]:
    lines = ["| fp32 forward, 128-token prompt | first call ms | p50 ms | p95 ms |", "|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | not available here: {r['error'][:80]} | | |")
        else:
            lines.append(f"| {r['variant']} | {r['first_call_ms']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} |")
    return lines


def mnist_table(rows: list[dict]) -> list[str]:
    base = rows[0]
    lines = ["| variant | linear KB | linear ratio vs fp32 | file KB | accuracy | agreement | KL (nats) "
             "| latency x fp32 (batch 64) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['linear_bytes'] / 1e3:.1f} | {_ratio(base, r, 'linear_bytes'):.2f}x "
                     f"| {r['file_bytes'] / 1e3:.1f} | {r['accuracy']:.4f} | {r['agreement']:.4f} | {r['kl']:.5f} "
                     f"| {r['latency_ms'] / base['latency_ms']:.2f} |")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = rows[0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["variant"] for r in rows]
    a.bar(names, [_ratio(base, r, "linear_bytes") for r in rows])
    a.set_title("linear bytes: fp32 / variant")
    b.bar(names, [100 * (r["ppl"] / base["ppl"] - 1) for r in rows])
    b.set_title("perplexity delta vs fp32 (%)")
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=8, help="held-out passages (~1200 chars each)")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per passage")
    parser.add_argument("--mnist-test", type=int, default=2000, help="MNIST test images")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) of fp32")
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for every timing (recorded)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per LLM row")
    parser.add_argument("--variants", nargs="*", default=None,
                        help="LLM rows besides fp32 (default: bf16 int8 nf4 fp4 int8-dynamic)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    settings = (f"Settings: {args.texts} held-out Shakespeare passages ({assets.shakespeare_texts()[-1].name}, "
                f"~1200 chars each, truncated to {args.max_length} tokens), prefill of a 128-token prompt + 16 "
                f"cached decode steps, each after an untimed warm-up forward, timed in {args.rounds} interleaved rounds "
                f"(one measurement per row per round; p50 shown), MNIST: {args.mnist_test} test images. bitsandbytes on "
                f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                f"{torch.__version__}, {torch.get_num_threads()} threads); 4-bit compute dtype float32, "
                "block 64, no double quant; int8 threshold 6.0.")
    lines = ["# Quantization benchmark (bench/quantize.py)", "", settings, ""]
    if not args.skip_llm:
        rows, runtime = llm_rows(args)
        (OUT / "llm_rows.json").write_text(json.dumps({"rows": rows, "runtime": runtime}, indent=1, default=str))
        lines += ["## SmolLM2-135M-Instruct", "", *llm_table(rows), "", "### SDPA backends" + (" and torch.compile" if args.compile else " (torch.compile not run: pass --compile)"), "",
                  *runtime_table(runtime), ""]
        plot(rows, OUT.parent / "quantize.png")
    if not args.skip_mnist:
        lines += ["## MNIST CNN (ccexam teacher)", "", *mnist_table(mnist_rows(args)), ""]
    lines += ["## Notes", "",
              "- Linear bytes: stored bytes (weights + bias + quantization state: SCB, absmax, code maps) of the "
              "nn.Linear layers; for SmolLM2 only the decoder blocks' (the tied lm_head stays full precision, "
              "as bitsandbytes does by default). File bytes: the export's safetensors files.",
              "- The fp32 SmolLM2 is the packaged Q4_1 GGUF dequantized to float32, so it is both baseline and "
              "teacher for agreement/KL; the absolute perplexity is high because the text is Elizabethan verse.",
              "- Latency is wall clock under the timing protocol (compress/evaluate/timing.py: fixed threads, warm-up, "
              "rows interleaved); compare ratios within one run only. On CPU bitsandbytes "
              "has no fast int8 GEMM (it quantizes activations per call) and 4-bit layers dequantize per call, "
              "so its rows are slower than fp32 here and the size win is the point; int8-dynamic "
              "(compress/quantize/dynamic_int8.py) multiplies in int8 and is the CPU-speed row.",
              "- bitsandbytes 0.50.2's CPU 4-bit dequant kernel mis-indexes absmax when in_features % 64 != 0; "
              "our quantize_ uses SafeLinear4bit (pure-torch dequant for those layers). SmolLM2's widths "
              "(576, 1536) are multiples of 64, so HF rows use stock bitsandbytes layers.", ""]
    load_end = os.getloadavg()
    lines.insert(3, f"Conditions: {time.strftime('%Y-%m-%d')}, load average (1 min) {load_start[0]:.2f} at the start "
                    f"and {load_end[0]:.2f} at the end, torch threads {args.threads} for every timing, "
                    f"`python bench/quantize.py {' '.join(sys.argv[1:])}`.\n")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
