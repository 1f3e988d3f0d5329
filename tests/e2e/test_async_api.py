"""Asynchronous executions through the real daemon: Submit, GetExecution (long-poll),
CancelExecution, idempotency keys, tenants, retention, the tenant bound, metrics, drain.

Whether a program ran is observed from the host: a marked program renames its process
(`/proc/self/comm`, see test_lifecycle.py), and the daemon logs every run ("execution
finished") with the request's labels, so a unique label counts the runs of one request."""

from __future__ import annotations

import asyncio
import secrets
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from sandboxd_client import (
    NO_RETRY,
    AsyncClient,
    Client,
    DeadlineExceeded,
    Execution,
    ExecutionState,
    Limits,
    NotFound,
    QuotaExceeded,
    Unavailable,
    Verdict,
)

from .conftest import TenantDaemon
from .daemon import Daemon, start
from .test_lifecycle import (
    MarkerWatch,
    descendants,
    marked_program,
    new_marker,
    pids_named,
    still_running,
    wait_for_pids,
    wait_until_gone,
)
from .test_payloads_metrics_logs import _metrics, _value

DONE_WITHIN_S = 60.0  # bounds for waits, never asserted as speed


def spinning_program(marker: str) -> str:
    return (
        f"open('/proc/self/comm', 'w').write({marker!r})\n"
        "print('started', flush=True)\n"
        "while True:\n"
        "    pass\n"
    )


def token() -> str:
    return secrets.token_hex(8)


def logs_with_label(daemon: Daemon, msg: str, label: str) -> list[dict[str, object]]:
    return [
        e
        for e in list(daemon.logs)
        if e.get("msg") == msg and isinstance(e.get("labels"), dict) and e["labels"] == {"t": label}
    ]


def wait_for_logs(daemon: Daemon, msg: str, label: str, count: int) -> list[dict[str, object]]:
    """At least `count` entries (the daemon's stderr is read by a thread: it may lag)."""
    deadline = time.monotonic() + 10
    while len(found := logs_with_label(daemon, msg, label)) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return found


@pytest.fixture()
def own_daemons() -> Iterator[list[Daemon]]:
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        if daemon.proc.poll() is None:
            try:
                daemon.stop()
            except Exception:
                daemon.proc.kill()
                daemon.proc.wait()


# -- submit, get, long-poll --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        ("python", "import sys; print(sys.stdin.read().upper(), sys.argv[1:])"),
        (
            "javascript",
            "let s=''; process.stdin.on('data', d => s += d);"
            "process.stdin.on('end', () => console.log(s.toUpperCase(), process.argv.slice(2)));",
        ),
    ],
)
def test_submit_then_get_done(client: Client, runtime: str, code: str) -> None:
    execution_id = client.submit(runtime, code, stdin=b"queued", args=["a"])
    assert len(execution_id) == 32
    execution = client.get_execution(execution_id, wait_ms=30_000, timeout_s=DONE_WITHIN_S)
    assert execution.execution_id == execution_id
    assert execution.state is ExecutionState.DONE and execution.finished
    assert execution.result is not None
    assert execution.result.execution_id == execution_id
    assert execution.result.verdict is Verdict.OK, execution.result
    expected = {"python": b"QUEUED ['a']\n", "javascript": b"QUEUED [ 'a' ]\n"}[runtime]
    assert execution.result.stdout == expected
    assert client.wait(execution_id, timeout_s=DONE_WITHIN_S) == execution


def test_a_failing_program_is_done_with_its_verdict(client: Client) -> None:
    execution = client.wait(client.submit("python", "raise SystemExit(4)"), DONE_WITHIN_S)
    assert execution.state is ExecutionState.DONE and execution.result is not None
    assert execution.result.verdict is Verdict.RUNTIME_ERROR
    assert execution.result.exit_code == 4


def test_long_poll_returns_when_the_execution_finishes(client: Client) -> None:
    execution_id = client.submit("python", "import time; time.sleep(0.5); print('late')")
    began = time.monotonic()
    execution = client.get_execution(execution_id, wait_ms=30_000, timeout_s=DONE_WITHIN_S)
    waited_s = time.monotonic() - began
    assert execution.state is ExecutionState.DONE
    assert execution.result is not None and execution.result.stdout == b"late\n"
    assert waited_s < 30, "the long-poll ran to its end instead of returning at DONE"


def test_long_poll_on_a_running_execution_returns_running_after_wait_ms(client: Client) -> None:
    marker = new_marker()
    execution_id = client.submit("python", marked_program(marker, 60))
    try:
        wait_for_pids(marker)
        began = time.monotonic()
        execution = client.get_execution(execution_id, wait_ms=300, timeout_s=DONE_WITHIN_S)
        assert time.monotonic() - began >= 0.3
        assert execution == Execution(execution_id, ExecutionState.RUNNING, None)
        assert client.get_execution(execution_id).state is ExecutionState.RUNNING  # wait_ms 0
        with pytest.raises(DeadlineExceeded):
            client.wait(execution_id, timeout_s=0.5)
    finally:
        client.cancel_execution(execution_id, timeout_s=DONE_WITHIN_S)
    assert wait_until_gone(marker) == []


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_kills_a_running_execution(zero_daemon: Daemon, client: Client) -> None:
    marker = new_marker()
    execution_id = client.submit("python", spinning_program(marker))
    pids = wait_for_pids(marker)
    assert len(pids) == 1, pids
    assert pids[0] in {p.pid for p in descendants(zero_daemon.proc.pid)}
    assert client.get_execution(execution_id).state is ExecutionState.RUNNING

    execution = client.cancel_execution(execution_id, timeout_s=DONE_WITHIN_S)
    assert execution.state is ExecutionState.DONE, execution
    assert execution.result is not None
    assert execution.result.verdict is Verdict.KILLED
    assert execution.result.stdout == b"started\n"
    assert wait_until_gone(marker) == []
    assert pids_named(marker) == []
    # idempotent: a second cancel reports the same finished execution
    assert client.cancel_execution(execution_id) == execution
    assert client.get_execution(execution_id) == execution


def test_cancel_of_a_queued_execution_means_it_never_runs(tenant_daemon: TenantDaemon) -> None:
    """alpha runs one execution at once: a second submit waits (QUEUED, not
    RESOURCE_EXHAUSTED), and cancelling it there means it never starts, even once the slot
    is free again. Async and sync executions share the tenant's slots."""
    daemon = tenant_daemon.daemon
    blocker_marker, queued_marker = new_marker(), new_marker()
    label = token()
    with tenant_daemon.client("alpha") as alpha, MarkerWatch(queued_marker) as watch:
        blocker = alpha.submit(
            "python", marked_program(blocker_marker, 60), limits=Limits(wall_time_ms=3000)
        )
        try:
            wait_for_pids(blocker_marker)
            queued = alpha.submit("python", marked_program(queued_marker, 0), labels={"t": label})
            began = time.monotonic()
            execution = alpha.get_execution(queued, wait_ms=300, timeout_s=DONE_WITHIN_S)
            assert time.monotonic() - began >= 0.3
            assert execution == Execution(queued, ExecutionState.QUEUED, None)
            assert _value(_metrics(daemon), "sandboxd_async_jobs_queued") == 1
            with (
                Client(daemon.address, api_key=tenant_daemon.keys["alpha"]) as sync,
                pytest.raises(QuotaExceeded),  # the async job holds alpha's only slot
            ):
                sync.execute("python", "print('sync')")

            cancelled = alpha.cancel_execution(queued)
            assert cancelled == Execution(queued, ExecutionState.CANCELLED, None)
            assert _value(_metrics(daemon), "sandboxd_async_jobs_queued") == 0
        finally:
            alpha.cancel_execution(blocker, timeout_s=DONE_WITHIN_S)
        assert alpha.wait(blocker, DONE_WITHIN_S).state is ExecutionState.DONE
        # the slot is free again and the queue moves on, without the cancelled one
        after = alpha.wait(alpha.submit("python", "print('next')"), DONE_WITHIN_S)
        assert after.result is not None and after.result.stdout == b"next\n"
        assert alpha.get_execution(queued) == cancelled
    assert watch.seen == set(), "the cancelled execution ran"
    assert logs_with_label(daemon, "execution finished", label) == []
    assert wait_until_gone(blocker_marker) == []


def test_queue_time_counts_into_queue_wait(tenant_daemon: TenantDaemon) -> None:
    daemon = tenant_daemon.daemon
    marker = new_marker()
    wait_sum = 'sandboxd_queue_wait_seconds_sum{runtime="python"}'
    with tenant_daemon.client("alpha") as alpha:
        blocker = alpha.submit(
            "python", marked_program(marker, 60), limits=Limits(wall_time_ms=3000)
        )
        try:
            wait_for_pids(marker)
            before = _value(_metrics(daemon), wait_sum)
            queued = alpha.submit("python", "print('finally')")
            assert alpha.get_execution(queued, wait_ms=300).state is ExecutionState.QUEUED
        finally:
            alpha.cancel_execution(blocker, timeout_s=DONE_WITHIN_S)
        execution = alpha.wait(queued, DONE_WITHIN_S)
    assert execution.result is not None and execution.result.stdout == b"finally\n"
    # it waited behind the blocker for at least the 300 ms long-poll
    assert execution.result.queue_wait_us >= 300_000
    assert _value(_metrics(daemon), wait_sum) - before >= 0.3
    assert wait_until_gone(marker) == []


# -- idempotency -------------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_execution(zero_daemon: Daemon, client: Client) -> None:
    label = token()
    key = "order-" + token()
    first = client.submit("python", "print('once')", idempotency_key=key, labels={"t": label})
    second = client.submit("python", "print('once')", idempotency_key=key, labels={"t": label})
    assert second == first
    assert client.wait(first, DONE_WITHIN_S).state is ExecutionState.DONE
    third = client.submit("python", "print('once')", idempotency_key=key, labels={"t": label})
    assert third == first  # also once it finished, while its result is kept
    other = client.submit("python", "print('once')", idempotency_key=key + "-2")
    assert other != first
    client.wait(other, DONE_WITHIN_S)
    submitted = wait_for_logs(zero_daemon, "execution submitted", label, 3)
    assert [e["deduplicated"] for e in submitted] == [False, True, True]
    assert len(wait_for_logs(zero_daemon, "execution finished", label, 1)) == 1


def test_concurrent_duplicate_submits_run_the_code_once(zero_daemon: Daemon) -> None:
    label = token()
    key = "burst-" + token()
    ok = 'sandboxd_executions_total{runtime="python",verdict="OK"}'
    before = _value(_metrics(zero_daemon), ok)
    barrier = threading.Barrier(8)
    ids: list[str] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            with Client(zero_daemon.address) as c:
                barrier.wait(timeout=30)
                ids.append(
                    c.submit(
                        "python",
                        "import time; time.sleep(0.3); print('ran')",
                        idempotency_key=key,
                        labels={"t": label},
                    )
                )
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(ids) == 8 and len(set(ids)) == 1, ids
    with Client(zero_daemon.address) as c:
        execution = c.wait(ids[0], DONE_WITHIN_S)
    assert execution.result is not None and execution.result.stdout == b"ran\n"
    assert len(wait_for_logs(zero_daemon, "execution submitted", label, 8)) == 8
    runs = wait_for_logs(zero_daemon, "execution finished", label, 1)
    assert [e["execution_id"] for e in runs] == [ids[0]]
    assert _value(_metrics(zero_daemon), ok) - before == 1


def test_idempotency_keys_are_per_tenant(tenant_daemon: TenantDaemon) -> None:
    key = "shared-" + token()
    with tenant_daemon.client("alpha") as alpha, tenant_daemon.client("beta") as beta:
        a = alpha.submit("python", "print('alpha')", idempotency_key=key)
        b = beta.submit("python", "print('beta')", idempotency_key=key)
        assert a != b
        result_a, result_b = alpha.wait(a, DONE_WITHIN_S).result, beta.wait(b, DONE_WITHIN_S).result
    assert result_a is not None and result_a.stdout == b"alpha\n"
    assert result_b is not None and result_b.stdout == b"beta\n"


def test_async_logs_carry_id_and_tenant_never_the_payload(
    zero_daemon: Daemon, client: Client
) -> None:
    secret = f"SECRET-{token()}"
    key = f"{secret}-key"
    submit = {
        "stdin": f"{secret}-stdin".encode(),
        "env": {"X": f"{secret}-env"},
        "files": {"f.txt": f"{secret}-file".encode()},
        "labels": {"job": "nightly"},
        "idempotency_key": key,
    }
    code = f"# {secret}-code\nimport sys\nprint(sys.stdin.read() + '-out')\n"
    execution_id = client.submit("python", code, **submit)  # type: ignore[arg-type]
    assert client.submit("python", code, **submit) == execution_id  # type: ignore[arg-type]
    execution = client.wait(execution_id, DONE_WITHIN_S)
    assert execution.result is not None and execution.result.stdout.startswith(secret.encode())
    entry = zero_daemon.wait_for_log_entry("execution submitted", execution_id=execution_id)
    assert entry["tenant"] == "default" and entry["runtime"] == "python"
    assert entry["labels"] == {"job": "nightly"} and entry["deduplicated"] is False
    zero_daemon.wait_for_log_entry(
        "execution submitted", execution_id=execution_id, deduplicated=True
    )
    zero_daemon.wait_for_log_entry("execution finished", execution_id=execution_id)
    assert secret not in "".join(zero_daemon.raw_stderr)


# -- tenants and retention ---------------------------------------------------------------------


def test_another_tenants_execution_is_not_found(tenant_daemon: TenantDaemon) -> None:
    with tenant_daemon.client("alpha") as alpha, tenant_daemon.client("beta") as beta:
        execution_id = alpha.submit("python", "print('mine')")
        with pytest.raises(NotFound):
            beta.get_execution(execution_id)
        with pytest.raises(NotFound):
            beta.cancel_execution(execution_id)
        with pytest.raises(NotFound):
            beta.get_execution("f" * 32)
        execution = alpha.wait(execution_id, DONE_WITHIN_S)
        assert execution.result is not None and execution.result.stdout == b"mine\n"
        with pytest.raises(NotFound):
            beta.get_execution(execution_id)


def test_results_expire_after_the_retention(own_daemons: list[Daemon]) -> None:
    daemon = start(["--result-retention-s", "1"])
    own_daemons.append(daemon)
    with Client(daemon.address) as c:
        key = "expiring-" + token()
        execution_id = c.submit("python", "print('kept a while')", idempotency_key=key)
        execution = c.wait(execution_id, DONE_WITHIN_S)
        assert execution.state is ExecutionState.DONE
        deadline = time.monotonic() + 30
        with pytest.raises(NotFound) as info:
            while time.monotonic() < deadline:
                c.get_execution(execution_id)
                time.sleep(0.1)
        assert "expired" in info.value.message
        # the key is free again: a new execution
        again = c.submit("python", "print('kept a while')", idempotency_key=key)
        assert again != execution_id
        assert c.wait(again, DONE_WITHIN_S).state is ExecutionState.DONE
    assert daemon.stop() == 0


# -- drain -------------------------------------------------------------------------------------


def test_sigterm_cancels_queued_executions_and_lets_running_ones_finish(
    own_daemons: list[Daemon],
) -> None:
    daemon = start(["--drain-grace", "20", "--max-concurrent", "1"])
    own_daemons.append(daemon)
    running_marker, queued_marker = new_marker(), new_marker()
    polls: dict[str, Execution | BaseException] = {}

    def long_poll(name: str, execution_id: str) -> None:
        try:
            with Client(daemon.address, retry=NO_RETRY) as c:
                polls[name] = c.get_execution(execution_id, wait_ms=30_000, timeout_s=60)
        except BaseException as e:  # reported below
            polls[name] = e

    with Client(daemon.address, retry=NO_RETRY) as c, MarkerWatch(queued_marker) as watch:
        running = c.submit("python", marked_program(running_marker, 3, "print('done')"))
        wait_for_pids(running_marker)
        tree = descendants(daemon.proc.pid)
        queued = c.submit("python", marked_program(queued_marker, 0))
        assert c.get_execution(queued).state is ExecutionState.QUEUED
        pollers = [
            threading.Thread(target=long_poll, args=("running", running)),
            threading.Thread(target=long_poll, args=("queued", queued)),
        ]
        for t in pollers:
            t.start()
        time.sleep(0.5)  # let both long-polls reach the server before the drain starts
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.wait_for_log("draining", timeout_s=10)
        with pytest.raises(Unavailable):
            c.submit("python", "print('too late')")
        for t in pollers:
            t.join(timeout=60)

    queued_poll, running_poll = polls["queued"], polls["running"]
    assert isinstance(queued_poll, Execution), repr(queued_poll)
    assert queued_poll == Execution(queued, ExecutionState.CANCELLED, None)
    assert isinstance(running_poll, Execution), repr(running_poll)
    assert running_poll.state is ExecutionState.DONE and running_poll.result is not None
    assert running_poll.result.verdict is Verdict.OK
    assert running_poll.result.stdout == b"started\ndone\n"

    assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])
    assert watch.seen == set(), "a queued execution started during the drain"
    cancelled = [e for e in daemon.logs if e.get("msg") == "execution cancelled"]
    assert [(e["execution_id"], e["draining"]) for e in cancelled] == [(queued, True)]
    messages = daemon.log_messages()
    assert messages[-1] == "stopped", messages
    assert [p.pid for p in tree if still_running(p)] == []
    assert pids_named(running_marker) == []


# -- the asyncio client ------------------------------------------------------------------------


def test_async_client_submit_get_wait_cancel(zero_daemon: Daemon) -> None:
    marker = new_marker()

    async def main() -> None:
        async with AsyncClient(zero_daemon.address) as c:
            quick = await c.submit("javascript", "console.log(6 * 7)", idempotency_key=token())
            done = await c.wait(quick, timeout_s=DONE_WITHIN_S)
            assert done.result is not None and done.result.stdout == b"42\n"
            assert await c.get_execution(quick) == done

            slow = await c.submit("python", spinning_program(marker))
            await asyncio.to_thread(wait_for_pids, marker)
            running = await c.get_execution(slow, wait_ms=200)
            assert running.state is ExecutionState.RUNNING
            with pytest.raises(DeadlineExceeded):
                await c.wait(slow, timeout_s=0.3)
            killed = await c.cancel_execution(slow, timeout_s=DONE_WITHIN_S)
            assert killed.state is ExecutionState.DONE and killed.result is not None
            assert killed.result.verdict is Verdict.KILLED
            with pytest.raises(NotFound):
                await c.get_execution("0" * 32)

    asyncio.run(main())
    assert wait_until_gone(marker) == []
