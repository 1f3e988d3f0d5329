"""`sandboxd serve`: run the daemon (settings: `sandboxd serve --help`)."""

from __future__ import annotations

import argparse
import sys

from .. import settings
from .parser import Subparsers


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the gRPC daemon",
        description="Serve sandboxd.v1.Sandbox over gRPC, with grpc.health.v1, reflection and "
        "Prometheus metrics. Every flag has a SANDBOXD_* environment variable; a flag wins. "
        "SIGTERM drains: in-flight executions finish within --drain-grace, new calls get "
        "UNAVAILABLE.",
    )
    settings.add_arguments(parser)
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from sandboxd import logs, preflight, server
    from sandboxd.environments import NotBuilt, ToolchainError
    from sandboxd.tenants import TenantsFileError
    from sandboxd_pool.errors import JailModeError

    try:
        config = settings.from_args(args)
    except settings.SettingsError as e:
        for problem in e.problems:
            print(f"sandboxd serve: error: {problem}", file=sys.stderr)
        return 2
    problems = preflight.check()
    if problems:
        print(preflight.message(problems), file=sys.stderr)
        return 2
    logs.configure(config.log_level)
    try:
        return server.serve(config)
    except settings.SettingsError as e:  # a value that failed once used (a port taken)
        for problem in e.problems:
            print(f"sandboxd serve: error: {problem}", file=sys.stderr)
        return 2
    except (TenantsFileError, JailModeError, NotBuilt, ToolchainError) as e:
        print(f"sandboxd serve: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"sandboxd serve: error: {e}", file=sys.stderr)
        return 1
