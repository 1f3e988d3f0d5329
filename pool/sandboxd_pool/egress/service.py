"""The pool's egress service: the CA, the resolver, and one event loop thread serving every
execution's proxy sessions.

Pool.execute opens a session for a request with an egress policy: the worker's listening
socket (made inside its network namespace, jail/network.py) is accepted on in the loop, each
connection served by egress/proxy.py under the session's policy and ledger. When the program
has exited, the session is closed: the listener and every connection of the execution are
closed, and its ledger becomes Outcome.egress. A request without egress never opens one: its
worker's listener is closed, so connections to the port are refused.

At most max_egress_connections of a session's connections are served at once; more wait in
the listener's backlog (inside the worker's namespace) until one ends. Once an execution has
opened OVER_LIMIT_ANSWERS connections more than its max_egress_connections (each answered 429),
the session stops listening: further connects are refused by the kernel, and a program
looping on connect costs the pool nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Mapping
from concurrent.futures import Future

from ..types import EgressEntry, Limits
from .ca import CertificateAuthority, upstream_context
from .ledger import Ledger
from .policy import EgressPolicy, IPAddress
from .proxy import Connection
from .resolver import LOOKUPS_PER_EXECUTION, Resolver

log = logging.getLogger("sandboxd_pool.egress")

CLOSE_TIMEOUT_S = 10.0
OVER_LIMIT_ANSWERS = 16


class EgressService:
    def __init__(self, hosts: Mapping[str, tuple[IPAddress, ...]], extra_ca_file: str = "") -> None:
        self.ca = CertificateAuthority()
        self._resolver = Resolver(hosts)
        self._upstream_tls = upstream_context(extra_ca_file)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the egress service is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="sandboxd-egress", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def open(self, listener_fd: int, policy: EgressPolicy, limits: Limits) -> EgressSession:
        """Serve the worker's listener (taken over: the session closes it) under `policy`."""
        try:
            loop = self._running_loop()
        except BaseException:
            with contextlib.suppress(OSError):
                socket.close(listener_fd)
            raise
        session = EgressSession(self, loop, listener_fd, policy, limits)
        asyncio.run_coroutine_threadsafe(session.start(), loop)
        return session

    def connection(
        self, policy: EgressPolicy, ledger: Ledger, lookups: asyncio.Semaphore
    ) -> Connection:
        return Connection(
            policy, policy.networks, ledger, self._resolver, self.ca, self._upstream_tls, lookups
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            self._resolver.close()
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=CLOSE_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()
        self._resolver.close()


class EgressSession:
    """One execution's proxy: serving from start() until close()."""

    def __init__(
        self,
        service: EgressService,
        loop: asyncio.AbstractEventLoop,
        listener_fd: int,
        policy: EgressPolicy,
        limits: Limits,
    ) -> None:
        self._service = service
        self._loop = loop
        self._listener = socket.socket(fileno=listener_fd)
        self._listener.setblocking(False)
        self._policy = policy
        self._ledger = Ledger(limits)
        self._slots = asyncio.Semaphore(max(1, limits.max_egress_connections))
        self._lookups = asyncio.Semaphore(LOOKUPS_PER_EXECUTION)
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._summary: tuple[EgressEntry, ...] | None = None

    async def start(self) -> None:
        if not self._closed:
            self._accepting = asyncio.current_task()
            await self._accept_loop()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._ledger.connections < self._ledger.max_connections + OVER_LIMIT_ANSWERS:
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(self._listener)
            except BaseException:
                self._slots.release()
                raise
            over = self._ledger.take_connection()
            task = loop.create_task(self._serve(conn, over))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        self._listener.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _serve(self, conn: socket.socket, over: str) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=64 * 1024)
            connection = self._service.connection(self._policy, self._ledger, self._lookups)
            await connection.serve(reader, writer, over)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("egress proxy: a connection failed")
        finally:
            if writer is not None:
                writer.close()
            else:
                conn.close()

    async def _stop(self) -> tuple[EgressEntry, ...]:
        self._closed = True
        tasks = list(self._tasks)
        if self._accepting is not None:
            tasks.append(self._accepting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listener.close()
        return self._ledger.summary()

    def close(self) -> tuple[EgressEntry, ...]:
        """Stop serving (every connection of the execution is closed) and return the summary.
        Call from any thread but the loop's, once the program has exited; again, the same."""
        with self._close_lock:
            if self._summary is None:
                future: Future[tuple[EgressEntry, ...]] = asyncio.run_coroutine_threadsafe(
                    self._stop(), self._loop
                )
                self._summary = future.result(timeout=CLOSE_TIMEOUT_S)
            return self._summary
