"""What the service-security tests (SECURITY.md "Service attack review") do to a daemon, and how they measure it.

`Attack`: raw gRPC calls an attacker would make: calls whose request body never arrives,
reflection streams that never ask anything. `PeakRss`: the largest RSS of a process while
it runs (psutil, sampled every few milliseconds). `latencies`: wall times of a tenant's
hellos, for comparison with a baseline taken in the same test."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import psutil
from grpc_reflection.v1alpha import reflection_pb2_grpc

from sandboxd_client import Client, Verdict

RAW_OPTIONS = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # a connection of its own: channels of one process otherwise share them
    ("grpc.use_local_subchannel_pool", 1),
)
HELLO = "print('hello')"


class Attack:
    """Calls left open until `close()`; each has its own future (or stream)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._release = threading.Event()
        self._channels: list[grpc.Channel] = []
        self.calls: list[Any] = []

    def __enter__(self) -> Attack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def channel(self, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        channel = grpc.insecure_channel(self.address, options=[*RAW_OPTIONS, *options])
        self._channels.append(channel)
        return channel

    def _never(self) -> Iterator[bytes]:
        """A request stream that sends nothing (and ends only at close())."""
        self._release.wait()
        yield from ()

    def bodiless(
        self, method: str, count: int, key: str | None, channel: grpc.Channel | None = None
    ) -> list[Any]:
        """`count` calls of `method` whose request message never arrives (the client keeps
        the stream open without sending): the unary method's handler would wait for it."""
        channel = channel or self.channel()
        call = channel.stream_unary(method, lambda x: x, lambda x: x)
        metadata = (("authorization", f"Bearer {key}"),) if key is not None else ()
        futures: list[Any] = [call.future(self._never(), metadata=metadata) for _ in range(count)]
        self.calls.extend(futures)
        return futures

    def reflection_streams(self, count: int) -> list[Any]:
        """`count` ServerReflectionInfo streams that never send a request."""
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(self.channel())
        streams = [stub.ServerReflectionInfo(self._never()) for _ in range(count)]
        self.calls.extend(streams)
        return streams

    def close(self) -> None:
        self._release.set()
        for call in self.calls:
            call.cancel()
        for channel in self._channels:
            channel.close()


def outcome(call: Any) -> str:
    """ "open", or the status code name of a finished call."""
    if not call.done():
        return "open"
    code = call.code()
    return "OK" if code is grpc.StatusCode.OK else code.name


def wait_settled(calls: Sequence[Any], open_wanted: int, timeout_s: float = 30.0) -> None:
    """Until no more than `open_wanted` of `calls` are still open (refusals arrive)."""
    deadline = time.monotonic() + timeout_s
    while sum(1 for c in calls if not c.done()) > open_wanted and time.monotonic() < deadline:
        time.sleep(0.02)


class PeakRss:
    """The largest RSS of `pid` between start and `stop()`, above its RSS at start."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.start_rss = self._process.memory_info().rss
        self.peak_rss = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            time.sleep(0.002)

    def stop(self) -> int:
        """The rise in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak_rss - self.start_rss


def hello(client: Client, timeout_s: float) -> float:
    """One hello's wall time (it must run OK)."""
    started = time.monotonic()
    result = client.execute("python", HELLO, timeout_s=timeout_s)
    took = time.monotonic() - started
    assert result.verdict is Verdict.OK and result.stdout == b"hello\n", result
    return took


def latencies(client: Client, count: int, timeout_s: float = 60.0) -> list[float]:
    return [hello(client, timeout_s) for _ in range(count)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
