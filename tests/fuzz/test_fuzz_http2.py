"""Truncated and malformed gRPC over a raw HTTP/2 client (the `h2` package on a plain
socket), below anything a gRPC library would send. Expected answers, each grpc's own and
never our servicer's (conftest.py checks the daemon logged no ERROR after each test):
  declared length longer than the data, then END_STREAM   UNIMPLEMENTED (grpcio: no message)
  compressed flag without grpc-encoding                   INTERNAL from grpc core
  declared length over the maximum                        RESOURCE_EXHAUSTED from grpc core
  a complete but undecodable message                      INVALID_ARGUMENT (ours)
  RST_STREAM mid-message, huge header lists, no `te`,
  GET, garbage preface                                    a reset, GOAWAY or close; no crash
A complete request that gets nothing back within ANSWER_WITHIN_S is "silent", a failure (a
hung daemon); only a request the client left open or reset may go unanswered.
"""

from __future__ import annotations

import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from hypothesis import event, given
from hypothesis import strategies as st

from . import wire
from .conftest import MAX_MESSAGE_BYTES, FuzzDaemon, budget

OURS_INTERNAL = "internal error (request id"
SILENT = "silent"
ANSWER_WITHIN_S = 30.0  # a bound for "answered" on a loaded machine, not a speed assertion
SILENCE_S = 1.0  # how long an unfinished (open or reset) request is listened to
BODY = wire.execute_request()


def frame(body: bytes, flag: int = 0, length: int | None = None) -> bytes:
    return bytes([flag]) + struct.pack(">I", len(body) if length is None else length) + body


def exchange(
    address: str,
    chunks: list[bytes],
    *,
    headers: list[tuple[str, str]] | None = None,
    extra: list[tuple[str, str]] = (),  # type: ignore[assignment]
    end: bool = True,
    reset: bool = False,
    preface: bytes | None = None,
    until_settings: bool = False,
) -> dict[str, str]:
    """Send one request stream; the response headers and trailers, or {"outcome": ...}."""
    host, port = address.rsplit(":", 1)
    headers = headers or [
        (":method", "POST"), (":scheme", "http"), (":path", "/sandboxd.v1.Sandbox/Execute"),
        (":authority", address), ("content-type", "application/grpc"), ("te", "trailers"),
    ]  # fmt: skip
    got: dict[str, str] = {}
    with socket.create_connection((host, int(port)), timeout=ANSWER_WITHIN_S) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        if preface is not None:
            sock.sendall(preface)
        else:
            conn.initiate_connection()
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [*headers, *extra], end_stream=end and not chunks)
            for i, chunk in enumerate(chunks):
                conn.send_data(sid, chunk, end_stream=end and i == len(chunks) - 1)
            if reset:
                conn.reset_stream(sid)
            sock.sendall(conn.data_to_send())
        # A complete request must be answered; one left open or reset may get no answer.
        deadline = time.monotonic() + (SILENCE_S if reset or not end else ANSWER_WITHIN_S)
        try:
            while "outcome" not in got:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    got["outcome"] = "closed"
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        got.update({_s(k): _s(v) for k, v in ev.headers})
                    elif isinstance(ev, h2.events.StreamEnded):
                        got["outcome"] = "ended"
                    elif isinstance(ev, h2.events.StreamReset | h2.events.ConnectionTerminated):
                        got["outcome"] = type(ev).__name__
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.RemoteSettingsChanged):
                        got["server settings"] = "received"  # its preface, sent at once
                        if until_settings:
                            got["outcome"] = "server settings"
                if preface is None:
                    sock.sendall(conn.data_to_send())
        except TimeoutError:
            got["outcome"] = SILENT  # nothing at all: a hung daemon looks like this, never "closed"
        except ConnectionError:
            got["outcome"] = "closed"  # reset by the peer: the kernel's answer for a live process
        except h2.exceptions.ProtocolError:
            got["outcome"] = "protocol error"
    assert OURS_INTERNAL not in got.get("grpc-message", ""), got
    return got


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def with_key(fuzz: FuzzDaemon) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {fuzz.keys['fuzz']}")]


def test_a_well_formed_call_works(fuzz_daemon: FuzzDaemon) -> None:
    got = exchange(fuzz_daemon.address, [frame(BODY)], extra=with_key(fuzz_daemon))
    assert got.get("grpc-status") == "0", got


def test_declared_length_longer_than_the_data(fuzz_daemon: FuzzDaemon) -> None:
    got = exchange(
        fuzz_daemon.address, [frame(BODY, length=len(BODY) + 10)], extra=with_key(fuzz_daemon)
    )
    assert got.get("grpc-status") == "12", got  # grpcio: a unary call without a message


def test_compressed_flag_without_an_encoding(fuzz_daemon: FuzzDaemon) -> None:
    got = exchange(fuzz_daemon.address, [frame(BODY, flag=1)], extra=with_key(fuzz_daemon))
    assert got.get("grpc-status") == "13", got  # grpc core, before any handler
    assert "ompression" in got.get("grpc-message", ""), got


def test_declared_length_over_the_maximum(fuzz_daemon: FuzzDaemon) -> None:
    got = exchange(
        fuzz_daemon.address, [frame(b"x", length=2**32 - 1)], extra=with_key(fuzz_daemon)
    )
    assert got.get("grpc-status") == "8", got
    assert "larger than max" in got.get("grpc-message", ""), got


def test_shorter_declared_length_is_an_undecodable_request(fuzz_daemon: FuzzDaemon) -> None:
    got = exchange(
        fuzz_daemon.address, [frame(BODY, length=len(BODY) - 3)], extra=with_key(fuzz_daemon)
    )
    assert got.get("grpc-status") == "3", got
    assert got.get("grpc-message", "").startswith("request:"), got


def test_protocol_violations_are_refused(fuzz_daemon: FuzzDaemon) -> None:
    address = fuzz_daemon.address
    reset = exchange(address, [frame(BODY, length=len(BODY) + 10)], end=False, reset=True)
    assert "grpc-status" not in reset, reset
    no_te = exchange(address, [frame(BODY)], headers=[
        (":method", "POST"), (":scheme", "http"), (":path", "/sandboxd.v1.Sandbox/Execute"),
        (":authority", address), ("content-type", "application/grpc"),
    ])  # fmt: skip
    assert no_te["outcome"] == "StreamReset", no_te
    for preface in (b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100):
        got = exchange(address, [], preface=preface)
        assert got["outcome"] in ("closed", "ConnectionTerminated"), (preface, got)
    # the client preface alone, without the SETTINGS frame that must follow: the server sends
    # its own SETTINGS and waits (no close, and no silence)
    got = exchange(address, [], preface=b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", until_settings=True)
    assert got["outcome"] == "server settings", got


@budget(12)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=4),
    prefix=st.sampled_from([b"", frame(BODY)[:5], frame(b"")]),
    end=st.booleans(),
    reset=st.booleans(),
    extra=st.lists(
        st.tuples(
            st.from_regex(r"x-[a-z]{1,10}", fullmatch=True), st.sampled_from(["v", "v" * 20_000])
        ),
        max_size=40,
    ),
    path=st.sampled_from(["Execute", "ExecuteStream", "Submit", "GetExecution", "Nope"]),
)
def test_random_frames(
    fuzz_daemon: FuzzDaemon, chunks: list[bytes], prefix: bytes, end: bool, reset: bool,
    extra: list[tuple[str, str]], path: str,
) -> None:  # fmt: skip
    address = fuzz_daemon.address
    headers = [
        (":method", "POST"), (":scheme", "http"), (":path", f"/sandboxd.v1.Sandbox/{path}"),
        (":authority", address), ("content-type", "application/grpc"), ("te", "trailers"),
        *with_key(fuzz_daemon),
    ]  # fmt: skip
    body = [prefix + b"".join(chunks)] if prefix or chunks else []
    end = end or not body
    got = exchange(address, body, headers=headers, extra=extra, end=end, reset=reset)
    status = got.get("grpc-status")
    event(f"{path}: grpc-status {status} / {got.get('outcome')}")
    # grpc core's INTERNAL only for framing it rejects itself (compression flag), never ours
    if status == "13":
        assert "ompression" in got.get("grpc-message", ""), got
    assert status in (None, "0", "3", "5", "8", "12"), got
    if end and not reset:
        assert got["outcome"] != SILENT, got  # answered, not hung
    assert len(b"".join(body)) < MAX_MESSAGE_BYTES
