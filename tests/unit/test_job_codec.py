"""What the Redis backend stores: a job's request and its result, as bytes and back."""

from __future__ import annotations

import pytest

from sandboxd.cluster.codec import (
    CodecError,
    decode_outcome,
    decode_spec,
    encode_outcome,
    encode_spec,
)
from sandboxd.jobs.contract import JobSpec
from sandboxd_pool import ExecutionRequest, Limits, Outcome, Runtime, Verdict
from sandboxd_pool.types import EgressEntry, Mode, Usage


def test_a_spec_round_trips_with_binary_payloads() -> None:
    spec = JobSpec(
        tenant="acme",
        max_concurrent_executions=3,
        request=ExecutionRequest(
            runtime=Runtime.JAVASCRIPT,
            code="exports.handler = async (e) => e; // é",
            stdin=bytes(range(256)) * 10,
            args=("a", "b c"),
            env={"K": "v"},
            files={"data/x.bin": b"\x00\xff", "y.txt": b""},
            limits=Limits(wall_time_ms=1234, memory_bytes=1 << 20),
            tenant="acme",
            mode=Mode.HANDLER,
            event=b'{"x": 1}',
        ),
        labels={"team": "red"},
        idempotency_key="key-1",
    )
    assert decode_spec(encode_spec(spec)) == spec


def test_a_large_stdin_is_stored_raw_not_encoded() -> None:
    stdin = b"\x01" * (4 << 20)
    spec = JobSpec("t", 1, ExecutionRequest(runtime=Runtime.PYTHON, code="", stdin=stdin))
    data = encode_spec(spec)
    assert len(data) < len(stdin) + 1024
    assert decode_spec(data).request.stdin == stdin


def test_an_outcome_round_trips() -> None:
    outcome = Outcome(
        verdict=Verdict.SYSCALL_BLOCKED,
        exit_code=None,
        signal=31,
        stdout=b"out\x00",
        stderr=b"err",
        stdout_truncated=True,
        blocked_syscall="ptrace",
        usage=Usage(wall_time_us=5, cpu_time_us=4, peak_memory_bytes=3),
        cold_start=True,
        queue_wait_us=9,
        worker_boot_us=8,
        execution_id="abc",
        result=b'{"r": 2}',
    )
    assert decode_outcome(encode_outcome(outcome)) == outcome


def test_garbage_is_refused() -> None:
    with pytest.raises(CodecError):
        decode_outcome(b"something else")
    good = encode_outcome(Outcome(verdict=Verdict.OK))
    with pytest.raises(CodecError):
        decode_outcome(good + b"x")
    with pytest.raises(CodecError):
        decode_spec(good)


def test_egress_round_trips_without_a_secret() -> None:
    """A job keeps the request's own egress list (the policy, with the tenant's secrets, is
    made when it runs); its result keeps the egress summary."""
    spec = JobSpec(
        "acme",
        1,
        ExecutionRequest(runtime=Runtime.PYTHON, code=""),
        egress=("api.example.test:443", "[2001:db8::1]:8443"),
    )
    assert decode_spec(encode_spec(spec)) == spec
    outcome = Outcome(
        verdict=Verdict.OK,
        egress=(
            EgressEntry("api.example.test", 443, True, 2, 100, 2000),
            EgressEntry("evil.test", 443, False, 1, 0, 0, "not in the rules"),
        ),
    )
    assert decode_outcome(encode_outcome(outcome)) == outcome


def test_an_environment_and_output_files_round_trip() -> None:
    from sandboxd.cluster.codec import decode_outcome, decode_spec, encode_outcome, encode_spec
    from sandboxd_pool.types import OutputFile

    spec = JobSpec(
        tenant="t",
        max_concurrent_executions=1,
        request=ExecutionRequest(runtime=Runtime.PYTHON, code="1", environment="data"),
    )
    assert decode_spec(encode_spec(spec)).request.environment == "data"
    files = (OutputFile("chart.png", b"\x89PNG\x00\xff"), OutputFile("d/e.csv", b""))
    outcome = Outcome(verdict=Verdict.OK, files=files, files_truncated=True, stdout=b"x")
    back = decode_outcome(encode_outcome(outcome))
    assert back.files == files and back.files_truncated and back.stdout == b"x"
