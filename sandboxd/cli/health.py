"""`sandboxd health`: ask a daemon's grpc.health.v1 service; exit 0 only if SERVING.

The container image's HEALTHCHECK runs it (no grpc_health_probe binary needed)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .parser import Subparsers, add_target

__all__ = ["register"]

_EXIT_NOT_SERVING = 1
_EXIT_UNREACHABLE = 2


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "health",
        help="check a daemon's health (exit 0 only if SERVING)",
        description="Call grpc.health.v1.Health/Check on a daemon and print the status. Exit 0 "
        "if SERVING, 1 if it answered anything else, 2 if it could not be reached in time.",
    )
    add_target(parser)
    parser.add_argument(
        "--service",
        default="",
        help="health service name: '' (default, SERVING when every runtime is), "
        "'sandboxd.v1.Sandbox/python' or 'sandboxd.v1.Sandbox/javascript'",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("SANDBOXD_HEALTH_TLS_CA") or os.environ.get("SANDBOXD_TLS_CERT"),
        help="connect with TLS, trusting this PEM CA bundle [env SANDBOXD_HEALTH_TLS_CA; "
        "default: the daemon's own SANDBOXD_TLS_CERT when set (a self-signed certificate), "
        "else plaintext]",
    )
    parser.add_argument(
        "--tls-server-name",
        default=os.environ.get("SANDBOXD_HEALTH_TLS_SERVER_NAME"),
        help="the name the server certificate must carry, when it is not the target's host "
        "(e.g. the certificate names the service, the check dials 127.0.0.1) [env "
        "SANDBOXD_HEALTH_TLS_SERVER_NAME]",
    )
    parser.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if args.tls_ca:
        try:
            with open(args.tls_ca, "rb") as f:
                roots = f.read()
        except OSError as e:
            print(f"sandboxd health: --tls-ca: {args.tls_ca}: {e.strerror}", file=sys.stderr)
            return _EXIT_UNREACHABLE
        options = []
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
        channel = grpc.secure_channel(
            args.target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
        )
    else:
        channel = grpc.insecure_channel(args.target)
    with channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as e:
            print(
                f"sandboxd health: {args.target}: {e.code().name}: {e.details()}", file=sys.stderr
            )
            return _EXIT_UNREACHABLE
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(status)
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else _EXIT_NOT_SERVING
