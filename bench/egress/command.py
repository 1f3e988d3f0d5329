"""`python -m bench egress`: what the egress proxy costs, in one run.

1. The proxy's overhead on an HTTPS download of --size-bytes (1 MiB) from a loopback server
   with a CA of its own, each download on a new connection (handshakes included), the modes
   interleaved round by round; the server and the client each in a process of their own, the
   proxy in this one (bench/egress/servers.py):
     direct       straight to the server
     passthrough  a CONNECT tunnel through the pool's proxy, TLS end to end (no headers)
     opened       a CONNECT tunnel where the proxy adds a header: TLS to the proxy (a leaf of
                  the pool's CA), the proxy's own TLS to the server
   The proxy is the engine's own (EgressService, a session on a listening socket of this
   namespace: the same code that serves a worker's socket).
2. The whole path: a sandboxed Python program downloading the same through its worker's proxy
   (passthrough and opened), its own clock around the request, beside the direct figure.
3. The cost per worker of egress (its loopback up, the proxy's socket, the trust bundle): the
   boot time of workers of a pool with PoolConfig.egress_proxy on and one with it off, the
   executions alternating between the two pools.
Prints a Markdown section and writes it to --results (bench/RESULTS.md) between its markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.common import output
from bench.egress.servers import ServerProcess, SiteCA, measure
from sandboxd_pool import ExecutionRequest, Limits, Pool, PoolConfig, Runtime
from sandboxd_pool.egress import EgressHeader, EgressPolicy
from sandboxd_pool.egress.hosts import parse_hosts
from sandboxd_pool.egress.service import EgressService
from sandboxd_pool.types import CEILING_LIMITS, DEFAULT_LIMITS

HOST = "bench.example.test"
QUICK_ROUNDS = 8  # --quick: a smoke run
QUICK_BOOTS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--rounds", type=int, default=40, help="downloads per mode")
    parser.add_argument("--size-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--boots", type=int, default=60, help="executions per pool (part 3)")
    output.add_arguments(parser, raw=False)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(name: str, ms: list[float], size: int) -> str:
    p50 = statistics.median(ms)
    return f"| {name} | {p50:.2f} | {_pct(ms, 0.9):.2f} | {size / (p50 / 1000) / 1e6:.0f} |"


def part_proxy(site: SiteCA, server: ServerProcess, rounds: int, size: int) -> list[str]:
    hosts = parse_hosts(f"127.0.0.1 {HOST}\n")
    service = EgressService(hosts, str(site.pem_path))
    rule = [f"{HOST}:{server.port}"]
    policies = {
        "passthrough": EgressPolicy.parse(rule, ["127.0.0.0/8"]),
        "opened": EgressPolicy.parse(
            rule, ["127.0.0.0/8"], [EgressHeader(HOST, "Authorization", "Bearer bench")]
        ),
    }
    # One session serves every round: the ceilings, not one execution's defaults.
    limits = replace(
        DEFAULT_LIMITS,
        max_egress_connections=CEILING_LIMITS.max_egress_connections,
        max_egress_sent_bytes=CEILING_LIMITS.max_egress_sent_bytes,
        max_egress_received_bytes=CEILING_LIMITS.max_egress_received_bytes,
    )
    ports = {}
    sessions = []
    for name, policy in policies.items():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        ports[name] = listener.getsockname()[1]
        sessions.append(service.open(listener.detach(), policy, limits))
    try:
        times = measure(
            {
                "host": HOST,
                "port": server.port,
                "size": size,
                "rounds": rounds,
                "site_ca": str(site.pem_path),
                "pool_ca": service.ca.cert_pem,
                **ports,
            }
        )
    finally:
        for session in sessions:
            session.close()
        service.close()
    lines = [
        f"### HTTPS download of {size // 1024} KiB, a new connection each, {rounds} rounds "
        "interleaved",
        "",
        "| path | p50 ms | p90 ms | MB/s at p50 |",
        "|---|---:|---:|---:|",
    ]
    lines += [_row(name, ms, size) for name, ms in times.items()]
    over = statistics.median(times["passthrough"]) - statistics.median(times["direct"])
    opened = statistics.median(times["opened"]) - statistics.median(times["direct"])
    lines += ["", f"Proxy overhead at p50: passthrough +{over:.2f} ms, opened +{opened:.2f} ms."]
    return lines


SANDBOXED = """
import json, ssl, sys, time, urllib.request
url, size, rounds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# Made once: the jail's default store (where the pool's CA is) or the site's CA.
context = ssl.create_default_context(cafile="site-ca.pem" if mode == "passthrough" else None)
times = []
for _ in range(rounds + 1):
    started = time.perf_counter()
    body = urllib.request.urlopen(url, context=context).read()
    times.append((time.perf_counter() - started) * 1000)
    assert len(body) == size
print(json.dumps(times[1:]))
"""


def part_sandboxed(
    site: SiteCA, server: ServerProcess, hosts_file: Path, rounds: int, size: int
) -> list[str]:
    config = PoolConfig(
        warm_workers_per_runtime=1,
        runtimes=(Runtime.PYTHON,),
        egress_hosts_file=str(hosts_file),
        egress_ca_file=str(site.pem_path),
    )
    rule = [f"{HOST}:{server.port}"]
    policies = {
        "passthrough": EgressPolicy.parse(rule, ["127.0.0.0/8"]),
        "opened": EgressPolicy.parse(
            rule, ["127.0.0.0/8"], [EgressHeader(HOST, "Authorization", "Bearer bench")]
        ),
    }
    url = f"https://{HOST}:{server.port}/download?n={size}"
    lines = [
        "",
        f"### The same from a sandboxed Python program (urllib, its own clock), {rounds} each",
        "",
        "| path | p50 ms | p90 ms | MB/s at p50 |",
        "|---|---:|---:|---:|",
    ]
    with Pool(config) as pool:
        assert pool.wait_until_ready(60), pool.health()
        for mode, policy in policies.items():
            outcome = pool.execute(
                ExecutionRequest(
                    runtime=Runtime.PYTHON,
                    code=SANDBOXED,
                    args=(url, str(size), str(rounds), mode),
                    files={"site-ca.pem": site.pem_path.read_bytes()},
                    limits=Limits(
                        wall_time_ms=120_000,
                        cpu_time_ms=120_000,
                        max_egress_connections=rounds + 1,
                        max_egress_received_bytes=(rounds + 1) * (size + 4096),
                    ),
                ),
                egress=policy,
            )
            assert outcome.stdout, outcome.stderr.decode()
            lines.append(_row(f"sandbox, {mode}", json.loads(outcome.stdout), size))
    return lines


def part_workers(boots: int) -> list[str]:
    hello = {Runtime.PYTHON: "print('hello')", Runtime.JAVASCRIPT: "console.log('hello')"}
    pools = {
        on: Pool(PoolConfig(warm_workers_per_runtime=1, egress_proxy=on)) for on in (True, False)
    }
    boot_ms: dict[tuple[bool, Runtime], list[float]] = {
        (on, rt): [] for on in pools for rt in hello
    }
    try:
        for pool in pools.values():
            assert pool.wait_until_ready(60), pool.health()
        for _ in range(boots):
            for runtime, code in hello.items():
                for on, pool in pools.items():
                    pool.wait_until_ready(30)
                    outcome = pool.execute(ExecutionRequest(runtime=runtime, code=code))
                    assert outcome.stdout == b"hello\n", outcome
                    boot_ms[on, runtime].append(outcome.worker_boot_us / 1000)
    finally:
        for pool in pools.values():
            pool.close()
    lines = [
        "",
        f"### Worker boot with and without egress, {boots} each, pools alternating",
        "",
        "| runtime | egress on p50 ms | off p50 ms | on p90 ms | off p90 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for runtime in hello:
        on, off = boot_ms[True, runtime], boot_ms[False, runtime]
        lines.append(
            f"| {runtime.value} | {statistics.median(on):.2f} | {statistics.median(off):.2f} | "
            f"{_pct(on, 0.9):.2f} | {_pct(off, 0.9):.2f} |"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    rounds = min(args.rounds, QUICK_ROUNDS) if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="sandboxd-bench-egress-") as tmp:
        directory = Path(tmp)
        site = SiteCA(directory)
        server = ServerProcess(site.server_chain(HOST))
        hosts_file = directory / "hosts"
        hosts_file.write_text(f"127.0.0.1 {HOST}\n")
        try:
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            lines = [
                f"## `python -m bench egress` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
                "",
                f"{os.cpu_count()} CPUs, {platform.release()}, Python "
                f"{platform.python_version()}, load average {load} at the start, engine "
                f"{_commit()}",
                "",
            ]
            lines += part_proxy(site, server, rounds, args.size_bytes)
            lines += part_sandboxed(site, server, hosts_file, rounds, args.size_bytes)
        finally:
            server.close()
    lines += part_workers(min(args.boots, QUICK_BOOTS) if args.quick else args.boots)
    output.publish(args, "egress", "\n".join(lines))
    return 0


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    return done.stdout.strip()
