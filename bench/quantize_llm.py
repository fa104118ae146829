"""Calibrated 4-bit quantization of SmolLM2-135M: fp32, bnb int8, bnb nf4, GPTQ (and GPTQ + AWQ scaling),
GGUF Q8_0 and GGUF Q4_0 rows, measured in one run (issue 19).

    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/quantize_llm.py [--calib 16] [--texts 8]

Reference: the packaged SmolLM2-135M-Instruct is a Q4_1 GGUF dequantized to fp32, so every 4-bit row
here is quantized twice (Q4_1 first, then ours); every delta is against that fp32 model.
Columns: linear bytes = stored bytes of the decoder blocks' linear layers (scales and zero points
included; the tied embedding / lm_head stays as it is in every safetensors row, Q8_0 in the GGUF
rows) and the ratio to fp32; file bytes = the export (safetensors, or the .gguf file); perplexity on
held-out Shakespeare (bench/quantize.py's passages from The Winter's Tale) and its delta to fp32;
calibration seconds (GPTQ only); reloaded = perplexity of the export loaded back by plain transformers
(compressed-tensors for GPTQ, the GGUF loader for GGUF rows).

Goals: calibrated 4-bit <= +10% perplexity with linear bytes >= 6x smaller than fp32; GGUF Q8_0 <= +1%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quantize import block_linear, held_out_texts  # noqa: E402

from compress import assets  # noqa: E402
from compress.evaluate.lm import perplexity  # noqa: E402
from compress.evaluate.system import weight_bytes  # noqa: E402
from compress.export.compressed_tensors import save_export  # noqa: E402
from compress.export.gguf import export_gguf  # noqa: E402
from compress.llm.teacher import load_causal_lm  # noqa: E402
from compress.quantize import Int8Config, NF4Config, load_quantized_hf  # noqa: E402
from compress.quantize.calibrated import (  # noqa: E402
    GPTQConfig,
    QuantLinear,
    calibration_batches,
    quantize_gptq,
    sensitive_layers,
)

OUT = ROOT / "bench" / "out" / "quantize_llm"
RESULTS = ROOT / "bench" / "results" / "quantize_llm.md"
HELD_OUT = "winters_tale"
MIXED_FRACTION = 0.2  # of the block linears' weights at 8 bits: 0.8 * 4.3 + 0.2 * 8.4 bits ~ 5.1 bits ~ 6.3x < fp32
G32_SYM = {"group_size": 32, "sym": True}  # Q4_0's grid: its GGUF file holds GPTQ's codes as they are


def calibration_texts() -> list[str]:
    """4000 characters from a third of the way into every Shakespeare text except the held-out play."""
    texts = []
    for path in assets.shakespeare_texts():
        if path.name.startswith((HELD_OUT, "metadata")):
            continue
        body = " ".join(path.read_text(errors="replace").split())
        texts.append(body[len(body) // 3: len(body) // 3 + 4000])
    return texts


def linear_bytes(model) -> int:
    return weight_bytes(model, modules=lambda n, m: block_linear(n, m) or (isinstance(m, QuantLinear) and "lm_head" not in n))


def gguf_linear_bytes(path: Path) -> int:
    import gguf

    blocks = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors if t.name.split(".")[-2] in blocks)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


def measure(name, model, tok, texts, args, **extra) -> dict:
    start = time.perf_counter()
    row = {"variant": name, "ppl": perplexity(model, tok, texts, max_length=args.max_length, batch_size=4), **extra}
    print(f"  {name}: ppl {row['ppl']:.3f} (eval {time.perf_counter() - start:.0f}s)", flush=True)
    return row


def gptq_row(name, config, tok, texts, calibration, args) -> dict:
    model, _ = load_causal_lm("smollm2")
    start = time.perf_counter()
    quantize_gptq(model, config, calibration)
    seconds = time.perf_counter() - start
    dest = OUT / name
    shutil.rmtree(dest, ignore_errors=True)
    save_export(model, tok, dest)
    report = model.gptq_report
    layers = report["layers"].values()
    row = measure(f"{name} {config.bits}-bit", model, tok, texts, args, linear_bytes=linear_bytes(model),
                  file_bytes=dir_bytes(dest), calib_s=seconds, group_size=report["group_size"],
                  below_rtn=sum(v["gptq_error"] < v["rtn_error"] for v in layers), n_layers=len(report["layers"]),
                  eight_bit=sorted(k for k, v in report["layers"].items() if v["bits"] == 8), report=report["layers"])
    if args.reload:
        from transformers import AutoModelForCausalLM

        reloaded = AutoModelForCausalLM.from_pretrained(dest).eval()
        row["reloaded_ppl"] = perplexity(reloaded, tok, texts, max_length=args.max_length, batch_size=4)
    shutil.rmtree(dest)
    return row, model


def gguf_row(qtype, source, tok, texts, args, label="") -> dict:
    from transformers import AutoModelForCausalLM

    path = export_gguf(source, tok, OUT / f"smollm2-{qtype.lower()}.gguf", qtype, tokenizer_gguf=assets.smollm2_gguf())
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    row = measure(f"GGUF {qtype}{label}", model, tok, texts, args, linear_bytes=gguf_linear_bytes(path),
                  file_bytes=path.stat().st_size)
    row["reloaded_ppl"] = row["ppl"]
    path.unlink()
    return row


def _meets(base: dict, row: dict) -> bool:
    return base["linear_bytes"] / row["linear_bytes"] >= 6 and row["ppl"] / base["ppl"] - 1 <= 0.10


def table(rows: list[dict]) -> list[str]:
    base = rows[0]
    lines = ["| variant | linear MB | linear ratio vs fp32 | file MB | ppl | ppl delta vs fp32 | reloaded ppl "
             "| calibration s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        reloaded = f"{r['reloaded_ppl']:.3f}" if "reloaded_ppl" in r else "-"
        calib = f"{r['calib_s']:.0f}" if "calib_s" in r else "-"
        lines.append(f"| {r['variant']} | {r['linear_bytes'] / 1e6:.1f} | {base['linear_bytes'] / r['linear_bytes']:.2f}x "
                     f"| {r['file_bytes'] / 1e6:.1f} | {r['ppl']:.3f} | {100 * (r['ppl'] / base['ppl'] - 1):+.2f}% "
                     f"| {reloaded} | {calib} |")
    return lines


def _short(names: list[str]) -> str:
    return ", ".join(n.removeprefix("model.layers.") for n in names) or "none"


def goals(rows: list[dict]) -> list[str]:
    base, lines = rows[0], []
    for r in rows:
        ratio, delta = base["linear_bytes"] / r["linear_bytes"], 100 * (r["ppl"] / base["ppl"] - 1)
        if r["variant"].startswith(("gptq", "GGUF Q4_0 from")):
            ok = ratio >= 6 and delta <= 10
            lines.append(f"- goal calibrated 4-bit ({r['variant']}): {delta:+.2f}% perplexity (<= +10%), linear bytes "
                         f"{ratio:.2f}x smaller (>= 6x): {'met' if ok else 'MISSED'}"
                         + (f"; group size {r['group_size']}, GPTQ error below round-to-nearest on {r['below_rtn']}/"
                            f"{r['n_layers']} layers; 8-bit layers: {_short(r['eight_bit'])}" if "group_size" in r else ""))
        if r["variant"] == "GGUF Q8_0":
            lines.append(f"- goal GGUF Q8_0: {delta:+.2f}% (<= +1%): {'met' if delta <= 1 else 'MISSED'}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=8, help="held-out passages (~1200 chars each)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--calib", type=int, default=16, help="calibration sequences")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per calibration sequence")
    parser.add_argument("--variants", default="fp32,int8,nf4,gptq,gptq-awq,gptq-g32-sym,gptq-mixed,q8_0,q4_0")
    parser.add_argument("--gptq", default='{"sym": false, "act_order": true, "awq": false}', help="GPTQConfig options (JSON)")
    parser.add_argument("--no-reload", dest="reload", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = args.variants.split(",")
    teacher, tok = load_causal_lm("smollm2")
    texts = held_out_texts(args.texts)
    calibration = calibration_batches(tok, calibration_texts(), args.calib, args.seq_len)
    options = json.loads(args.gptq)
    rows = [measure("fp32", teacher, tok, texts, args, linear_bytes=linear_bytes(teacher),
                    file_bytes=weight_bytes(teacher))]
    for name, config in (("int8", Int8Config()), ("nf4", NF4Config())):
        if name in wanted:
            model, _ = load_quantized_hf("smollm2", config)
            rows.append(measure(f"bnb {name}", model, tok, texts, args, linear_bytes=linear_bytes(model),
                                file_bytes=weight_bytes(model)))
            del model
    g32 = None
    for name, extra in (("gptq", {}), ("gptq-awq", {"awq": True}), ("gptq-g32-sym", G32_SYM)):
        if name in wanted:
            row, model = gptq_row(name, GPTQConfig(**{**options, **extra}), tok, texts, calibration, args)
            row["options"] = {**options, **extra}
            rows.append(row)
            g32 = model if name == "gptq-g32-sym" else None
            del model
    gptq_rows = [r for r in rows if "report" in r]
    if gptq_rows and "gptq-mixed" in wanted and not any(_meets(rows[0], r) for r in gptq_rows):
        # the goal missed: keep the layers with the largest relative GPTQ error (of the best row) at 8 bits,
        # as many as the 6x linear-bytes budget allows (about 20% of the weights)
        best = min(gptq_rows, key=lambda r: r["ppl"])
        keep = sensitive_layers(best["report"], MIXED_FRACTION)
        # sym: transformers reloads mixed-precision compressed-tensors checkpoints right only when symmetric
        row, model = gptq_row("gptq-mixed", GPTQConfig(**{**best["options"], "sym": True, "keep_8bit": keep}), tok, texts,
                              calibration, args)
        rows.append(row)
        del model
    for qtype in ("Q8_0", "Q4_0"):
        if qtype.lower() in wanted:
            rows.append(gguf_row(qtype, teacher, tok, texts, args))
    if g32 is not None and "q4_0" in wanted:  # GPTQ's own codes in the Q4_0 file (exact_q4_0)
        rows.append(gguf_row("Q4_0", g32, tok, texts, args, label=" from gptq-g32-sym"))
    settings = (f"Settings: {args.texts} held-out passages of {HELD_OUT} (~1200 chars, <= {args.max_length} tokens); "
                f"calibration {args.calib} x {args.seq_len} tokens from the other plays; GPTQ options {options} "
                f"(damp 0.01, fp16 scales); CPU {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads, under the shared CPU lock.")
    lines = ["# Calibrated 4-bit quantization and GGUF (bench/quantize_llm.py)", "", settings, "", *table(rows), "",
             *goals(rows), "", "## Notes", "",
             "- The fp32 reference is the packaged SmolLM2-135M-Instruct Q4_1 GGUF dequantized to float32: 4-bit rows "
             "are quantized twice, and every delta is measured against that fp32 model, not the original bf16 release.",
             "- fp32 and bnb rows: file bytes = their stored tensors (tied lm_head counted once, quant state "
             "included), what save_pretrained writes; GPTQ rows: the exported safetensors files.",
             "- GGUF rows: transformers' GGUF loader dequantizes the file to float32; Q4_0 files keep token_embd "
             "(= the tied output layer) at Q8_0, like the packaged GGUF; the linear bytes are the blocks' tensors. "
             "The packaged GGUF's token_embd is Q8_0 already, so writing it as Q8_0 again is lossless.",
             "- GGUF Q4_0 is llama.cpp's plain round-to-nearest (no importance matrix); 'GGUF Q4_0 from gptq-g32-sym' "
             "holds the GPTQ codes themselves (compress.export.gguf.exact_q4_0), so llama.cpp runs calibrated weights.",
             "- gptq-mixed (sensitive layers at 8 bits) runs only when no GPTQ row meets the goal.", ""]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
