"""The replenisher: keeps each runtime's queue of ready workers full, in a thread of its own.

Its loop reads as verbs: restart the zygote if it died, top up each runtime (reap ready workers
killed from outside, ask the zygote for what is missing), watch the booting workers (a ready
byte, or a failure and its reason). A runtime whose boots keep failing is marked unhealthy
with the reason and retried slowly, never in a hot loop. It shares the pool's lock and its
per-runtime state (RuntimeState) with Pool.execute, which takes ready workers and wakes it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from .config import PoolConfig
from .jail.policy import JailPlan
from .types import Runtime
from .worker import Worker
from .zygote import SpawnedWorker, ZygoteClient, ZygoteDied

log = logging.getLogger("sandboxd_pool")

IDLE_TICK_S = 0.5


WarmKey = tuple[Runtime, str]  # (runtime, environment name or "")


@dataclass
class RuntimeState:
    """The warm workers of one runtime (and environment): ready, booting, being spawned,
    wanted by waiting executions; its health."""

    runtime: Runtime
    target: int  # ready workers to keep
    environment: str = ""
    ready: deque[Worker] = field(default_factory=deque)
    booting: dict[int, tuple[Worker, float]] = field(
        default_factory=dict
    )  # control fd -> (w, deadline)
    spawning: int = 0
    waiting: int = 0  # executions waiting for a worker (a cold start each)
    consecutive_failures: int = 0
    reason: str = ""
    retry_at: float = 0.0

    @property
    def healthy(self) -> bool:
        return bool(self.ready) or not self.reason

    @property
    def name(self) -> str:
        return (
            f"{self.runtime.value}/{self.environment}" if self.environment else self.runtime.value
        )


class Replenisher:
    def __init__(
        self,
        config: PoolConfig,
        plan: JailPlan,
        zygote: ZygoteClient,
        lock: threading.Condition,
        states: dict[WarmKey, RuntimeState],
        discard: Callable[[Worker], None],  # closes a dead worker off this thread
        closed: Callable[[], bool],
    ) -> None:
        self._config = config
        self._plan = plan
        self._zygote = zygote
        self._lock = lock
        self._states = states
        self._discard = discard
        self._closed = closed
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._loop, name="sandboxd-replenisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        """Wait for the loop to end (the pool is closed), unless called from the loop."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        while not self._closed():
            try:
                self._restart_zygote_if_dead()
                self._top_up()
                self._watch_boots()
            except Exception:
                log.exception("replenisher error")
                time.sleep(0.1)

    def _restart_zygote_if_dead(self) -> None:
        if self._zygote.alive():
            return
        with self._lock:
            stale = [w for st in self._states.values() for w in st.ready]
            for st in self._states.values():
                st.ready.clear()
        for w in stale:
            w.close()
        try:
            self._zygote.ensure_started()
        except Exception as e:
            log.error("zygote restart failed: %s", e)
            time.sleep(1.0)

    def _top_up(self) -> None:
        now = time.monotonic()
        with self._lock:
            for state in self._states.values():
                dead = [w for w in state.ready if not alive(w)]  # killed from outside
                for worker in dead:
                    state.ready.remove(worker)
                    self._discard(worker)
                if state.reason and now < state.retry_at:
                    continue
                wanted = max(state.target, len(state.ready) + state.waiting)
                want = wanted - len(state.ready) - len(state.booting) - state.spawning
                if state.reason:
                    want = min(want, 1 - len(state.booting) - state.spawning)
                    state.retry_at = now + self._config.unhealthy_retry_ms / 1000
                for _ in range(max(want, 0)):
                    state.spawning += 1
                    started = time.monotonic()
                    future = self._zygote.spawn(state.runtime.value, state.environment)
                    future.add_done_callback(functools.partial(self._on_spawned, state, started))

    def _on_spawned(self, state: RuntimeState, t0: float, future: Future[SpawnedWorker]) -> None:
        try:
            spawned = future.result()
        except ZygoteDied:
            with self._lock:  # not the runtime's fault: the zygote is restarted
                state.spawning -= 1
            self.wake()
            return
        except Exception as e:
            with self._lock:
                state.spawning -= 1
                self._boot_failed(state, f"spawn failed: {e}")
            self.wake()
            return
        worker = Worker(
            spawned,
            t0,
            self._config.cpu_cores_per_worker,
            acting_as=None if self._plan.subuid else self._plan.outside_ids(spawned.slot),
        )
        with self._lock:
            state.spawning -= 1
            if self._closed():
                worker.kill()
                worker.close()
                return
            deadline = time.monotonic() + self._config.boot_timeout_ms / 1000
            state.booting[worker.control_fd()] = (worker, deadline)
        self.wake()

    def _watch_boots(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        with self._lock:
            booting = {
                fd: (st, w, dl)
                for st in self._states.values()
                for fd, (w, dl) in st.booting.items()
            }
        for fd in booting:
            poller.register(fd, select.POLLIN)
        now = time.monotonic()
        timeout = min([dl - now for _, _, dl in booting.values()] + [IDLE_TICK_S])
        for fd, _ in poller.poll(max(timeout, 0) * 1000):
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                continue
            state, worker, _ = booting[fd]
            with self._lock:
                state.booting.pop(fd, None)
            if worker.on_ready_byte():
                self._boot_succeeded(state, worker)
            else:
                self._fail_boot(state, worker)
        now = time.monotonic()
        for fd, (state, worker, deadline) in booting.items():
            if now > deadline and fd in state.booting:
                with self._lock:
                    state.booting.pop(fd, None)
                self._fail_boot(
                    state, worker, f"not ready within {self._config.boot_timeout_ms} ms"
                )

    def _boot_succeeded(self, state: RuntimeState, worker: Worker) -> None:
        try:
            worker.prepare(self._config.default_limits)
        except OSError as e:
            self._fail_boot(state, worker, f"applying the default limits: {e}")
            return
        with self._lock:
            if self._closed():
                worker.kill()
                worker.close()
                return
            if state.reason:
                log.warning("runtime %s is healthy again", state.name)
            state.consecutive_failures = 0
            state.reason = ""
            state.ready.append(worker)
            self._lock.notify_all()

    def _fail_boot(self, state: RuntimeState, worker: Worker, why: str = "") -> None:
        reason = why or worker.boot_failure_reason()
        if why:
            worker.kill()
            worker.close()
        with self._lock:
            self._boot_failed(state, reason)

    def _boot_failed(self, state: RuntimeState, reason: str) -> None:
        """Call with the lock held."""
        if self._closed():
            return
        state.consecutive_failures += 1
        log.warning(
            "%s worker failed to boot (%d in a row): %s",
            state.name,
            state.consecutive_failures,
            reason,
        )
        if state.consecutive_failures >= self._config.max_boot_failures:
            if not state.reason:
                log.error("runtime %s marked unhealthy: %s", state.name, reason)
            state.reason = reason
            state.retry_at = time.monotonic() + self._config.unhealthy_retry_ms / 1000
        self._lock.notify_all()


def alive(worker: Worker) -> bool:
    poller = select.poll()
    poller.register(worker.spawned.pidfd, select.POLLIN)
    return not poller.poll(0)
