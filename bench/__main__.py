"""Entry point: `python -m bench <subcommand>`."""

from __future__ import annotations

import argparse
import sys

from bench.cluster import command as cluster_command
from bench.e2e import command as e2e_command
from bench.egress import command as egress_command
from bench.pool import command as pool_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    pool = sub.add_parser(
        "pool",
        help="warm pool vs bare spawn, per-request bwrap and unshare; latency, throughput, PSS",
        description=pool_command.__doc__,
    )
    pool_command.add_arguments(pool)
    pool.set_defaults(func=pool_command.run)
    e2e = sub.add_parser(
        "e2e",
        help="sandboxd serve over gRPC vs the same service with bwrap per request; "
        "p50/p99 and throughput at 1-8 clients",
        description=e2e_command.__doc__,
    )
    e2e_command.add_arguments(e2e)
    e2e.set_defaults(func=e2e_command.run)
    cluster = sub.add_parser(
        "cluster",
        help="Submit->result over Redis vs synchronous Execute (p50/p99); three nodes vs one "
        "(jobs/s)",
        description=cluster_command.__doc__,
    )
    cluster_command.add_arguments(cluster)
    cluster.set_defaults(func=cluster_command.run)
    egress = sub.add_parser(
        "egress",
        help="the egress proxy: a 1 MiB HTTPS download direct vs through it (passthrough, "
        "opened), from a sandbox; worker boot with egress on and off",
        description=egress_command.__doc__,
    )
    egress_command.add_arguments(egress)
    egress.set_defaults(func=egress_command.run)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
