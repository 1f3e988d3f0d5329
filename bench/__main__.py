"""Entry point: `python -m bench <subcommand>`."""

from __future__ import annotations

import argparse
import sys

from bench.burst import command as burst_command
from bench.cluster import command as cluster_command
from bench.e2e import command as e2e_command
from bench.egress import command as egress_command
from bench.environments import command as environments_command
from bench.humaneval import command as humaneval_command
from bench.pool import command as pool_command
from bench.profile import command as profile_command

COMMANDS = (
    (
        "pool",
        pool_command,
        "warm pool vs bare spawn, per-request bwrap and unshare; latency, throughput, PSS",
    ),
    (
        "e2e",
        e2e_command,
        "sandboxd serve over gRPC vs the same service with bwrap per request; "
        "p50/p99 and throughput at 1-8 clients",
    ),
    (
        "egress",
        egress_command,
        "the egress proxy: a 1 MiB HTTPS download direct vs through it (passthrough, opened), "
        "from a sandbox; worker boot with egress on and off",
    ),
    (
        "environments",
        environments_command,
        "an environment's warm workers vs a bare interpreter with the same packages: "
        "pandas, a matplotlib PNG, Node's integrations set; PSS of a worker and its template",
    ),
    (
        "burst",
        burst_command,
        "200 Submits at once from one tenant through the daemon vs the same 200 with bwrap "
        "per request 2 at a time: completion p50/p99, executions/s",
    ),
    (
        "humaneval",
        humaneval_command,
        "HumanEval's 164 canonical solutions through the daemon 2 at a time vs bwrap per "
        "request 2 at a time: wall times, passes",
    ),
    (
        "profile",
        profile_command,
        "one Python and one Node hello stage by stage (take a worker ... returned), embedded "
        "and over gRPC with the servicer's share: p50/p90 per stage",
    ),
    (
        "cluster",
        cluster_command,
        "Submit->result over Redis vs synchronous Execute (p50/p99); three nodes vs one (jobs/s)",
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command, help_text in COMMANDS:
        command_parser = sub.add_parser(name, help=help_text, description=command.__doc__)
        command.add_arguments(command_parser)
        command_parser.set_defaults(func=command.run)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
