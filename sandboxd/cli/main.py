"""The `sandboxd` command line.

sandboxd serve                  run the gRPC daemon (settings: `sandboxd serve --help`)
sandboxd run FILE               run a file on a daemon; exit with the program's exit code
sandboxd tenants add|list|remove  manage the tenants file
sandboxd environments build|list  build the environments (packages) requests may name
sandboxd health                 exit 0 only if a daemon's grpc.health.v1 says SERVING
sandboxd seccomp-profile        print the container seccomp profile the daemon needs
sandboxd demo                   start a warm pool, run a Python and a JavaScript hello

One module per command (parser.py says what each provides). The engine is imported only by
the commands that use it, so `sandboxd --help` and `--version` work even where it cannot load.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from sandboxd import __version__

from . import demo, environments, health, run, seccomp_profile, serve, tenants

COMMANDS = (serve, run, tenants, environments, health, seccomp_profile, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandboxd",
        description="Run untrusted Python and JavaScript in warm, single-use, jailed workers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exit_code: int = args.handler(args)
    return exit_code
