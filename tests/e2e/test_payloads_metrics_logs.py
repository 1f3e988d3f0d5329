"""64 MiB in both directions; the metrics endpoint moves; logs are JSON with execution id and
tenant, and never carry code, stdin or output."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
import uuid

import pytest

from sandboxd_client import Client, InvalidRequest, Limits, Verdict

from .daemon import Daemon

MIB = 1024 * 1024


def test_64_mib_stdin_and_stdout_round_trip(client: Client) -> None:
    data = os.urandom(64 * MIB)
    r = client.execute(
        "python",
        "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n",
        stdin=data,
        limits=Limits(max_output_bytes=64 * MIB, memory_bytes=512 * MIB, wall_time_ms=60_000),
        timeout_s=120,
    )
    assert r.verdict is Verdict.OK, (r.verdict, r.stderr[-500:])
    assert not r.stdout_truncated
    assert len(r.stdout) == len(data)
    assert hashlib.sha256(r.stdout).digest() == hashlib.sha256(data).digest()


def test_stdin_over_the_maximum_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidRequest) as info:
        client.execute("python", "pass", stdin=b"x" * (64 * MIB + 1), timeout_s=120)
    assert [v.field for v in info.value.violations] == ["stdin"]


def _metrics(daemon: Daemon) -> str:
    assert daemon.metrics_port
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_executions_and_rejections(zero_daemon: Daemon, client: Client) -> None:
    ok = 'sandboxd_executions_total{runtime="python",verdict="OK"}'
    err = 'sandboxd_executions_total{runtime="javascript",verdict="RUNTIME_ERROR"}'
    bad = 'sandboxd_requests_rejected_total{code="INVALID_ARGUMENT"}'
    before = _metrics(zero_daemon)
    for _ in range(3):
        assert client.execute("python", "print(1)").verdict is Verdict.OK
    client.execute("javascript", "process.exit(2)")
    with pytest.raises(InvalidRequest):
        client.execute("python", "print(1)", env={"A=B": "1"})
    after = _metrics(zero_daemon)
    assert _value(after, ok) == _value(before, ok) + 3
    assert _value(after, err) == _value(before, err) + 1
    assert _value(after, bad) == _value(before, bad) + 1
    count = 'sandboxd_execution_duration_seconds_count{runtime="python"}'
    assert _value(after, count) >= _value(before, count) + 3
    for name in (
        "sandboxd_queue_wait_seconds_bucket",
        "sandboxd_pool_ready_workers",
        "sandboxd_worker_boot_seconds_bucket",
        "sandboxd_execution_peak_memory_bytes_bucket",
        "sandboxd_executions_in_flight",
        "sandboxd_runtime_healthy",
    ):
        assert re.search(rf"^{name}[{{ ]", after, re.M), name
    assert _value(after, 'sandboxd_runtime_healthy{runtime="python"}') == 1.0


def test_logs_are_json_with_id_and_tenant_and_never_the_payload(
    zero_daemon: Daemon, client: Client
) -> None:
    secret = f"SECRET-{uuid.uuid4().hex}"
    r = client.execute(
        "python",
        f"# {secret}-code\nimport sys\nprint(sys.stdin.read() + '-out')\n"
        f"print('{secret}-err', file=sys.stderr)",
        stdin=f"{secret}-stdin".encode(),
        env={"X": f"{secret}-env"},
        files={"f.txt": f"{secret}-file".encode()},
        labels={"job": "nightly"},
    )
    assert r.verdict is Verdict.OK
    entry = zero_daemon.wait_for_log_entry("execution finished", execution_id=r.execution_id)
    assert entry["tenant"] == "default"
    assert entry["runtime"] == "python"
    assert entry["verdict"] == "OK"
    assert entry["labels"] == {"job": "nightly"}
    assert secret not in "".join(zero_daemon.raw_stderr)
