"""The daemon's gRPC service with per-request bubblewrap behind it: the e2e baseline.

`python -m bench.e2e.bwrap_server --listen 127.0.0.1:0 --python P --node N` serves the same
`sandboxd.api.servicer.SandboxServicer` (zero-config auth, tenant quota, metrics, error seam) as
`sandboxd serve`, on a synchronous `grpc.server` built like `sandboxd.server._start_grpc`, but
its engine spawns a fresh `bwrap ... python -I -S -c CODE` / `node -e CODE` per request (the
command of `bench.common.baselines.bwrap_prefix`). It logs one JSON line {"msg": "listening",
"address": ...} on stderr like the daemon, and SIGTERM stops it (in-flight calls get a short
grace; bwrap's --die-with-parent takes any child with it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bench.common.baselines import bwrap_prefix
from bench.common.runtimes import BenchRuntime, clean_env, node_runtime, python_runtime
from sandboxd_pool import (
    CheckedRequest,
    ExecutionRequest,
    InvalidRequest,
    Outcome,
    PoolConfig,
    Usage,
    Verdict,
)
from sandboxd_pool.egress import EgressPolicy
from sandboxd_pool.types import Mode, Started, Stream

STOP_GRACE_S = 5.0
MAX_CONCURRENT = 16  # like the daemon's default --max-concurrent


class BwrapEngine:
    """Implements `sandboxd.api.servicer.Engine`: one bubblewrap jail per request, SCRIPT mode."""

    def __init__(self, runtimes: dict[str, BenchRuntime]) -> None:
        self._runtimes = runtimes
        self._config = PoolConfig()  # what a CheckedRequest names; nothing else uses it

    def argv(self, runtime: BenchRuntime, code: str, args: tuple[str, ...]) -> list[str]:
        return [*bwrap_prefix(runtime), *runtime.code_argv(code), *args]

    def check(self, request: ExecutionRequest) -> CheckedRequest:
        if request.mode is not Mode.SCRIPT:
            raise InvalidRequest("mode", "the bwrap baseline runs SCRIPT mode only")
        if request.files:
            raise InvalidRequest("files", "the bwrap baseline does not take files")
        if request.runtime.value not in self._runtimes:
            raise InvalidRequest("runtime", f"{request.runtime.value} is not served here")
        return CheckedRequest(request, request.limits, self._config)

    def execute(
        self,
        request: ExecutionRequest | CheckedRequest,
        *,
        cancel: threading.Event | None = None,
        on_start: Callable[[Started], None] | None = None,
        on_output: Callable[[Stream, bytes], None] | None = None,
        execution_id: str | None = None,
        output_paused: Callable[[], bool] | None = None,  # not honoured: it reads everything
        egress: EgressPolicy | None = None,
    ) -> Outcome:
        execution_id = execution_id or uuid.uuid4().hex
        if egress is not None:
            raise InvalidRequest("egress", "the bwrap baseline has no egress")
        if not isinstance(request, CheckedRequest):
            request = self.check(request)
        limits = request.limits
        request = request.request
        runtime = self._runtimes[request.runtime.value]
        env = {**clean_env(), **request.env}
        started = time.perf_counter_ns()
        proc = subprocess.Popen(
            self.argv(runtime, request.code, request.args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        if on_start is not None:
            on_start(Started(execution_id, 0, False))
        cancelled = threading.Event()
        if cancel is not None:
            # The servicer sets `cancel` when the call ends for any reason; once the process
            # has been reaped, kill() is a no-op. (Not communicate() in a polling loop: a
            # retried communicate() stops writing stdin, CPython's _communicate.)
            def watch(cancel: threading.Event = cancel) -> None:
                cancel.wait()
                if proc.poll() is None:
                    cancelled.set()
                    proc.kill()

            threading.Thread(target=watch, name="bwrap-cancel", daemon=True).start()
        killed_for: Verdict | None = None
        try:
            stdout, stderr = proc.communicate(
                input=request.stdin, timeout=(limits.wall_time_ms or 10_000) / 1000
            )
        except subprocess.TimeoutExpired:
            killed_for = Verdict.TIMEOUT
            proc.kill()
            stdout, stderr = proc.communicate()
        if cancelled.is_set():
            killed_for = Verdict.KILLED
        wall_us = (time.perf_counter_ns() - started) // 1000
        cap = limits.max_output_bytes or len(stdout) + len(stderr) + 1
        out_cut, err_cut = len(stdout) > cap, len(stderr) > cap
        stdout, stderr = stdout[:cap], stderr[:cap]
        if on_output is not None:
            for stream, data in ((Stream.STDOUT, stdout), (Stream.STDERR, stderr)):
                if data:
                    on_output(stream, data)
        rc = proc.returncode
        if killed_for is not None:
            verdict = killed_for
        elif out_cut or err_cut:
            verdict = Verdict.OUTPUT_LIMIT
        elif rc == 0:
            verdict = Verdict.OK
        elif rc < 0:
            verdict = Verdict.KILLED
        else:
            verdict = Verdict.RUNTIME_ERROR
        return Outcome(
            verdict=verdict,
            exit_code=rc if rc >= 0 else None,
            signal=-rc if rc < 0 else None,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            usage=Usage(wall_time_us=wall_us),
            execution_id=execution_id,
        )


def serve(listen: str, runtimes: dict[str, BenchRuntime]) -> int:
    import grpc

    from sandboxd.api.service import add_sandbox_service, count_errors
    from sandboxd.api.servicer import SandboxServicer
    from sandboxd.metrics import Metrics
    from sandboxd.quotas.local import LocalQuotas
    from sandboxd.tenants.auth import Authenticator

    auth = Authenticator(None)
    metrics = Metrics()
    servicer = SandboxServicer(BwrapEngine(runtimes), auth, LocalQuotas(), metrics)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=2 * MAX_CONCURRENT + 8, thread_name_prefix="bwrap-rpc"),
        options=[
            ("grpc.max_receive_message_length", 65 * 1024 * 1024),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_sandbox_service(server, servicer, auth, count_errors(metrics))
    port = server.add_insecure_port(listen)
    if not port:
        raise OSError(f"cannot listen on {listen}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    address = f"{listen.rpartition(':')[0]}:{port}"
    print(json.dumps({"msg": "listening", "address": address}), file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    servicer.start_draining()
    server.stop(STOP_GRACE_S).wait()
    print(json.dumps({"msg": "stopped"}), file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e.bwrap_server", description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--python", help="Python interpreter (default: this one's real binary)")
    parser.add_argument("--node", help="Node interpreter (default: node on PATH)")
    args = parser.parse_args(argv)
    runtimes = {"python": python_runtime(args.python)}
    with contextlib.suppress(FileNotFoundError):
        runtimes["javascript"] = node_runtime(args.node)
    return serve(args.listen, runtimes)


if __name__ == "__main__":
    sys.exit(main())
