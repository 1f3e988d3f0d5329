"""Pool: per-runtime queues of warm, jailed, single-use workers, refilled in the background.

execute(request)      validate -> take a concurrency slot -> take a ready worker (or wait
                      for one: a cold start) -> on_start -> run it once (on_output per
                      chunk; cancel kills it) -> classify -> destroy it
replenisher thread    reap dead ready workers, top up each runtime, watch boots, report
                      health (replenisher.py)
close()               drain in-flight executions, kill the rest, stop the zygote, remove
                      cgroups: nothing is left behind
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .config import PoolConfig, build_jail_plan
from .egress.policy import EgressPolicy
from .errors import Cancelled, InvalidRequest, PoolClosed, RuntimeUnavailable
from .jail import mode as jail_mode
from .jail.cgroups import CgroupSetup
from .replenisher import Replenisher, RuntimeState, WarmKey, alive
from .types import ExecutionRequest, Outcome, Runtime, RuntimeHealth, Started, Stream, Verdict
from .validation import CheckedRequest, check, validate
from .worker import Worker
from .zygote import ZygoteClient

if TYPE_CHECKING:  # imports cryptography: loaded only by a pool that serves egress
    from .egress.service import EgressService

log = logging.getLogger("sandboxd_pool")

CANCEL_POLL_S = 0.02  # how often a wait for a slot or a worker looks at the cancel event
# A used worker's replacement is asked for this long after its execution ended, so that the
# caller's answer (the daemon's gRPC response) goes out before the replenisher's bookkeeping
# (the GIL) and the zygote's spawn (a CPU) compete with it; an empty queue refills at once.
REFILL_DELAY_S = 0.003


@dataclass(frozen=True)
class _Ended:
    """A worker whose execution ended at `ended_at_s` (monotonic), for the janitor."""

    worker: Worker
    ended_at_s: float


class Pool:
    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config or PoolConfig()
        self.cgroups = CgroupSetup.detect(self.config.cgroup_root, self.config.cgroup_parent)
        if self.cgroups.version == 0:
            self.cgroup_warning = (
                "sandboxd: WARNING: no writable cgroup hierarchy "
                f"({self.cgroups.reason}); falling back to rlimits: memory is bounded per "
                "process by RLIMIT_DATA, processes by RLIMIT_NPROC, CPU by RLIMIT_CPU, and "
                "peak memory is the largest process's RSS"
            )
            log.warning(self.cgroup_warning)
        else:
            self.cgroup_warning = ""
            log.info("sandboxd: %s", self.cgroups.placement)
        self.jail_mode = jail_mode.resolve(
            self.config.jail_mode, self.config.uid_base, self.config.worker_slots_needed
        )
        log.info(
            "sandboxd: jail mode %s (%s): worker slot n runs as host uid %d+n, gid %d+n, %d slots",
            self.jail_mode.mode,
            self.jail_mode.why,
            self.jail_mode.uid_base,
            self.jail_mode.gid_base,
            self.jail_mode.slots,
        )
        if self.jail_mode.mode == "subuid" and self.config.python_template:
            log.info(
                "sandboxd: subuid mode: the Python template is off (it needs host root to "
                "build its jail root); Python workers are exec'd one by one like Node"
            )
        self._egress = _egress_service(self.config)
        self._plan = build_jail_plan(
            self.config,
            self.cgroups,
            self.jail_mode,
            egress_ca_pem=self._egress.ca.cert_pem if self._egress else "",
        )
        self._zygote = ZygoteClient(self.config, self._plan)
        self._zygote.start()
        self._lock = threading.Condition()
        warm = self.config.warm_workers_per_runtime
        self._states: dict[WarmKey, RuntimeState] = {
            (rt, ""): RuntimeState(rt, target=warm) for rt in self.config.runtimes
        }
        for env in self.config.environments:
            self._states[env.runtime, env.name] = RuntimeState(
                env.runtime, target=env.warm_workers, environment=env.name
            )
        self._slots = threading.BoundedSemaphore(self.config.max_concurrent_executions)
        self._in_flight = 0
        self._closed = False
        # Closing a used worker's fds releases its mount namespace, whose teardown takes
        # milliseconds: done here, off the execution's path.
        self._janitor: queue.SimpleQueue[Worker | _Ended | None] = queue.SimpleQueue()
        self._janitor_thread = threading.Thread(
            target=self._janitor_loop, name="sandboxd-janitor", daemon=True
        )
        self._janitor_thread.start()
        self._replenisher = Replenisher(
            self.config,
            self._plan,
            self._zygote,
            self._lock,
            self._states,
            self._janitor.put,
            closed=lambda: self._closed,
        )
        self._replenisher.start()
        self._atexit = weakref.WeakMethod(self.close)
        atexit.register(_close_at_exit, self._atexit)

    # -- public API -----------------------------------------------------------------------------

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def zygote_pid(self) -> int:
        return self._zygote.pid

    def health(self) -> dict[Runtime, RuntimeHealth]:
        """Each bare runtime's health (environments: environments_health)."""
        with self._lock:
            return {rt: self._health_of(st) for (rt, env), st in self._states.items() if not env}

    def environments_health(self) -> dict[str, RuntimeHealth]:
        with self._lock:
            return {env: self._health_of(st) for (_, env), st in self._states.items() if env}

    def _health_of(self, st: RuntimeState) -> RuntimeHealth:
        return RuntimeHealth(
            runtime=st.runtime,
            healthy=st.healthy and not self._closed,
            ready_workers=len(st.ready),
            reason="pool is closed" if self._closed else st.reason,
            consecutive_boot_failures=st.consecutive_failures,
        )

    def worker_pids(self, environment: str = "") -> dict[Runtime, list[int]]:
        """PIDs (host view) of the ready workers, per runtime (of `environment`, or bare)."""
        with self._lock:
            return {
                rt: [w.pid for w in st.ready]
                for (rt, env), st in self._states.items()
                if env == environment
            }

    def wait_until_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until every runtime and environment has its full complement of warm workers
        (or is unhealthy)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                states = self._states.values()
                if all(len(st.ready) >= st.target or st.reason for st in states):
                    return all(len(st.ready) >= st.target for st in states)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)

    def check(self, request: ExecutionRequest) -> CheckedRequest:
        """Validate `request` for this pool (InvalidRequest naming the field); `execute` runs
        the result without validating it again."""
        return check(request, self.config)

    def execute(
        self,
        request: ExecutionRequest | CheckedRequest,
        *,
        cancel: threading.Event | None = None,
        on_start: Callable[[Started], None] | None = None,
        on_output: Callable[[Stream, bytes], None] | None = None,
        execution_id: str | None = None,
        output_paused: Callable[[], bool] | None = None,
        egress: EgressPolicy | None = None,
    ) -> Outcome:
        """Run one request on a fresh worker; user code failing is a Verdict, never a raise.

        request: validated first (InvalidRequest), unless it is this pool's `check` result.

        cancel: set from any thread. While the request waits for a slot or a worker, execute
        raises Cancelled (noticed within CANCEL_POLL_S); while the code runs, the worker is
        killed and the verdict is KILLED.
        on_start(Started): once, in this thread, after a worker was taken, before the code is
        sent to it.
        on_output(stream, chunk): in this thread, each chunk of stdout/stderr as it is
        captured (only what is kept under max_output_bytes, in order per stream); the Outcome
        still carries the whole output.
        output_paused(): polled while the code runs (about every 20 ms); while it returns
        True, stdout and stderr are not read, so the program blocks once a pipe is full (a
        consumer of on_output that is behind applies backpressure this way instead of
        buffering); the wall-time, CPU and other limits are enforced all the same.
        If on_start or on_output raises, the worker is killed and destroyed as usual and the
        exception propagates out of execute (no Outcome).
        execution_id: used as Outcome.execution_id (default: a new uuid4 hex); the handler's
        context sees it too.
        egress: what the program may reach through the proxy (the tenant's rules, narrowed by
        the request; docs/egress.md); None: nothing (connections to the proxy are refused).
        Outcome.egress says what went through.
        """
        arrived = time.monotonic()
        if self._closed:
            raise PoolClosed("the pool is closed")
        if isinstance(request, CheckedRequest) and request.config is self.config:
            request, limits = request.request, request.limits
        else:
            if isinstance(request, CheckedRequest):  # checked under another configuration
                request = request.request
            limits = validate(request, self.config)
        if egress is not None:
            if not isinstance(egress, EgressPolicy):
                raise InvalidRequest(
                    "egress", f"must be an EgressPolicy, not {type(egress).__name__}"
                )
            if self._egress is None:
                raise InvalidRequest(
                    "egress", "this pool serves no egress (PoolConfig.egress_proxy is off)"
                )
        execution_id = execution_id or uuid.uuid4().hex
        self._acquire_slot(cancel)
        try:
            with self._lock:
                if self._closed:
                    raise PoolClosed("the pool is closed")
                self._in_flight += 1
            try:
                worker, cold = self._take_worker(request.runtime, request.environment, cancel)
                queue_wait_us = int((time.monotonic() - arrived) * 1e6)
                callback_error: BaseException | None = None
                try:
                    if on_start is not None:
                        on_start(Started(execution_id, queue_wait_us, cold))
                    try:
                        result = worker.run(
                            request,
                            limits,
                            cancel,
                            on_output=on_output,
                            execution_id=execution_id,
                            output_paused=output_paused,
                            egress=egress,
                            egress_service=self._egress,
                        )
                        outcome = result.outcome
                        callback_error = result.callback_error
                    except Exception:
                        log.exception("internal error running a worker")
                        outcome = Outcome(
                            verdict=Verdict.INTERNAL_ERROR,
                            stderr=b"sandboxd: internal error (see the pool's log)\n",
                        )
                finally:
                    worker.kill()  # a worker that never got its code (on_start raised) too
                    self._janitor.put(_Ended(worker, time.monotonic()))
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._lock.notify_all()
        finally:
            self._slots.release()
        if callback_error is not None:
            raise callback_error
        return replace(
            outcome,
            cold_start=cold,
            queue_wait_us=queue_wait_us,
            execution_id=execution_id,
        )

    def _acquire_slot(self, cancel: threading.Event | None) -> None:
        if cancel is None:
            self._slots.acquire()
            return
        while not self._slots.acquire(timeout=CANCEL_POLL_S):
            if cancel.is_set():
                raise Cancelled("cancelled while waiting for a concurrency slot")
            if self._closed:
                raise PoolClosed("the pool is closed")

    def close(self, grace_s: float = 30.0) -> None:
        """Stop taking work, let in-flight executions finish (up to grace_s), leave nothing."""
        with self._lock:
            if self._closed and not self._replenisher.is_alive():
                return
            self._closed = True
            deadline = time.monotonic() + grace_s
            while self._in_flight and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            self._lock.notify_all()
        self._replenisher.wake()
        self._replenisher.join(timeout_s=10)
        with self._lock:
            workers = [w for st in self._states.values() for w in st.ready]
            workers += [w for st in self._states.values() for w, _ in st.booting.values()]
            for st in self._states.values():
                st.ready.clear()
                st.booting.clear()
        for w in workers:
            w.kill()
            w.close()
        self._janitor.put(None)
        self._janitor_thread.join(timeout=10)
        self._zygote.close()
        if self._egress is not None:
            self._egress.close()
        for parent in self.cgroups.parents.values():
            with contextlib.suppress(OSError):
                os.rmdir(parent)
        self._replenisher.close()
        with contextlib.suppress(Exception):
            atexit.unregister(_close_at_exit)

    def _janitor_loop(self) -> None:
        """Close used workers off the executions' path; for one whose execution ended, first
        wake the replenisher for its replacement, REFILL_DELAY_S after the end."""
        while (item := self._janitor.get()) is not None:
            if isinstance(item, _Ended):
                time.sleep(max(0.0, item.ended_at_s + REFILL_DELAY_S - time.monotonic()))
                self._replenisher.wake()
                item = item.worker
            item.close()

    # -- taking a worker ---------------------------------------------------------------------------

    def _take_worker(
        self, runtime: Runtime, environment: str, cancel: threading.Event | None = None
    ) -> tuple[Worker, bool]:
        deadline = time.monotonic() + self.config.boot_timeout_ms / 1000
        state = self._states[runtime, environment]
        cold = False
        with self._lock:
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("cancelled while waiting for a worker")
                    while state.ready:
                        worker = state.ready.popleft()
                        if alive(worker):
                            # The replacement is requested after this execution ends (see
                            # execute): a spawn blocks the zygote for ~2-3 ms, and would delay
                            # this execution's exit report. Only an empty queue refills at once.
                            if not state.ready:
                                self._replenisher.wake()
                            return worker, cold
                        worker.close()
                    if self._closed:
                        raise PoolClosed("the pool is closed")
                    if state.reason:
                        raise RuntimeUnavailable(state.name, state.reason)
                    if not cold:
                        cold = True
                        state.waiting += 1  # the replenisher makes a worker for each waiter
                    self._replenisher.wake()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RuntimeUnavailable(state.name, "no worker became ready in time")
                    self._lock.wait(left if cancel is None else min(left, CANCEL_POLL_S))
            finally:
                if cold:
                    state.waiting -= 1


def _egress_service(config: PoolConfig) -> EgressService | None:
    """The egress service (its CA, resolver and hosts map), when the pool serves egress."""
    if not config.egress_proxy:
        return None
    from .egress.hosts import load_hosts_file
    from .egress.service import EgressService

    hosts = load_hosts_file(config.egress_hosts_file) if config.egress_hosts_file else {}
    return EgressService(hosts, config.egress_ca_file)


def _close_at_exit(ref: weakref.WeakMethod) -> None:  # type: ignore[type-arg]
    method = ref()
    if method is not None:
        method(grace_s=0)
