"""Three real daemons sharing one real Redis (conftest.py): async jobs spread over the nodes,
survive a node killed with SIGKILL and a Redis restart, are cancelled from any node, run once
per idempotency key, and respect cluster-wide tenant quotas.

Which node ran a job is read from the daemons' logs ("execution taken", with the execution
id); whether a program still runs, from its process name (test_lifecycle.marked_program)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psutil
import pytest
from e2e.daemon import Daemon
from e2e.test_lifecycle import marked_program, new_marker, pids_named, wait_for_pids

from sandboxd_client import (
    NO_RETRY,
    Client,
    ExecuteResult,
    Execution,
    ExecutionState,
    Limits,
    NotFound,
    OutputFile,
    QuotaExceeded,
    Unavailable,
    Verdict,
)

from .conftest import Cluster

DONE_WITHIN_S = 90.0  # bounds for "eventually", never asserted as speed
T = TypeVar("T")


def eventually(fn: Callable[[], T | None], timeout_s: float = DONE_WITHIN_S, what: str = "") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.05)


def taken_ids(node: Daemon) -> list[str]:
    return [str(e["execution_id"]) for e in list(node.logs) if e.get("msg") == "execution taken"]


def finished_ids(node: Daemon) -> list[str]:
    return [str(e["execution_id"]) for e in list(node.logs) if e.get("msg") == "execution finished"]


def runners(nodes: Iterable[Daemon], execution_id: str) -> list[int]:
    return [i for i, node in enumerate(nodes) if execution_id in taken_ids(node)]


def wait_done(client: Client, execution_id: str) -> Execution:
    """GetExecution until DONE/CANCELLED; UNAVAILABLE (Redis restarting) is retried."""
    deadline = time.monotonic() + DONE_WITHIN_S
    while True:
        try:
            execution = client.get_execution(execution_id, wait_ms=5000, timeout_s=15)
        except Unavailable:
            execution = None
        if execution is not None and execution.finished:
            return execution
        assert time.monotonic() < deadline, f"{execution_id} not finished: {execution}"
        if execution is None:
            time.sleep(0.2)


def job_record(cluster: Cluster, execution_id: str) -> dict[str, str]:
    """The job's hash in Redis (state, attempts: how many times a node took it to run)."""
    r = cluster.redis.client()
    try:
        raw = r.hgetall(f"sandboxd:job:{execution_id}")
        entries = r.xrange("sandboxd:jobs")
    finally:
        r.close()
    record = {k.decode(): v.decode() for k, v in raw.items()}
    # the stream entry of a finished job is deleted: no node can take it again
    record["in stream"] = str(any(f.get(b"id") == execution_id.encode() for _, f in entries))
    return record


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in points:  # an end at the same instant as a start sorts first (-1 < 1)
        running += delta
        peak = max(peak, running)
    return peak


TIMED = (
    "import time, sys\n"
    "start = time.time()\n"
    "time.sleep({sleep_s})\n"
    "print(repr(start), repr(time.time()))\n"
)


def interval(stdout: bytes) -> tuple[float, float]:
    start, end = stdout.split()
    return float(start), float(end)


# -- spread, takeover, idempotency -----------------------------------------------------------------


def test_200_jobs_spread_over_all_nodes(cluster: Cluster) -> None:
    clients = [cluster.client(i) for i in range(3)]
    try:
        ids = [
            clients[i % 3].submit("python", f"import time; time.sleep(0.05); print({i})")
            for i in range(200)
        ]
        assert len(set(ids)) == 200
        for i, execution_id in enumerate(ids):
            execution = wait_done(clients[(i + 1) % 3], execution_id)
            assert execution.state is ExecutionState.DONE
            assert execution.result is not None and execution.result.verdict is Verdict.OK
            assert execution.result.stdout == f"{i}\n".encode()
        ran = [set(ids) & set(eventually(lambda n=node: taken_ids(n))) for node in cluster.nodes]
        assert all(ran), [len(r) for r in ran]
        eventually(
            lambda: sum(len(set(ids) & set(taken_ids(n))) for n in cluster.nodes) == 200,
            10,
            "every job logged as taken",
        )
        per_node = [len(set(ids) & set(taken_ids(n))) for n in cluster.nodes]
        assert sum(per_node) == 200, per_node  # none ran twice: no node died
        assert min(per_node) > 0, per_node
    finally:
        for c in clients:
            c.close()


def test_a_node_killed_mid_job_its_jobs_finish_elsewhere_with_one_result(
    cluster: Cluster,
) -> None:
    doomed = cluster.start_node()
    program = "import os, time\ntoken = os.urandom(8).hex()\ntime.sleep(1.5)\nprint(token)\n"
    try:
        with Client(doomed.address, api_key=cluster.keys["beta"]) as via_doomed:
            ids = [via_doomed.submit("python", program) for _ in range(24)]
        # the doomed node takes some of them (4 nodes x 4 slots for 24 jobs)
        held = eventually(lambda: set(ids) & set(taken_ids(doomed)), 30, "doomed node took jobs")
        tree = psutil.Process(doomed.proc.pid).children(recursive=True)
        doomed.proc.kill()  # SIGKILL: no drain, no result written, leases not given back
        doomed.proc.wait()
        assert doomed._reader is not None
        doomed._reader.join(30)  # every line it wrote before dying is read (EOF)
        assert not doomed._reader.is_alive()
        unfinished_there = held - set(finished_ids(doomed))
        # jobs sleep 1.5 s and it was killed as soon as it took some: some were running there
        assert unfinished_there, (held, finished_ids(doomed))
        clients = [cluster.client(i) for i in range(3)]
        try:
            results: dict[str, bytes] = {}
            for k, execution_id in enumerate(ids):
                execution = wait_done(clients[k % 3], execution_id)
                assert execution.state is ExecutionState.DONE, execution
                assert execution.result is not None
                assert execution.result.verdict is Verdict.OK, execution.result
                results[execution_id] = execution.result.stdout
            # exactly one result per id: every node answers the same, later too
            for execution_id in ids:
                for c in clients:
                    again = c.get_execution(execution_id)
                    assert again.result is not None
                    assert again.result.stdout == results[execution_id]
            assert len(set(results.values())) == 24
            # the jobs the dead node held were taken over and run again by the others
            for execution_id in unfinished_there:
                assert runners(cluster.nodes, execution_id), execution_id
            taken_over = {
                str(e["execution_id"])
                for n in cluster.nodes
                for e in list(n.logs)
                if e.get("msg") == "execution taken over from a node that stopped renewing it"
            }
            assert unfinished_there <= taken_over
            # Redis agrees: exactly the jobs taken over were taken twice or more, none of them
            # still in the stream
            records = {i: job_record(cluster, i) for i in ids}
            assert {i for i, r in records.items() if int(r["attempts"]) > 1} == taken_over
            assert all(r["state"] == "DONE" and r["in stream"] == "False" for r in records.values())
        finally:
            for c in clients:
                c.close()
        # the dead node's zygote kills its workers and exits (EOF on its socket)
        eventually(
            lambda: not [p for p in tree if p.is_running() and p.status() != "zombie"],
            30,
            "the killed node's zygote and workers are gone",
        )
    finally:
        if doomed.proc.poll() is None:
            doomed.proc.kill()
            doomed.proc.wait()


def test_concurrent_duplicate_submits_across_nodes_run_once(cluster: Cluster) -> None:
    key = "dup-" + secrets.token_hex(8)
    label = secrets.token_hex(8)
    clients = [cluster.client(i) for i in range(3)]
    barrier = threading.Barrier(12)

    def submit(k: int) -> str:
        barrier.wait()
        return clients[k % 3].submit(
            "python",
            "import time; time.sleep(0.3); print('once')",
            idempotency_key=key,
            labels={"t": label},
        )

    try:
        with ThreadPoolExecutor(12) as pool:
            ids = list(pool.map(submit, range(12)))
        assert len(set(ids)) == 1, ids
        execution = wait_done(clients[0], ids[0])
        assert execution.result is not None and execution.result.stdout == b"once\n"
        # Redis's own account, final once the job is DONE (a node taking its entry later skips
        # it, and the entry is gone): taken to run exactly once, by one node.
        record = job_record(cluster, ids[0])
        assert (record["state"], record["attempts"], record["in stream"]) == ("DONE", "1", "False")
        ran_on = eventually(lambda: runners(cluster.nodes, ids[0]), 30, "the run logged")
        assert len(ran_on) == 1, ran_on
        runs = eventually(
            lambda: [
                e
                for n in cluster.nodes
                for e in list(n.logs)
                if e.get("msg") == "execution finished" and e.get("labels") == {"t": label}
            ],
            30,
            "the run's finish logged",
        )
        assert len(runs) == 1, runs
        assert runs[0]["execution_id"] == ids[0]
        # the same key from another tenant is another execution
        with cluster.client(0, "gamma") as other:
            other_id = other.submit("python", "print('other')", idempotency_key=key)
        assert other_id != ids[0]
    finally:
        for c in clients:
            c.close()


def test_another_tenants_id_is_not_found_on_every_node(cluster: Cluster) -> None:
    with cluster.client(0) as beta:
        execution_id = beta.submit("python", "print(1)")
        wait_done(beta, execution_id)
    for node in range(3):
        with cluster.client(node, "gamma") as gamma:
            with pytest.raises(NotFound):
                gamma.get_execution(execution_id)
            with pytest.raises(NotFound):
                gamma.cancel_execution(execution_id)
            with pytest.raises(NotFound):
                gamma.get_execution(secrets.token_hex(16))


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_reaches_the_node_running_the_job(cluster: Cluster) -> None:
    marker = new_marker()
    with cluster.client(0) as via_a:
        execution_id = via_a.submit("python", marked_program(marker, 120))
        wait_for_pids(marker, 30)
        runner = eventually(lambda: runners(cluster.nodes, execution_id), 10, "runner logged")[0]
        others = [i for i in range(3) if i != runner]
        via = next((i for i in others if i != 0), others[0])  # neither the runner nor A if can
        with cluster.client(via) as via_c:
            cancelled = via_c.cancel_execution(execution_id, timeout_s=30)
        assert cancelled.state is ExecutionState.DONE, cancelled
        assert cancelled.result is not None and cancelled.result.verdict is Verdict.KILLED
        assert eventually(lambda: not pids_named(marker), 30, "worker gone")
        assert via_a.get_execution(execution_id).result == cancelled.result


def test_cancel_of_a_job_waiting_for_its_tenant_slot_never_runs(cluster: Cluster) -> None:
    """alpha may run 2 at once in the cluster: the third waits (on some node) and is
    cancelled from another node before it ran."""
    markers = [new_marker() for _ in range(2)]
    label = secrets.token_hex(8)
    clients = [cluster.client(i, "alpha") for i in range(3)]
    try:
        spinners = [
            clients[i].submit("python", marked_program(m, 120)) for i, m in enumerate(markers)
        ]
        for m in markers:
            wait_for_pids(m, 30)
        waiting = clients[2].submit("python", "print('ran')", labels={"t": label})
        time.sleep(0.5)
        assert clients[1].get_execution(waiting).state is ExecutionState.QUEUED
        cancelled = clients[0].cancel_execution(waiting, timeout_s=30)
        assert cancelled.state is ExecutionState.CANCELLED, cancelled
        for k, spinner in enumerate(spinners):
            killed = clients[(k + 1) % 3].cancel_execution(spinner, timeout_s=30)
            assert killed.result is not None and killed.result.verdict is Verdict.KILLED
        # CANCELLED is final: the entry is gone and a node that held it cannot start it
        # (start refuses a finished job), so "never ran" needs no waiting, only these facts.
        record = job_record(cluster, waiting)
        assert (record["state"], record["in stream"]) == ("CANCELLED", "False"), record
        assert int(record.get("attempts", "0")) <= 1, record  # held by a node at most, once
        if record.get("attempts") == "1":  # the node holding it dropped it, and logged so
            eventually(
                lambda: [
                    e
                    for n in cluster.nodes
                    for e in list(n.logs)
                    if e.get("msg") == "execution cancelled" and e.get("execution_id") == waiting
                ],
                30,
                "the holding node cancelled it",
            )
        for k in range(3):
            assert clients[k].get_execution(waiting).state is ExecutionState.CANCELLED
        assert not [
            e
            for n in cluster.nodes
            for e in list(n.logs)
            if e.get("msg") == "execution finished"
            and (e.get("execution_id") == waiting or e.get("labels") == {"t": label})
        ]
    finally:
        for c in clients:
            c.close()


# -- quotas --------------------------------------------------------------------------------------


def test_cluster_wide_concurrency_quota_holds_under_load_from_every_node(
    cluster: Cluster,
) -> None:
    """alpha: at most 2 at once across the cluster. Async jobs wait for a slot; synchronous
    calls over the limit are RESOURCE_EXHAUSTED. Each program reports when it started and
    ended; those intervals never overlap more than twice."""
    clients = [cluster.client(i, "alpha") for i in range(3)]
    code = TIMED.format(sleep_s=0.3)
    intervals: list[tuple[float, float]] = []
    rejected: list[QuotaExceeded] = []
    lock = threading.Lock()

    def sync_calls(node: int) -> None:
        for _ in range(6):
            try:
                result = clients[node].execute("python", code, timeout_s=60)
            except QuotaExceeded as e:
                with lock:
                    rejected.append(e)
                time.sleep(0.1)
                continue
            assert result.verdict is Verdict.OK, result
            with lock:
                intervals.append(interval(result.stdout))

    try:
        ids = [clients[k % 3].submit("python", code) for k in range(12)]
        threads = [threading.Thread(target=sync_calls, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, execution_id in enumerate(ids):
            execution = wait_done(clients[(k + 2) % 3], execution_id)
            assert execution.result is not None and execution.result.verdict is Verdict.OK
            intervals.append(interval(execution.result.stdout))
        assert max_overlap(intervals) <= 2, sorted(intervals)
        assert len(intervals) >= 12
        for e in rejected:
            assert e.retry_after_s is not None and e.retry_after_s > 0
            assert e.violations[0].subject == "tenant:alpha:concurrent_executions"
        # the async ones ran on more than one node
        assert len({r for i in ids for r in runners(cluster.nodes, i)}) >= 2
    finally:
        for c in clients:
            c.close()


def test_rate_quota_is_cluster_wide(cluster: Cluster) -> None:
    """delta: 0.2 per second, a burst of 1: the first call anywhere passes, the next one on
    any other node within 5 s is refused with the time until the next token."""
    with cluster.client(0, "delta") as a, cluster.client(1, "delta") as b:
        assert a.execute("python", "print(1)").verdict is Verdict.OK
        with pytest.raises(QuotaExceeded) as refused:
            b.execute("python", "print(2)")
        assert refused.value.violations[0].subject == "tenant:delta:executions_per_second"
        assert refused.value.retry_after_s is not None and 0 < refused.value.retry_after_s <= 5
        with cluster.client(2, "delta") as c, pytest.raises(QuotaExceeded):
            c.submit("python", "print(3)")


def test_cpu_quota_is_cluster_wide(cluster: Cluster) -> None:
    """epsilon: 0.5 CPU seconds per minute. One execution burning 0.7 CPU seconds on one
    node uses it up for every node (its time is charged when it ends)."""
    burn = "import time\nwhile time.process_time() < 0.7: pass\n"
    with cluster.client(0, "epsilon") as a:
        result = a.execute("python", burn, limits=Limits(wall_time_ms=120_000), timeout_s=150)
        assert result.verdict is Verdict.OK, result
        assert result.usage.cpu_time_us >= 500_000
    for node in (1, 2):
        with cluster.client(node, "epsilon") as other:
            with pytest.raises(QuotaExceeded) as refused:
                other.execute("python", "print(1)")
            assert refused.value.violations[0].subject == "tenant:epsilon:cpu_seconds_per_minute"
            assert refused.value.retry_after_s is not None
            assert 0 < refused.value.retry_after_s <= 60
            with pytest.raises(QuotaExceeded):
                other.submit("python", "print(1)")


# -- payloads ------------------------------------------------------------------------------------


def test_a_64_mib_input_is_its_own_key_not_a_stream_entry(cluster: Cluster) -> None:
    """While the job waits (alpha's two slots are taken), the stream entry holds only its id
    and the request is one key of its own; once finished, the request key is gone."""
    stdin = secrets.token_bytes(1024) * (63 * 1024)  # 63 MiB: a 64 MiB message with envelope
    markers = [new_marker() for _ in range(2)]
    clients = [cluster.client(i, "alpha") for i in range(2)]
    r = cluster.redis.client()
    try:
        spinners = [
            c.submit("python", marked_program(m, 120))
            for c, m in zip(clients, markers, strict=True)
        ]
        for m in markers:
            wait_for_pids(m, 30)
        big = clients[0].submit(
            "python",
            "import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
            stdin=stdin,
            timeout_s=120,
        )
        assert clients[1].get_execution(big).state is ExecutionState.QUEUED
        entries = r.xrange("sandboxd:jobs")
        assert entries
        for _entry_id, fields in entries:
            assert set(fields) == {b"id"} and len(fields[b"id"]) == 32
        assert r.strlen(f"sandboxd:job:{big}:req") > len(stdin)
        for c, spinner in zip(clients, spinners, strict=True):
            c.cancel_execution(spinner, timeout_s=30)
        execution = wait_done(clients[1], big)
        assert execution.result is not None and execution.result.verdict is Verdict.OK
        assert execution.result.stdout.decode().strip() == hashlib.sha256(stdin).hexdigest()
        assert not r.exists(f"sandboxd:job:{big}:req")
        assert r.pttl(f"sandboxd:job:{big}:result") > 0
    finally:
        for c in clients:
            c.close()
        r.close()


# -- Redis down ----------------------------------------------------------------------------------


def test_redis_killed_and_restarted_loses_no_accepted_job(cluster: Cluster) -> None:
    unavailable_before = [n.log_messages().count(UNAVAILABLE_LOG) for n in cluster.nodes]
    clients = [cluster.client(i) for i in range(3)]
    try:
        ids = [
            clients[k % 3].submit("python", f"import time; time.sleep(0.5); print({k})")
            for k in range(30)
        ]
        cluster.redis.kill()  # SIGKILL right after the acknowledgements: AOF fsync'd them
        # while Redis is down: synchronous calls work on every node, Submit is UNAVAILABLE
        for c in clients:
            for _ in range(3):
                assert c.execute("python", "print('sync')").stdout == b"sync\n"
            with pytest.raises(Unavailable) as down:
                c.submit("python", "print(1)", timeout_s=30)
            assert "Redis" in str(down.value) and "Execute still works" in str(down.value)
        refused_while_down(cluster)
        for k, node in enumerate(cluster.nodes):  # logged once per transition, not per call
            assert node.log_messages().count(UNAVAILABLE_LOG) == unavailable_before[k] + 1
        cluster.redis.start()
        for k, execution_id in enumerate(ids):
            execution = wait_done(clients[(k + 1) % 3], execution_id)
            assert execution.state is ExecutionState.DONE, execution
            assert execution.result is not None and execution.result.verdict is Verdict.OK
            assert execution.result.stdout == f"{k}\n".encode()
        for node in cluster.nodes:
            eventually(lambda n=node: "redis available again" in n.log_messages(), 30)
        # and new submits work again
        fresh = clients[0].submit("python", "print('back')")
        back = wait_done(clients[2], fresh).result
        assert back is not None and (back.verdict, back.stdout) == (Verdict.OK, b"back\n")
    finally:
        if cluster.redis.proc is None or cluster.redis.proc.poll() is not None:
            cluster.redis.start()
        for c in clients:
            c.close()


def refused_while_down(cluster: Cluster) -> None:
    """With Redis down, quotas are node-local but still enforced: alpha's two slots held on
    node 0, a third synchronous call there is refused (RESOURCE_EXHAUSTED), then served again
    once one of the two is cancelled."""
    markers = [new_marker() for _ in range(2)]
    with cluster.client(0, "alpha") as a:
        cancels = [threading.Event() for _ in markers]
        holders = [
            threading.Thread(target=_hold, args=(cluster, m, e), daemon=True)
            for m, e in zip(markers, cancels, strict=True)
        ]
        for h in holders:
            h.start()
        try:
            for m in markers:
                wait_for_pids(m, 30)
            with pytest.raises(QuotaExceeded) as refused:
                a.execute("python", "print('third')", timeout_s=30)
            assert refused.value.violations[0].subject == "tenant:alpha:concurrent_executions"
        finally:
            for e in cancels:
                e.set()
            for h in holders:
                h.join(60)
        assert not any(h.is_alive() for h in holders)

        def third() -> ExecuteResult | None:
            try:
                return a.execute("python", "print('third')", timeout_s=30)
            except QuotaExceeded:
                return None  # the cancelled holders' slots are released just after they end

        again = eventually(third, 30, "alpha's slots free again")
        assert (again.verdict, again.stdout) == (Verdict.OK, b"third\n")


def _hold(cluster: Cluster, marker: str, cancel: threading.Event) -> None:
    """A synchronous alpha execution on node 0 that runs until `cancel` is set."""
    with cluster.client(0, "alpha") as c:
        events = c.stream("python", marked_program(marker, 120), timeout_s=150)
        next(events)  # Started: it holds a slot
        cancel.wait(150)
        events.close()  # cancels the call: its worker is killed


UNAVAILABLE_LOG = (
    "redis unavailable: synchronous executions use node-local quotas, "
    "Submit/GetExecution/CancelExecution are UNAVAILABLE until it is back"
)


# -- retention -----------------------------------------------------------------------------------


def test_results_and_keys_expire_after_the_retention(cluster: Cluster) -> None:
    """A node with a 2 s retention on its own Redis (the runner's retention applies)."""
    import os
    import tempfile

    from .conftest import start_node
    from .redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="sandboxd-retention-") as tmp:
        redis = RedisServer(tmp)
        redis.start()
        node = None
        try:
            node = start_node(redis, cluster.tenants_path, ["--result-retention-s", "2"])
            r = redis.client()
            with Client(node.address, api_key=cluster.keys["beta"], retry=NO_RETRY) as c:
                execution_id = c.submit("python", "print('kept')", idempotency_key="k1")
                kept = wait_done(c, execution_id).result
                assert kept is not None and (kept.verdict, kept.stdout) == (Verdict.OK, b"kept\n")
                assert c.submit("python", "print('x')", idempotency_key="k1") == execution_id
                assert [k for k in r.scan_iter(match=f"*{execution_id}*")]
                eventually(lambda: _not_found(c, execution_id), 30, "the result expired")
                assert [k for k in r.scan_iter(match=f"*{execution_id}*")] == []
                assert [k for k in r.scan_iter(match="sandboxd:idem:*")] == []
                assert r.xlen("sandboxd:jobs") == 0
                assert c.submit("python", "print('x')", idempotency_key="k1") != execution_id
            r.close()
        finally:
            if node is not None:
                assert node.stop() == 0
            redis.kill()
            _ = os  # tmp is removed by the context manager


def _not_found(client: Client, execution_id: str) -> bool:
    try:
        client.get_execution(execution_id)
    except NotFound:
        return True
    return False


def test_output_files_are_kept_with_the_result_in_redis(cluster: Cluster) -> None:
    """Submit on one node, fetch from another: the files of out/ travel through Redis with
    the result (and the read-back is the same on a third node)."""
    blob = secrets.token_bytes(300_000)
    code = (
        "import os, sys\nos.makedirs('out/deep/er')\n"
        "open('out/deep/er/blob.bin', 'wb').write(sys.stdin.buffer.read())\n"
        "open('out/note.txt', 'w').write('kept')\n"
    )
    with cluster.client(0) as submitter:
        execution_id = submitter.submit("python", code, stdin=blob)
    for node in (1, 2):
        with cluster.client(node) as reader:
            execution = reader.wait(execution_id, timeout_s=60)
        assert execution.result is not None and execution.result.verdict is Verdict.OK
        assert execution.result.files == (
            OutputFile("deep/er/blob.bin", blob),
            OutputFile("note.txt", b"kept"),
        )
        assert not execution.result.files_truncated
