"""Lifecycle of a real daemon: a cancelled or timed-out call kills its worker, SIGTERM drains,
health follows the runtimes, reflection lists the services.

Sandboxed processes are found from the host by a marker each program writes into its own
`/proc/self/comm` (the host's /proc shows the renamed process under its host pid)."""

from __future__ import annotations

import glob
import os
import secrets
import signal
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any, cast

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sandboxd_client import (
    NO_RETRY,
    Client,
    DeadlineExceeded,
    ExecuteResult,
    Output,
    Started,
    StreamEvent,
    Unavailable,
    Verdict,
)

from .daemon import Daemon, start

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "sandboxd.v1.Sandbox"
PYTHON_SERVICE = f"{SERVICE}/python"
JAVASCRIPT_SERVICE = f"{SERVICE}/javascript"
GONE_WITHIN_S = 10.0

# -- finding sandboxed processes from the host -------------------------------------------------


def new_marker() -> str:
    """A process name (under 16 bytes) that no other process on the machine has."""
    return "sbxv" + secrets.token_hex(4)


def marked_program(marker: str, sleep_s: float, then: str = "") -> str:
    """Python that renames its process to `marker`, prints "started" and sleeps."""
    return (
        "import time\n"
        f"open('/proc/self/comm', 'w').write({marker!r})\n"
        "print('started', flush=True)\n"
        f"time.sleep({sleep_s})\n"
        f"{then}\n"
    )


def pids_named(marker: str) -> list[int]:
    """Host pids of every process whose comm is `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().rstrip("\n") == marker:
                    found.append(int(entry))
        except OSError:
            continue  # exited meanwhile
    return found


def wait_for_pids(marker: str, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = pids_named(marker)
        if pids:
            return pids
        time.sleep(0.01)
    raise AssertionError(f"no process named {marker!r} appeared within {timeout_s}s")


def wait_until_gone(marker: str, timeout_s: float = GONE_WITHIN_S) -> list[int]:
    """Poll until no process is named `marker`; the pids still there at the end (none: gone)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = pids_named(marker)
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.02)


class MarkerWatch:
    """Records, from a background thread, every pid that carries `marker` while it runs."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marker-watch", daemon=True)

    def __enter__(self) -> MarkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(pids_named(self.marker))
            time.sleep(0.01)


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def still_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def execution_log(daemon: Daemon, execution_id: str, timeout_s: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in list(daemon.logs):
            if entry.get("msg") == "execution finished" and entry.get("execution_id") == (
                execution_id
            ):
                return entry
        time.sleep(0.05)
    raise AssertionError(f"no 'execution finished' log for {execution_id} within {timeout_s}s")


# -- health and reflection ---------------------------------------------------------------------


def health_status(address: str, service: str, timeout_s: float = 5.0) -> int:
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return int(response.status)


def wait_for_health(address: str, service: str, status: int, timeout_s: float = 30.0) -> int:
    """Poll until `service` reports `status`; the last status seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = health_status(address, service)
        if last == status or time.monotonic() >= deadline:
            return last
        time.sleep(0.1)


@pytest.fixture()
def own_daemon() -> Iterator[list[Daemon]]:
    """Daemons a test starts itself (append them); each is stopped at the end, whatever
    happened."""
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        if daemon.proc.poll() is None:
            try:
                daemon.stop()
            except Exception:
                daemon.proc.kill()
                daemon.proc.wait()


# -- 1. cancel and deadline kill the worker ----------------------------------------------------


def test_cancelling_a_stream_kills_the_worker(zero_daemon: Daemon, client: Client) -> None:
    marker = new_marker()
    events = cast(
        Generator[StreamEvent, None, None],
        client.stream("python", marked_program(marker, 60), timeout_s=120),
    )
    started: Started | None = None
    try:
        for event in events:
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Output):
                assert event == Output("stdout", b"started\n")
                break
            else:
                pytest.fail(f"the program finished before it was cancelled: {event}")
        assert started is not None
        pids = pids_named(marker)
        assert len(pids) == 1, pids
        daemon_tree = {p.pid for p in descendants(zero_daemon.proc.pid)}
        assert pids[0] in daemon_tree, "the marked process is not the daemon's descendant"
    finally:
        events.close()  # leaves the iterator: the client cancels the call
    assert wait_until_gone(marker) == []
    entry = execution_log(zero_daemon, started.execution_id)
    assert entry["verdict"] == "KILLED"
    assert entry["runtime"] == "python"


def test_cancelling_a_raw_call_kills_the_worker(zero_daemon: Daemon) -> None:
    from sandboxd_client.proto import sandbox_pb2, sandbox_pb2_grpc

    marker = new_marker()
    request = sandbox_pb2.ExecuteRequest(
        runtime=sandbox_pb2.RUNTIME_PYTHON, code=marked_program(marker, 60)
    )
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub = sandbox_pb2_grpc.SandboxStub(channel)  # type: ignore[no-untyped-call]
        future = stub.Execute.future(request, timeout=120)
        try:
            pids = wait_for_pids(marker)
            assert len(pids) == 1, pids
        finally:
            assert future.cancel()
        assert future.cancelled()
    assert wait_until_gone(marker) == []


def test_a_deadline_kills_the_worker(client: Client) -> None:
    marker = new_marker()
    with MarkerWatch(marker) as watch:
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.execute("python", marked_program(marker, 60), timeout_s=1.0)
        elapsed = time.monotonic() - began
        assert elapsed < 5, elapsed
        remaining = wait_until_gone(marker)
    assert watch.seen, "the program never started, so the deadline proved nothing"
    assert remaining == []


# -- 2. drain ----------------------------------------------------------------------------------


def test_sigterm_drains_then_exits_leaving_nothing(own_daemon: list[Daemon]) -> None:
    daemon = start(["--drain-grace", "20"])
    own_daemon.append(daemon)
    tree = descendants(daemon.proc.pid)
    zygotes = [p.pid for p in tree if "sandboxd_pool._in_zygote" in " ".join(p.cmdline())]
    assert zygotes, [p.cmdline() for p in tree]

    marker = new_marker()
    results: list[ExecuteResult | BaseException] = []

    def in_flight() -> None:
        try:
            with Client(daemon.address, retry=NO_RETRY) as c:
                results.append(
                    c.execute("python", marked_program(marker, 1.5, "print('done')"), timeout_s=60)
                )
        except BaseException as e:  # reported by the assertions below
            results.append(e)

    # a Watch opened before the drain sees it turn NOT_SERVING
    watch_channel = grpc.insecure_channel(daemon.address)
    health_stub: Any = health_pb2_grpc.HealthStub(watch_channel)
    watch = health_stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
    try:
        assert next(watch).status == SERVING
        runner = threading.Thread(target=in_flight, name="in-flight")
        runner.start()
        try:
            pids = wait_for_pids(marker)
            tree = descendants(daemon.proc.pid)  # now with the worker that runs it
            assert set(pids) <= {p.pid for p in tree}
            daemon.proc.send_signal(signal.SIGTERM)
            daemon.wait_for_log("draining", timeout_s=10)
            statuses = [next(watch).status]
            while statuses[-1] == SERVING:
                statuses.append(next(watch).status)
            assert statuses[-1] == NOT_SERVING, statuses
            watch.cancel()

            with (
                Client(daemon.address, retry=NO_RETRY) as late,
                pytest.raises(Unavailable),
            ):
                late.execute("python", "print('too late')", timeout_s=10)
        finally:
            runner.join(timeout=60)
        assert not runner.is_alive()
    finally:
        watch.cancel()
        watch_channel.close()

    assert len(results) == 1
    result = results[0]
    assert isinstance(result, ExecuteResult), repr(result)
    assert result.verdict is Verdict.OK, result
    assert result.stdout == b"started\ndone\n"

    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    messages = daemon.log_messages()
    assert "draining" in messages and "stopped" in messages, messages
    assert messages.index("draining") < messages.index("stopped")
    assert messages[-1] == "stopped", messages

    alive = [p.pid for p in tree if still_running(p)]
    assert alive == [], "processes of the daemon outlived it"
    assert pids_named(marker) == []
    stale = [path for z in zygotes for path in glob.glob(f"/sys/fs/cgroup/*/sandboxd/z{z}-*")]
    assert stale == []


# -- 3. health ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", SERVICE, PYTHON_SERVICE, JAVASCRIPT_SERVICE])
def test_health_serving(zero_daemon: Daemon, service: str) -> None:
    assert wait_for_health(zero_daemon.address, service, SERVING) == SERVING


def test_health_unknown_service_is_not_found(zero_daemon: Daemon) -> None:
    with pytest.raises(grpc.RpcError) as info:
        health_status(zero_daemon.address, f"{SERVICE}/cobol")
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_broken_runtime_is_not_serving_and_unavailable(own_daemon: list[Daemon]) -> None:
    # an executable that is not node (a missing file is refused at start: a bad setting)
    daemon = start(["--node", "/usr/bin/false"])
    own_daemon.append(daemon)
    address = daemon.address
    assert wait_for_health(address, JAVASCRIPT_SERVICE, NOT_SERVING) == NOT_SERVING, "".join(
        daemon.raw_stderr[-30:]
    )
    assert health_status(address, PYTHON_SERVICE) == SERVING
    assert health_status(address, "") == NOT_SERVING  # not every runtime is serving

    with Client(address, retry=NO_RETRY) as c:
        with pytest.raises(Unavailable) as info:
            c.execute("javascript", "console.log('hi')", timeout_s=30)
        assert "javascript" in info.value.message.lower(), info.value.message
        result = c.execute("python", "print('still fine')", timeout_s=30)
    assert result.verdict is Verdict.OK
    assert result.stdout == b"still fine\n"
    assert health_status(address, PYTHON_SERVICE) == SERVING
    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])


# -- 4. reflection -----------------------------------------------------------------------------


def test_reflection_lists_the_services(zero_daemon: Daemon) -> None:
    with grpc.insecure_channel(zero_daemon.address) as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
        )
    assert len(responses) == 1
    names = {s.name for s in responses[0].list_services_response.service}
    assert names == {
        "sandboxd.v1.Sandbox",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
