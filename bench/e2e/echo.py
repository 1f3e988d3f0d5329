"""Synchronous vs asyncio gRPC server for a unary echo (docs/benchmarks.md: measured before choosing the daemon's server).

`python -m bench.e2e.echo serve --mode sync|aio` serves `/bench.Echo/Echo`, a generic handler
returning the request bytes unchanged (no protobuf, no servicer logic), on 127.0.0.1:0 and
prints {"msg": "listening", "address": ...} on stderr. `measure()` starts one server of each
kind as subprocesses, times sequential calls from a synchronous client with 1 MB and tiny
payloads, sync and aio interleaved in rounds, and stops both (SIGTERM, wait).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from bench.common.servers import ServerProcess, _spawn
from bench.common.stats import LatencyRun, LatencyStats
from bench.e2e.report import EchoResult

METHOD = "/bench.Echo/Echo"
OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.so_reuseport", 0),
]
PAYLOADS = (1_000_000, 100)


def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _aecho(request: bytes, context: Any) -> bytes:
    return request


def _handler(fn: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(fn)}
    )


def _listening(port: int) -> None:
    print(
        json.dumps({"msg": "listening", "address": f"127.0.0.1:{port}"}),
        file=sys.stderr,
        flush=True,
    )


def serve_sync() -> int:
    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    server.add_generic_rpc_handlers((_handler(_echo),))
    port = server.add_insecure_port("127.0.0.1:0")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    _listening(port)
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    return 0


async def _serve_aio() -> None:
    server = grpc.aio.server(options=OPTIONS)
    server.add_generic_rpc_handlers((_handler(_aecho),))
    port = server.add_insecure_port("127.0.0.1:0")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    _listening(port)
    await stop.wait()
    await server.stop(1)


def serve_aio() -> int:
    asyncio.run(_serve_aio())
    return 0


def _time_calls(call: Any, payload: bytes, n: int, into: list[int]) -> int:
    failures = 0
    for _ in range(n):
        start = time.perf_counter_ns()
        reply = call(payload, timeout=30)
        elapsed = time.perf_counter_ns() - start
        if reply != payload:
            failures += 1
            continue
        into.append(elapsed)
    return failures


def measure(iterations: int, rounds: int) -> list[EchoResult]:
    servers: dict[str, ServerProcess] = {}
    channels: dict[str, grpc.Channel] = {}
    try:
        for mode in ("sync", "aio"):
            servers[mode] = _spawn(
                f"echo-{mode}", [sys.executable, "-m", "bench.e2e.echo", "serve", "--mode", mode]
            )
            channels[mode] = grpc.insecure_channel(
                servers[mode].address,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                    ("grpc.use_local_subchannel_pool", 1),
                ],
            )
        calls = {m: ch.unary_unary(METHOD) for m, ch in channels.items()}
        results = []
        for size in PAYLOADS:
            payload = bytes(i % 251 for i in range(size))
            samples: dict[str, list[int]] = {m: [] for m in calls}
            failures = dict.fromkeys(calls, 0)
            for call in calls.values():  # warm-up
                _time_calls(call, payload, max(3, iterations // 10), [])
            per_round = iterations // rounds
            for r in range(rounds):
                order = list(calls) if r % 2 == 0 else list(calls)[::-1]
                for m in order:
                    failures[m] += _time_calls(calls[m], payload, per_round, samples[m])
            results.append(
                EchoResult(
                    size,
                    {
                        m: LatencyRun(stats=LatencyStats.from_ns(samples[m]), failures=failures[m])
                        for m in calls
                    },
                )
            )
        return results
    finally:
        for ch in channels.values():
            ch.close()
        for server in servers.values():
            server.stop(timeout_s=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e.echo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--mode", choices=("sync", "aio"), required=True)
    run = sub.add_parser("run", help="measure and print the table")
    run.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_sync() if args.mode == "sync" else serve_aio()
    from bench.e2e.report import echo_table

    print(echo_table(measure(args.iterations, 4)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
