"""`shrinkwrap serve-model NAME@ALIAS | NAME:VERSION`: serve a registered version with dynamic batching."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve-model", help="serve a registered model version (dynamic batching, OpenAI-compatible for LMs)",
        description="Serve NAME@ALIAS (follows the alias: a moved alias is loaded in the background and swapped "
                    "in) or NAME:VERSION. Routes: POST /v1/predict, /v1/completions, /v1/chat/completions, "
                    "/admin/reload; GET /health, /ready, /metrics. Tokens: `shrinkwrap token create`.")
    serve.add_argument("model", metavar="NAME@ALIAS|NAME:VERSION")
    serve.add_argument("--max-batch", type=int, default=32, help="samples per forward pass (default 32)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="how long a batch's first request waits for more (default 5 ms)")
    serve.add_argument("--max-queue", type=int, default=256, help="queued requests before 503 (default 256)")
    serve.add_argument("--timeout-s", type=float, default=30.0, help="per-request timeout (default 30 s)")
    serve.add_argument("--poll-s", type=float, default=10.0,
                       help="how often to look the alias up (default 10 s; 0: only on POST /admin/reload)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1,
                       help="uvicorn worker processes, each with its own copy of the model (default 1)")
    serve.add_argument("--compile", action="store_true", help="torch.compile the model when it is loaded")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=_serve_model)


def _serve_model(args: argparse.Namespace) -> int:
    from api.serving.loader import ModelRef
    from api.serving.settings import ServeSettings

    try:
        ModelRef.parse(args.model)
        if not 0 < args.port < 65536 or args.workers < 1:
            raise ValueError(f"--port must be in 1..65535 and --workers >= 1, got {args.port} and {args.workers}")
        settings = ServeSettings(model=args.model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                 max_queue=args.max_queue, timeout_s=args.timeout_s, poll_s=args.poll_s,
                                 compile=args.compile)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from api.serving.app import serve_model

    return serve_model(settings, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)
