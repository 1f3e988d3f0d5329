"""SECURITY.md "Service attack review", JSON events, slow readers and file names: what one tenant's request makes the daemon itself hold or compute
(JSON events, streamed output), and file names. Each test starts its own daemon (port 0);
memory is the daemon process's RSS (psutil), compared with a baseline taken in the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sandboxd_client import (
    NO_RETRY,
    Client,
    DeadlineExceeded,
    ExecuteResult,
    InvalidRequest,
    Limits,
    Mode,
    Output,
    PermissionDenied,
    QuotaExceeded,
    Started,
    Verdict,
)

from .attack import PeakRss, hello, latencies, median
from .daemon import Daemon, start, tenants_file

MIB = 1024 * 1024
HANDLER = "def handler(event, context):\n    return 1\n"
# 64 MiB of `[[],[],...` (not closed, so invalid for any checker): json.loads made 22 million
# lists of it (+1.8 GB) before it found the end missing.
AMPLIFIER = b"[" + b"[]," * 22_369_000 + b"[]"
# As large, as cheap to refuse for any checker: a string that is never closed.
UNCLOSED = b'"' + b"a" * (len(AMPLIFIER) - 1)
WRITE_64_MIB = (
    "import sys\nchunk = b'x' * 65536\nfor _ in range(1024):\n    sys.stdout.buffer.write(chunk)\n"
)
BIG_OUTPUT = Limits(max_output_bytes=64 * MIB, wall_time_ms=120_000, cpu_time_ms=120_000)


def stopped(daemon: Daemon) -> None:
    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    errors = [e for e in daemon.logs if e.get("level") == "ERROR"]
    assert not errors, errors


@pytest.fixture()
def tenant_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, dict[str, str]]]:
    path = str(tmp_path / "tenants.toml")
    keys = tenants_file(
        path,
        {
            "victim": {},
            "mallory": {},
            "metered": {"max_executions_per_second": 0.001},  # one call, then none for long
            "jsonly": {"runtimes": ["javascript"]},
        },
    )
    daemon = start(["--tenants", path])
    yield daemon, keys
    stopped(daemon)


def refused_event(client: Client, event: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        client.submit("python", HANDLER, mode=Mode.HANDLER, event=event, timeout_s=120)
    assert [v.field for v in info.value.violations] == ["event"], info.value
    return info.value


def submit_attack(
    daemon: Daemon, victim: Client, attacker: Client, event: bytes, victim_timeout_s: float
) -> tuple[int, list[float], list[str]]:
    """Two threads each Submit `event` three times (each must be refused) while the victim
    runs hellos: (the daemon's RSS rise, the hellos' latencies, the refusal messages)."""
    peak = PeakRss(daemon.proc.pid)
    refusals: list[str] = []
    attackers = [
        threading.Thread(
            target=lambda: refusals.extend(refused_event(attacker, event).message for _ in range(3))
        )
        for _ in range(2)
    ]
    for thread in attackers:
        thread.start()
    during: list[float] = []
    while any(t.is_alive() for t in attackers) or not during:
        during.append(hello(victim, victim_timeout_s))
    for thread in attackers:
        thread.join()
    assert len(refusals) == 6, refusals
    return peak.stop(), during, refusals


def test_a_json_amplification_event_costs_what_any_refused_payload_costs(
    tenant_daemon: tuple[Daemon, dict[str, str]],
) -> None:
    """Submits of 64 MiB `[[],[],...]` events, two at a time, are refused (too many values);
    the daemon's RSS rise and another tenant's hello latency stay those of the same attack with
    64 MiB events refused for an unclosed string (the baseline, in this test). Before the fix
    json.loads built 22 million lists per event (+1.8 GB) holding the GIL for seconds."""
    daemon, keys = tenant_daemon
    with (
        Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim,
        Client(daemon.address, api_key=keys["mallory"], retry=NO_RETRY) as mallory,
    ):
        latencies(victim, 3)
        quiet = median(latencies(victim, 10))
        timeout_s = max(10.0, 200 * quiet)
        cheap_rise, cheap_latencies, cheap = submit_attack(
            daemon, victim, mallory, UNCLOSED, timeout_s
        )
        rise, during, refusals = submit_attack(daemon, victim, mallory, AMPLIFIER, timeout_s)
        assert rise <= 2 * cheap_rise, (rise / MIB, cheap_rise / MIB)
        baseline = max(quiet, median(cheap_latencies))
        assert median(during) <= 5 * baseline, (quiet, cheap_latencies, during)
        assert all("string is not closed" in m for m in cheap), cheap
        assert all("has more than 1000000 values" in m for m in refusals), refusals


def daemon_cpu_s(daemon: Daemon) -> float:
    times = psutil.Process(daemon.proc.pid).cpu_times()
    return float(times.user + times.system)


def test_an_invalid_event_spends_no_quota_and_little_cpu(
    tenant_daemon: tuple[Daemon, dict[str, str]],
) -> None:
    """The order of admission (docs/architecture.md): a request is checked before it spends
    quota, so a bad one spends none; what the check costs is bounded. A tenant allowed one
    execution for a long time sends two 64 MiB amplifier Submits: both are refused
    INVALID_ARGUMENT, the daemon's CPU for them stays within three times that of two 64 MiB
    Submits refused before any check (a runtime the tenant may not use: receiving and decoding
    only), and the tenant's one execution is still there for a valid Submit (the next is
    refused by the rate quota). The attack review had put quota first: there the second amplifier was
    refused by the quota and the valid Submit too."""
    daemon, keys = tenant_daemon
    with (
        Client(daemon.address, api_key=keys["metered"], retry=NO_RETRY) as metered,
        Client(daemon.address, api_key=keys["jsonly"], retry=NO_RETRY) as jsonly,
    ):
        before = daemon_cpu_s(daemon)
        for _ in range(2):
            with pytest.raises(PermissionDenied):
                jsonly.submit("python", HANDLER, mode=Mode.HANDLER, event=AMPLIFIER, timeout_s=120)
        decoding_s = daemon_cpu_s(daemon) - before
        before = daemon_cpu_s(daemon)
        refusals = [refused_event(metered, AMPLIFIER).message for _ in range(2)]
        checking_s = daemon_cpu_s(daemon) - before
        assert all("has more than 1000000 values" in m for m in refusals), refusals
        assert checking_s <= 3 * decoding_s, (checking_s, decoding_s)
        execution_id = metered.submit("python", HANDLER, mode=Mode.HANDLER, event=b"[1]")
        done = metered.wait(execution_id, timeout_s=120).result
        assert done is not None and done.verdict is Verdict.OK and done.result == b"1", done
        with pytest.raises(QuotaExceeded) as info:
            metered.submit("python", HANDLER, mode=Mode.HANDLER, event=b"[1]", timeout_s=120)
        assert [v.subject for v in info.value.violations] == [
            "tenant:metered:executions_per_second"
        ]


def test_a_slow_stream_reader_holds_the_program_not_the_output(
    tenant_daemon: tuple[Daemon, dict[str, str]],
) -> None:
    """Four ExecuteStreams of 64 MiB of output whose clients stop reading after the first
    event: the programs are held (none finishes while their clients stall) and the daemon's
    RSS rises by less than two Executes of the same program cost it (the baseline, in this
    test); then the clients read on and get every byte, verdict OK. Before the fix the
    programs ran to the end at once and each stalled stream held its whole output ~3.7 times
    over (four: ~1 GB)."""
    daemon, keys = tenant_daemon
    with Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim:
        peak = PeakRss(daemon.proc.pid)
        result = victim.execute("python", WRITE_64_MIB, limits=BIG_OUTPUT, timeout_s=120)
        execute_rise = peak.stop()
        assert result.verdict is Verdict.OK and len(result.stdout) == 64 * MIB

    readers = [
        Client(
            daemon.address,
            api_key=keys["victim"],
            retry=NO_RETRY,
            channel_options=[("grpc.use_local_subchannel_pool", 1)],  # a connection each
        )
        for _ in range(4)
    ]
    try:
        streams = [
            r.stream("python", WRITE_64_MIB, limits=BIG_OUTPUT, timeout_s=120) for r in readers
        ]
        peak = PeakRss(daemon.proc.pid)
        ids = []
        for stream in streams:
            started = next(stream)
            assert isinstance(started, Started)
            ids.append(started.execution_id)
        time.sleep(3)  # the programs write, their clients do not read
        stalled_rise = peak.stop()
        finished = {
            e.get("execution_id") for e in daemon.logs if e.get("msg") == "execution finished"
        }
        assert not finished & set(ids), "a program ran to its end while its client stalled"
        for stream in streams:
            received = 0
            final: ExecuteResult | None = None
            for event in stream:
                if isinstance(event, Output):
                    received += len(event.data)
                elif isinstance(event, ExecuteResult):
                    final = event
            assert final is not None and final.verdict is Verdict.OK, final
            assert received == 64 * MIB
        assert stalled_rise < 2 * execute_rise, (stalled_rise / MIB, execute_rise / MIB)
    finally:
        for reader in readers:
            reader.close()


def test_a_stream_whose_client_never_reads_is_ended_and_its_worker_killed(tmp_path: Path) -> None:
    path = str(tmp_path / "tenants.toml")
    keys = tenants_file(path, {"victim": {}})
    daemon = start(["--tenants", path, "--idle-timeout-s", "1"])
    try:
        with Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim:
            stream = victim.stream(
                "python", "while True: print('x' * 65536, flush=True)", limits=BIG_OUTPUT
            )
            started = next(stream)
            assert isinstance(started, Started)
            entry = daemon.wait_for_log_entry(
                "execution finished", timeout_s=60, execution_id=started.execution_id
            )
            assert entry["verdict"] == "KILLED"
            with pytest.raises(DeadlineExceeded) as info:
                for _ in stream:
                    pass
            assert "--idle-timeout-s" in info.value.message
    finally:
        stopped(daemon)


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_file_names_starting_with_two_dots_are_files(
    tenant_daemon: tuple[Daemon, dict[str, str]], runtime: str
) -> None:
    daemon, keys = tenant_daemon
    code = {
        "python": "print(open('..data').read(), open('...').read(), open('d/..x').read())",
        "javascript": "const fs = require('fs');\n"
        "console.log(['..data', '...', 'd/..x'].map(f => fs.readFileSync(f, 'utf8')).join(' '))",
    }[runtime]
    files = {"..data": b"one", "...": b"two", "d/..x": b"three"}
    with Client(daemon.address, api_key=keys["victim"], retry=NO_RETRY) as victim:
        result = victim.execute(runtime, code, files=files, timeout_s=60)
    assert result.verdict is Verdict.OK, result
    assert result.stdout == b"one two three\n"
