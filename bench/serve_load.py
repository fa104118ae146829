"""Loopback load test of the model server (`shrinkwrap serve-model`), and dynamic int8 against fp32.

1. ccexam CNN (`load_packaged_teacher("ccexam-mnist")` -> `export_model` -> registered version): the server
   started as a subprocess twice, dynamic batching (--max-batch 32) and --max-batch 1; for each, 1, 8 and
   32 concurrent clients, each with one request in flight at a time (a new one the moment its answer
   arrives), one 28x28 image per request, warm-up not counted, bounded by --seconds and --max-requests.
   Beside it the model's own offline throughput at batch 1 and batch 32 in this process: the ceiling of
   what batching can buy on these cores.
2. SmolLM2-135M-Instruct (the packaged teacher, `load_causal_lm("smollm2")`, exported with its tokenizer):
   aggregate generated tokens/s at 1 and 8 concurrent streams (greedy, --lm-tokens per request) on the
   batching server (--max-batch 8), and at 8 streams on the --max-batch 1 server.
3. int8-dynamic (all linears, and with down_proj left in fp32) vs fp32 on SmolLM2: cached decode latency
   (batch 1, 64-token prompt, 16 steps; variants alternated, median of --repeats) and perplexity on
   held-out Shakespeare passages.

The server and this load generator share the machine's 2 cores; run it under the CPU lock:
    flock /tmp/shrinkwrap-cpu.lock .venv/bin/python bench/serve_load.py
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import registry.repository as repo  # noqa: E402
from compress.export import export_model  # noqa: E402
from registry.session import init_db, make_engine, session_scope  # noqa: E402
from registry.store import ArtifactStore  # noqa: E402


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some task waited for a CPU): how contended the run was."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0].split()[1]
    except OSError:
        return "n/a"


def publish(url: str, store_root: Path, export_dir: Path, name: str) -> None:
    engine = make_engine(url)
    with session_scope(engine) as s:
        repo.get_or_create_model(s, name=name)
        art = repo.register_artifact(s, ArtifactStore(store_root), kind="export", path=export_dir, format="export")
        repo.set_alias(s, model_name=name, version=repo.create_version(s, model_name=name, artifact_id=art.id).version,
                       alias="production")
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`shrinkwrap serve-model` as a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], ref: str, *flags: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "shrinkwrap", "serve-model", ref, "--port", str(self.port), "--log-level",
               "warning", "--poll-s", "0", "--timeout-s", "300", *flags]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve-model exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("serve-model was not ready within 600 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def closed_loop(base: str, path: str, bodies: list[bytes], *, clients: int, seconds: float,
                      max_requests: int, warmup: int = 1) -> dict:
    """`clients` concurrent clients, each sending its next request when the previous answer arrives."""
    latencies: list[float] = []
    tokens, errors, sent = [0], [0], [0]
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as client:
        async def one(i: int, record: bool) -> None:
            start = time.perf_counter()
            async with client.post(path, data=bodies[i % len(bodies)], headers=headers) as r:
                body = await r.json()
            if r.status != 200:
                errors[0] += 1
            elif record:
                latencies.append((time.perf_counter() - start) * 1000)
                tokens[0] += body.get("usage", {}).get("completion_tokens", 0)

        await asyncio.gather(*(one(i, False) for i in range(clients * warmup)))
        end = time.perf_counter() + seconds
        t0 = time.perf_counter()

        async def client_loop(k: int) -> None:
            while time.perf_counter() < end and sent[0] < max_requests:
                sent[0] += 1
                await one(k + sent[0], True)

        await asyncio.gather(*(client_loop(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {"requests": len(latencies), "errors": errors[0], "rps": len(latencies) / elapsed, "p50": q[49],
            "p99": q[98], "tokens_per_s": tokens[0] / elapsed, "seconds": elapsed}


@torch.inference_mode()
def offline_throughput(model, batches: tuple[int, ...], seconds: float, repeats: int = 3) -> dict[int, float]:
    """Images/s of `model` at each batch size: the batch sizes alternated `repeats` times, best kept (the
    least disturbed by other processes on the machine)."""
    best = dict.fromkeys(batches, 0.0)
    for _ in range(repeats):
        for batch in batches:
            x = torch.rand(batch, 1, 28, 28)
            for _ in range(3):
                model(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                model(x)
                n += batch
            best[batch] = max(best[batch], n / (time.perf_counter() - t0))
    return best


def bench_cnn(env, url, store_root, work: Path, args, lines: list[str]) -> None:
    from compress.teacher import load_packaged_teacher

    teacher = load_packaged_teacher("ccexam-mnist")
    export_model(teacher, work / "cnn")
    publish(url, store_root, work / "cnn", "ccexam-cnn")
    gen = torch.Generator().manual_seed(0)
    bodies = [json.dumps({"inputs": [torch.rand(28, 28, generator=gen).round(decimals=3).tolist()]}).encode()
              for _ in range(64)]
    ceiling = offline_throughput(teacher, (1, 32), args.offline_seconds)
    rows = {}
    for label, flags in (("batching (max-batch 32, max-wait 5 ms)", ["--max-batch", "32", "--max-wait-ms", "5"]),
                         ("max-batch 1", ["--max-batch", "1", "--max-wait-ms", "0"])):
        with Server(env, "ccexam-cnn@production", *flags) as server:
            for clients in (1, 8, 32):
                rows[(label, clients)] = asyncio.run(closed_loop(
                    server.base, "/v1/predict", bodies, clients=clients, seconds=args.seconds,
                    max_requests=args.max_requests))
                print(label, clients, rows[(label, clients)], flush=True)
    lines += ["## ccexam CNN (POST /v1/predict, one 28x28 image per request)", "",
              f"Offline, in this process (best of 3 alternated {args.offline_seconds:.0f}-s runs): batch 1 "
              f"{ceiling[1]:.0f} img/s, batch 32 {ceiling[32]:.0f} img/s: "
              f"a batching ceiling of {ceiling[32] / ceiling[1]:.2f}x on these cores.", "",
              "| server | clients | requests | errors | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
    for (label, clients), r in rows.items():
        lines.append(f"| {label} | {clients} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | {r['p50']:.1f} "
                     f"| {r['p99']:.1f} |")
    on, one = rows[(next(iter(rows))[0], 32)], rows[("max-batch 1", 32)]
    lines += ["", f"- 32 clients: batching {on['rps']:.0f} req/s = {on['rps'] / one['rps']:.2f}x the max-batch-1 "
              f"server (goal >= 1.8x) and {on['rps'] / ceiling[32]:.0%} of the offline batch-32 throughput "
              f"(goal >= 85%); the offline ceiling itself is {ceiling[32] / ceiling[1]:.2f}x batch 1.", ""]


def bench_lm(env, url, store_root, work: Path, args, lines: list[str]):
    from compress.llm.teacher import load_causal_lm

    model, tokenizer = load_causal_lm("smollm2")
    export_model(model, work / "smollm2", tokenizer=tokenizer)
    publish(url, store_root, work / "smollm2", "smollm2")
    from compress.llm.corpus import corpus_passages

    prompts = [p[:120] for p in corpus_passages("kjv", 16, seed=1)]
    bodies = [json.dumps({"prompt": p, "max_tokens": args.lm_tokens, "temperature": 0}).encode() for p in prompts]
    rows = {}
    for label, flags, streams in (("batching (max-batch 8, max-wait 20 ms)", ["--max-batch", "8", "--max-wait-ms",
                                   "20"], (1, 8)), ("max-batch 1", ["--max-batch", "1"], (8,))):
        with Server(env, "smollm2@production", *flags) as server:
            for n in streams:
                rows[(label, n)] = asyncio.run(closed_loop(server.base, "/v1/completions", bodies, clients=n,
                                                           seconds=args.lm_seconds, max_requests=10_000))
                print(label, n, rows[(label, n)], flush=True)
    lines += [f"## SmolLM2-135M-Instruct (POST /v1/completions, greedy, {args.lm_tokens} new tokens per request, "
              "~120-character KJV prompts)", "",
              "| server | streams | requests | errors | tokens/s | p50 s | p99 s |", "|---|---|---|---|---|---|---|"]
    for (label, n), r in rows.items():
        lines.append(f"| {label} | {n} | {r['requests']} | {r['errors']} | {r['tokens_per_s']:.1f} | "
                     f"{r['p50'] / 1000:.2f} | {r['p99'] / 1000:.2f} |")
    batching = next(iter(rows))[0]
    gain = rows[(batching, 8)]["tokens_per_s"] / rows[(batching, 1)]["tokens_per_s"]
    lines += ["", f"- aggregate tokens/s at 8 streams vs 1: {gain:.2f}x (goal >= 3x); max-batch-1 server at 8 "
              f"streams: {rows[('max-batch 1', 8)]['tokens_per_s']:.1f} tokens/s.", ""]
    return model, tokenizer


def bench_int8(model, tokenizer, args, lines: list[str]) -> None:
    from compress.evaluate.lm import perplexity, prefill_decode_latency
    from compress.llm.corpus import corpus_passages
    from compress.quantize import quantize_
    from compress.quantize.dynamic_int8 import DynamicInt8Config
    from compress.techniques import quantizer

    variants = {"fp32": model, "int8-dynamic": quantize_(copy.deepcopy(model), DynamicInt8Config()),
                "int8-dynamic skip down_proj": quantize_(copy.deepcopy(model),
                                                         DynamicInt8Config(skip_modules=["down_proj"]))}
    ids = torch.randint(200, 20000, (1, 64), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, m in variants.items():
            times[name].append(prefill_decode_latency(m, ids, new_tokens=16))
    med = {name: {k: statistics.median(t[k] for t in ts) for k in ts[0]} for name, ts in times.items()}
    texts = corpus_passages("shakespeare", args.ppl_passages, seed=123, min_chars=400, max_chars=1200)
    ppl = {name: perplexity(m, tokenizer, texts, max_length=256) for name, m in variants.items()}
    size = {name: quantizer("none" if name == "fp32" else "int8-dynamic").size(m).bytes for name, m in variants.items()}
    lines += ["## int8-dynamic vs fp32 on SmolLM2-135M-Instruct", "",
              f"Decode: batch 1, 64-token prompt, 16 cached greedy steps, variants alternated, median of {args.repeats}. "
              f"Perplexity: {len(texts)} held-out Shakespeare passages (400-1200 chars, seed 123), 256 tokens max. "
              "The tied lm_head/embedding stays fp32.", "",
              "| variant | weight MB | prefill ms | decode ms/token | decode x fp32 | perplexity | ppl delta |",
              "|---|---|---|---|---|---|---|"]
    for name in variants:
        m = med[name]
        lines.append(f"| {name} | {size[name] / 1e6:.1f} | {m['prefill_ms']:.0f} | {m['decode_ms_per_token']:.1f} | "
                     f"{m['decode_ms_per_token'] / med['fp32']['decode_ms_per_token']:.2f} | {ppl[name]:.3f} | "
                     f"{ppl[name] / ppl['fp32'] - 1:+.2%} |")
    lines.append("")
    for name in list(variants)[1:]:
        ratio = med[name]["decode_ms_per_token"] / med["fp32"]["decode_ms_per_token"]
        lines.append(f"- {name}: decode latency / fp32 = {ratio:.2f} (goal <= 0.70); perplexity delta "
                     f"{ppl[name] / ppl['fp32'] - 1:+.2%} (goal <= +1%).")
    lines.append("")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per CNN measurement (after warm-up)")
    parser.add_argument("--max-requests", type=int, default=3000, help="per CNN measurement")
    parser.add_argument("--offline-seconds", type=float, default=2.0)
    parser.add_argument("--lm-seconds", type=float, default=20.0, help="per LM measurement")
    parser.add_argument("--lm-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ppl-passages", type=int, default=12)
    parser.add_argument("--skip-lm", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve_load.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    url, store_root = f"sqlite:///{work / 'registry.db'}", work / "artifacts"
    init_db(url)
    env = {**os.environ, "SHRINKWRAP_HOME": str(work / "home"), "SHRINKWRAP_DATABASE_URL": url,
           "SHRINKWRAP_ARTIFACT_ROOT": str(store_root), "SHRINKWRAP_API_OPEN_READS": "true",
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    started, pressure = time.time(), cpu_pressure()
    lines = ["# Model server load test (bench/serve_load.py)", "",
             f"Loopback, {platform.machine()}, {os.cpu_count()} cores shared by the server (1 uvicorn worker, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads) and the aiohttp load generator; SQLite "
             "registry; open reads (no token check). Each client keeps one request in flight (closed loop); "
             f"1 warm-up request per client not counted; CNN runs bounded by {args.seconds:.0f} s / "
             f"{args.max_requests} requests, LM runs by {args.lm_seconds:.0f} s (in-flight requests finish).", ""]
    bench_cnn(env, url, store_root, work, args, lines)
    if not args.skip_lm:
        model, tokenizer = bench_lm(env, url, store_root, work, args, lines)
        bench_int8(model, tokenizer, args, lines)
    lines += [f"CPU pressure (/proc/pressure/cpu some avg10) at start {pressure}, at end {cpu_pressure()}; "
              f"total {time.time() - started:.0f} s.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
