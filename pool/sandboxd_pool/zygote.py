"""The pool's handle on its zygote process (the zygote itself is _in_zygote/main.py).

The zygote is exec'd as a fresh interpreter, so it never inherits the pool's threads, and is
started before the pool starts any of its own. One reader thread receives its messages and
routes them: "spawned" to the caller waiting in spawn(), "exited" to the worker's ExitWaiter.
If the zygote dies, every waiter is released with no report and the pool restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from . import zygote_protocol as proto
from .config import PoolConfig
from .jail.cgroups import WorkerCgroup
from .jail.policy import JailPlan

log = logging.getLogger("sandboxd_pool.zygote")


# This engine's own package directory. The zygote must run exactly these files: started as
# `python -I -m sandboxd_pool...`, the interpreter would import whatever sandboxd_pool its own
# site-packages hold (another checkout, another version) whenever the pool runs from a
# virtualenv or a path of its own.
ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))

# Run by the zygote's interpreter (-I -S: no environment variables, no site-packages, no .pth):
# argv is [-c, pool socket fd, engine's parent dir, the pool's other sys.path entries...].
_ZYGOTE_BOOT = (
    "import sys; sys.path[:0] = sys.argv[2:]; del sys.argv[2:]; "
    "from sandboxd_pool._in_zygote.main import main; main()"
)


def _own_interpreter() -> str:
    """The real binary of this interpreter (pyenv's `python3` is a shell shim)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable) or sys.executable)


def zygote_import_path() -> list[str]:
    """Where the zygote imports from: this engine first, then the pool's own import path (its
    dependencies: pyseccomp), so a virtualenv's packages are found by the base interpreter."""
    rest = [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)]
    return [os.path.dirname(ENGINE_DIR), *rest]


def check_engine(hello: proto.Hello) -> None:
    """Refuse a zygote that runs another copy of the engine than this pool."""
    theirs = hello.engine
    if theirs != ENGINE_DIR:
        raise ZygoteDied(
            f"engine mismatch: the zygote runs sandboxd_pool from {theirs!r}, the pool from "
            f"{ENGINE_DIR!r}; refusing to start workers from another version"
        )


class ZygoteDied(Exception):
    pass


@dataclass(frozen=True)
class SpawnedWorker:
    pid: int
    runtime: str
    slot: int
    cgroup: WorkerCgroup | None
    pidfd: int
    stdin: int
    stdout: int
    stderr: int
    control: int
    exit_pipe: int  # the worker's init writes the program's exit here (jail/init.py)
    exit_report: Future[proto.Exited]
    scratch_fs: int = -1  # subuid mode: fs context of the worker's scratch tmpfs (resize)
    # The egress proxy's listening socket in the worker's network namespace (jail/network.py);
    # -1 when the pool serves no egress.
    egress_listener: int = -1
    # Host pid of the program, the child of the worker's init (PID 1, `pid`); 0 if unknown.
    program_pid: int = 0


class ZygoteClient:
    def __init__(self, config: PoolConfig, plan: JailPlan) -> None:
        self._config = config
        self._plan = plan
        self._lock = threading.Lock()
        self._pending: dict[int, Future[SpawnedWorker]] = {}
        self._exits: dict[int, Future[proto.Exited]] = {}
        self._next_id = 0
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.pid = 0
        self.engine_dir = ""  # the engine the running zygote imported (checked: ENGINE_DIR)
        self.swept: list[str] = []
        self.clone_into_error = ""  # v2: why workers cannot be created in their cgroups, if so

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        process = subprocess.Popen(
            [
                # The zygote runs on the pool's own interpreter and this engine's own files;
                # the configured python_path is only what the Python workers run.
                _own_interpreter(),
                "-I",
                "-S",
                "-c",
                _ZYGOTE_BOOT,
                str(theirs.fileno()),
                *zygote_import_path(),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
            env=env,
            close_fds=True,
        )
        theirs.close()
        assert process.stdin is not None
        process.stdin.write(self._plan.to_json().encode())
        process.stdin.close()
        got = proto.receive(ours)
        if got is None or not isinstance(got[0], proto.Hello):
            process.kill()
            process.wait()
            raise ZygoteDied(f"zygote failed to start (exit status {process.poll()})")
        hello = got[0]
        try:
            check_engine(hello)
        except ZygoteDied:
            ours.close()
            process.kill()
            process.wait()
            raise
        self.engine_dir = hello.engine
        self.swept = list(hello.swept)
        if self.swept:
            log.warning("removed %d stale worker cgroups: %s", len(self.swept), self.swept)
        self.clone_into_error = hello.clone_into_error
        if self._plan.cgroup_version == 2:
            if self.clone_into_error:
                log.warning(
                    "cgroup v2: workers move into their cgroups through cgroup.procs: "
                    "clone3(CLONE_INTO_CGROUP) failed here (%s)",
                    self.clone_into_error,
                )
            else:
                log.info("cgroup v2: workers are created in their cgroups (CLONE_INTO_CGROUP)")
        with self._lock:
            self._sock, self._process, self.pid = ours, process, hello.pid
        self._reader = threading.Thread(
            target=self._read_loop, args=(ours, process), name="sandboxd-zygote-reader", daemon=True
        )
        self._reader.start()

    def alive(self) -> bool:
        with self._lock:
            return self._sock is not None

    def ensure_started(self) -> None:
        if not self.alive():
            log.warning("zygote is gone; starting a new one")
            self.start()

    def close(self) -> None:
        """Ask the zygote to kill and reap every worker, then wait for it to exit."""
        with self._lock:
            sock, process = self._sock, self._process
        if sock is not None:
            with contextlib.suppress(OSError):
                proto.send(sock, proto.Shutdown())
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=10)

    # -- requests -----------------------------------------------------------------------------

    def spawn(self, runtime: str, environment: str = "") -> Future[SpawnedWorker]:
        future: Future[SpawnedWorker] = Future()
        with self._lock:
            sock = self._sock
            if sock is None:
                future.set_exception(ZygoteDied("zygote is not running"))
                return future
            self._next_id += 1
            spawn_id = self._next_id
            self._pending[spawn_id] = future
        try:
            proto.send(sock, proto.Spawn(id=spawn_id, runtime=runtime, environment=environment))
        except OSError as e:
            with self._lock:
                self._pending.pop(spawn_id, None)
            future.set_exception(ZygoteDied(f"zygote socket: {e}"))
        return future

    # -- the reader thread ----------------------------------------------------------------------

    def _read_loop(self, sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
        try:
            while True:
                try:
                    got = proto.receive(sock)
                except OSError:
                    got = None
                if got is None:
                    break
                self._dispatch(*got)
        finally:
            self._on_death(sock, process)

    def _dispatch(self, message: proto.Message, fds: list[int]) -> None:
        if isinstance(message, proto.Spawned):
            self._on_spawned(message, fds)
            return
        for fd in fds:
            os.close(fd)
        if isinstance(message, proto.SpawnFailed):
            with self._lock:
                future = self._pending.pop(message.id, None)
            if future is not None:
                future.set_exception(RuntimeError(message.error))
        elif isinstance(message, proto.Exited):
            with self._lock:
                finished = self._exits.pop(message.pid, None)
                # A child that died before the zygote reported it spawned: its spawn() caller
                # is still waiting and would wait forever (keeping the pool's spawning count up,
                # so a broken runtime would never be seen failing to boot).
                unreported = (
                    None if message.reported_spawned else self._pending.pop(message.spawn_id, None)
                )
            if finished is not None:
                finished.set_result(message)
            if unreported is not None and not unreported.done():
                reason = message.boot_error or f"exit status {message.status}"
                unreported.set_exception(RuntimeError(f"worker died before it booted: {reason}"))

    def _on_spawned(self, message: proto.Spawned, fds: list[int]) -> None:
        exit_future: Future[proto.Exited] = Future()
        with self._lock:
            self._exits[message.pid] = exit_future
            future = self._pending.pop(message.id, None)
        handed = dict(zip(message.handed, fds[6:], strict=False))
        worker = SpawnedWorker(
            pid=message.pid,
            runtime=message.runtime,
            slot=message.slot,
            cgroup=WorkerCgroup(version=self._plan.cgroup_version, paths=message.cgroup)
            if message.cgroup
            else None,
            pidfd=fds[0],
            stdin=fds[1],
            stdout=fds[2],
            stderr=fds[3],
            control=fds[4],
            exit_pipe=fds[5],
            exit_report=exit_future,
            scratch_fs=handed.get("scratch", -1),
            egress_listener=handed.get("proxy", -1),
            program_pid=message.program_pid,
        )
        if future is None or not future.set_running_or_notify_cancel():
            for fd in fds:
                os.close(fd)
            return
        future.set_result(worker)

    def _on_death(self, sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
            pending, self._pending = self._pending, {}
            exits, self._exits = self._exits, {}
        sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        for spawn_future in pending.values():
            if not spawn_future.done():
                spawn_future.set_exception(ZygoteDied("zygote exited"))
        for exit_future in exits.values():
            if not exit_future.done():
                exit_future.set_exception(ZygoteDied("zygote exited before reporting"))
