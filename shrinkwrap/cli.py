"""`shrinkwrap` command line: the one module allowed to import every layer (it sits above them all).

Owners: `run`, `runs`, `models`, `show`, `serve` -> flows/commands.py; `db` -> registry/cli.py;
`api`, `token` -> api/cli.py. Each module exposes `add_commands(subparsers)` and imports its heavy
dependencies inside the command functions, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from api import cli as api_cli
from api.serving import cli as serving_cli
from flows import commands as flow_commands
from registry import cli as registry_cli
from registry.config import prefect_home

COMMAND_MODULES = (flow_commands, registry_cli, api_cli, serving_cli)


def _default_environment() -> None:
    """Embedded defaults: Prefect state lives under SHRINKWRAP_HOME, no telemetry."""
    os.environ.setdefault("PREFECT_HOME", str(prefect_home()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shrinkwrap", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _default_environment()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
