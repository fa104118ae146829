"""`shrinkwrap` command line. Subcommands import their package lazily so `--help` is instant.

Owners: `run`, `runs`, `models`, `show`, `serve` -> flows/commands.py; `db` -> registry/cli.py;
`api`, `token` -> api/cli.py. Each module exposes `add_commands(subparsers)`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from registry.config import prefect_home

COMMAND_MODULES = ("flows.commands", "registry.cli", "api.cli", "api.serving.cli")


def _default_environment() -> None:
    """Embedded defaults: Prefect state lives under SHRINKWRAP_HOME, no telemetry."""
    os.environ.setdefault("PREFECT_HOME", str(prefect_home()))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shrinkwrap", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
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
