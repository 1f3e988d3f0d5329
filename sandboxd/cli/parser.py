"""What every command module shares: the subparsers type and the `--target` option.

Each command is a module with `register(commands)`, which adds its parser and sets `handler`
(a function of the parsed arguments returning the exit code) with `set_defaults`; a command
with subcommands sets it on each of them. main.py registers them all."""

from __future__ import annotations

import argparse
import os
from typing import TypeAlias

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
DEFAULT_TARGET = "127.0.0.1:50051"


def add_target(parser: argparse.ArgumentParser) -> None:
    """`--target`: the daemon to call."""
    parser.add_argument(
        "--target",
        default=os.environ.get("SANDBOXD_TARGET", DEFAULT_TARGET),
        help=f"daemon address, HOST:PORT or unix:PATH [env SANDBOXD_TARGET; default "
        f"{DEFAULT_TARGET}]",
    )
