"""The Redis backend's steps (sandboxd/cluster/steps.py), one at a time, against a real
`redis-server` on a free port: what each script writes and answers, without daemons or
threads. Every test starts from an empty database."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator

import pytest

from sandboxd.cluster.codec import decode_spec
from sandboxd.cluster.link import RedisLink
from sandboxd.cluster.steps import GROUP, JobSteps
from sandboxd.errors import NotFound, QuotaExceeded
from sandboxd.jobs.contract import JobSpec, JobState
from sandboxd_pool import ExecutionRequest, Outcome, Runtime, Verdict

from .redis_server import RedisServer

NODE_A, NODE_B = "node-a", "node-b"
MAX_UNFINISHED = 100


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-steps-") as directory:
        redis_server = RedisServer(directory)
        redis_server.start()
        try:
            yield redis_server
        finally:
            redis_server.kill()


@pytest.fixture
def steps(server: RedisServer) -> Iterator[JobSteps]:
    server.client().flushall()
    link = RedisLink(server.url)
    steps = JobSteps(link, retention_s=60, visibility_s=1)
    steps.ensure_group()
    yield steps
    link.close()


def spec(
    code: str = "print(1)",
    tenant: str = "alpha",
    limit: int = 1,
    key: str = "",
    max_queued_jobs: int = 100,
) -> JobSpec:
    return JobSpec(
        tenant=tenant,
        max_concurrent_executions=limit,
        request=ExecutionRequest(runtime=Runtime.PYTHON, code=code, tenant=tenant),
        labels={"team": "x"},
        idempotency_key=key,
        max_queued_jobs=max_queued_jobs,
    )


def new_id(n: int) -> str:
    return f"{n:032x}"


def test_submit_then_read_queued_and_the_request_is_stored(steps: JobSteps) -> None:
    execution_id, created = steps.submit(new_id(1), spec("print('stored')"), MAX_UNFINISHED)
    assert (execution_id, created) == (new_id(1), True)
    job = steps.read("alpha", execution_id)
    assert (job.state, job.outcome) == (JobState.QUEUED, None)
    ((entry, entry_id),) = steps.read_new(NODE_A, 10, 0)
    assert entry_id == execution_id
    claim = steps.claim(entry, execution_id, NODE_A)
    assert (claim.verdict, claim.state, claim.attempt) == ("run", "QUEUED", 1)
    assert decode_spec(claim.payload) == spec("print('stored')")
    assert claim.queued_us >= 0


def test_an_idempotency_key_returns_the_first_id_per_tenant(steps: JobSteps) -> None:
    assert steps.submit(new_id(1), spec(key="k"), MAX_UNFINISHED) == (new_id(1), True)
    assert steps.submit(new_id(2), spec(key="k"), MAX_UNFINISHED) == (new_id(1), False)
    assert steps.submit(new_id(3), spec(key="k", tenant="beta"), MAX_UNFINISHED) == (
        new_id(3),
        True,
    )


def test_reads_of_unknown_or_another_tenants_jobs_are_not_found(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(), MAX_UNFINISHED)
    for tenant, execution_id in (("beta", new_id(1)), ("alpha", new_id(9))):
        with pytest.raises(NotFound):
            steps.read(tenant, execution_id)
        with pytest.raises(NotFound):
            steps.cancel(tenant, execution_id)


def test_submit_refusals_name_the_share_that_is_full(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(max_queued_jobs=1), MAX_UNFINISHED)
    with pytest.raises(QuotaExceeded) as tenant_full:
        steps.submit(new_id(2), spec(max_queued_jobs=1), MAX_UNFINISHED)
    assert tenant_full.value.subject == "tenant:alpha:async_queued_jobs"
    with pytest.raises(QuotaExceeded) as cluster_full:
        steps.submit(new_id(3), spec(tenant="beta"), 1)
    assert cluster_full.value.subject == "cluster:async_unfinished_jobs"
    big = JobSpec(
        tenant="gamma",
        max_concurrent_executions=1,
        request=ExecutionRequest(runtime=Runtime.PYTHON, code="x", stdin=b"x" * 4096),
        max_async_bytes=4096,
    )
    with pytest.raises(QuotaExceeded) as bytes_full:
        steps.submit(new_id(4), big, MAX_UNFINISHED)
    assert bytes_full.value.subject == "tenant:gamma:async_bytes"
    with pytest.raises(NotFound):  # nothing of a refused job is kept
        steps.read("gamma", new_id(4))


def test_the_stream_holds_at_most_a_tenants_limit_and_finishing_feeds_the_next(
    steps: JobSteps,
) -> None:
    for n in (1, 2, 3):
        steps.submit(new_id(n), spec(limit=1), MAX_UNFINISHED)
    ((entry, first),) = steps.read_new(NODE_A, 10, 0)
    assert first == new_id(1)
    assert steps.read_new(NODE_A, 10, 0) == []  # the others wait in the tenant's backlog
    assert steps.claim(entry, first, NODE_A).verdict == "run"
    assert steps.start(first, NODE_A) is True
    assert steps.read("alpha", first).state is JobState.RUNNING
    outcome = Outcome(verdict=Verdict.OK, exit_code=0, stdout=b"1\n", execution_id=first)
    steps.finish(first, entry, JobState.DONE, outcome)
    done = steps.read("alpha", first)
    assert done.state is JobState.DONE and done.outcome == outcome
    ((_, second),) = steps.read_new(NODE_A, 10, 0)
    assert second == new_id(2)


def test_only_the_first_result_of_a_job_is_kept(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(), MAX_UNFINISHED)
    ((entry, execution_id),) = steps.read_new(NODE_A, 10, 0)
    steps.claim(entry, execution_id, NODE_A)
    first = Outcome(verdict=Verdict.OK, exit_code=0, stdout=b"first", execution_id=execution_id)
    again = Outcome(verdict=Verdict.OK, exit_code=0, stdout=b"again", execution_id=execution_id)
    steps.finish(execution_id, entry, JobState.DONE, first)
    steps.finish(execution_id, entry, JobState.DONE, again)  # a second run after a takeover
    assert steps.read("alpha", execution_id).outcome == first
    assert steps.claim(entry, execution_id, NODE_B).verdict == "skip"  # a stale entry
    assert steps.start(execution_id, NODE_B) is False


def test_finishing_publishes_done(steps: JobSteps, server: RedisServer) -> None:
    pubsub = server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(steps.channel)
    steps.submit(new_id(1), spec(), MAX_UNFINISHED)
    ((entry, execution_id),) = steps.read_new(NODE_A, 10, 0)
    steps.finish(execution_id, entry, JobState.CANCELLED, None)
    deadline = time.monotonic() + 10
    message = None
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1.0)
    pubsub.close()
    assert message is not None and message["data"] == f"done:{execution_id}".encode()


def test_cancel_of_a_job_nobody_took_finishes_it(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(limit=1), MAX_UNFINISHED)
    steps.submit(new_id(2), spec(limit=1), MAX_UNFINISHED)  # in the backlog
    assert steps.cancel("alpha", new_id(2)) == "CANCELLED"
    assert steps.cancel("alpha", new_id(1)) == "CANCELLED"  # in the stream, not taken
    for n in (1, 2):
        assert steps.read("alpha", new_id(n)).state is JobState.CANCELLED
    assert steps.cancel("alpha", new_id(1)) == "CANCELLED"  # again: as it is


def test_cancel_of_a_taken_job_is_recorded_for_its_node(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(), MAX_UNFINISHED)
    ((entry, execution_id),) = steps.read_new(NODE_A, 10, 0)
    steps.claim(entry, execution_id, NODE_A)
    steps.start(execution_id, NODE_A)
    assert steps.renew(NODE_A, [(entry, execution_id)]) == [False]
    assert steps.cancel("alpha", execution_id) == "RUNNING"
    assert steps.renew(NODE_A, [(entry, execution_id)]) == [True]
    assert steps.read("alpha", execution_id).state is JobState.RUNNING  # its node finishes it


def test_a_cancel_asked_before_the_claim_reaches_the_node_that_claims(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(), MAX_UNFINISHED)
    ((entry, execution_id),) = steps.read_new(NODE_A, 10, 0)
    assert steps.claim(entry, execution_id, NODE_A).verdict == "run"
    steps.cancel("alpha", execution_id)  # taken (node set): recorded, not finished
    claim = steps.claim(entry, execution_id, NODE_B)
    assert (claim.verdict, claim.state) == ("cancelled", "QUEUED")


def test_a_requeued_entry_goes_to_another_node(steps: JobSteps) -> None:
    steps.submit(new_id(1), spec(), MAX_UNFINISHED)
    ((entry, execution_id),) = steps.read_new(NODE_A, 10, 0)
    steps.claim(entry, execution_id, NODE_A)
    steps.requeue(entry, execution_id)
    ((new_entry, again),) = steps.read_new(NODE_B, 10, 0)
    assert again == execution_id and new_entry != entry
    claim = steps.claim(new_entry, execution_id, NODE_B)
    assert (claim.verdict, claim.attempt) == ("run", 2)
    assert steps.claim(entry, execution_id, NODE_A).verdict == "skip"  # the old entry


def test_an_entry_left_idle_is_taken_over_and_renewal_prevents_it(steps: JobSteps) -> None:
    """visibility_s is 1 here: an entry its node does not renew for 1 s goes to another."""
    steps.submit(new_id(1), spec(tenant="alpha"), MAX_UNFINISHED)
    steps.submit(new_id(2), spec(tenant="beta"), MAX_UNFINISHED)
    entries = dict((i, e) for e, i in steps.read_new(NODE_A, 10, 0))
    assert set(entries) == {new_id(1), new_id(2)}
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        steps.renew(NODE_A, [(entries[new_id(2)], new_id(2))])  # only beta's is renewed
        time.sleep(0.2)
    _, taken = steps.autoclaim(NODE_B, "0-0", 10)
    assert taken == [(entries[new_id(1)], new_id(1))]


def test_sweep_removes_the_consumers_of_nodes_that_are_gone(steps: JobSteps) -> None:
    """A consumer with no heartbeat, no pending entry and idle long enough is removed; one
    whose node beats is kept until the node removes its own."""
    steps.submit(new_id(1), spec(tenant="alpha"), MAX_UNFINISHED)
    steps.submit(new_id(2), spec(tenant="beta"), MAX_UNFINISHED)
    steps.beat(NODE_A, 60_000)  # NODE_B never beats
    ((entry_a, id_a),) = steps.read_new(NODE_A, 1, 0)
    ((entry_b, id_b),) = steps.read_new(NODE_B, 1, 0)
    assert steps.sweep_consumers(0) == []  # both have a pending entry
    steps.finish(id_a, entry_a, JobState.CANCELLED, None)
    steps.finish(id_b, entry_b, JobState.CANCELLED, None)
    time.sleep(0.05)
    assert steps.sweep_consumers(10) == [NODE_B]
    assert steps.sweep_consumers(0) == []  # NODE_A's heartbeat lives
    steps.forget_node(NODE_A)
    assert steps.sweep_consumers(0, only=NODE_A) == [NODE_A]
    assert steps.link.client.xinfo_consumers(steps.stream, GROUP) == []
