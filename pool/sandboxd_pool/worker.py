"""The parent's handle on one warm worker: dispatch its one request and collect the facts.

Runs in the pool (any thread). It writes the request frame, feeds stdin, drains stdout and
stderr up to the cap, enforces the wall and CPU deadlines by killing the worker's PID 1 (its
whole PID namespace dies with it), then takes the zygote's exit report (wait status, rusage,
cgroup facts, blocked syscall) and classifies. A worker runs exactly one request.

Egress: a request with an egress policy gets a proxy session on the worker's listening socket
(egress/service.py) before its frame is sent, closed once the program has exited (its ledger
is Outcome.egress); a request without one closes that socket first, so connections to the
proxy's port are refused.

HANDLER mode: the worker keeps its control socket open after reading the frame and sends the
handler's JSON return value on it (raw bytes; its close is the end), which is drained like
stdout, with the same cap. The user's code could write to that socket itself: that only
forges its own result, which it could return anyway.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import files_out, pidfd_exit, request_frame
from .jail import mounts, rlimits
from .jail.policy import WORK_DIR
from .json_bounds import check_json
from .types import (
    EgressEntry,
    ExecutionRequest,
    Limits,
    Mode,
    Outcome,
    OutputFile,
    Stream,
    Usage,
    Verdict,
)
from .verdict import ExitFacts, KillReason, classify
from .zygote import SpawnedWorker, ZygoteDied
from .zygote_protocol import Exited, Rusage

if TYPE_CHECKING:  # the service imports cryptography: loaded by the pool only when used
    from .egress.policy import EgressPolicy
    from .egress.service import EgressService, EgressSession

READ_CHUNK = 256 * 1024
CPU_POLL_S = 0.02
DRAIN_GRACE_S = 2.0
EXIT_REPORT_TIMEOUT_S = 10.0
NO_RESULT_MESSAGE = b"sandboxd: the handler exited before returning a value\n"
MAX_RESULT_DEPTH = 512  # as for events (validation.MAX_EVENT_DEPTH): what clients can parse
UNOBSERVED_MESSAGE = b"sandboxd: the worker's exit could not be observed\n"
# The zygote (every worker's parent) died: its workers were killed with it (parent-death
# signal); what the program did before is unknown, as is whether it finished.
ZYGOTE_DIED_MESSAGE = (
    b"sandboxd: the zygote (the workers' parent process) died during the execution, killing "
    b"its worker; the worker's exit could not be observed\n"
)

# The worker's init exited by itself without reporting the program's exit (jail/init.py).
INIT_LOST_MESSAGE = b"sandboxd: the worker's init exited without reporting the program's exit\n"

OutputCallback = Callable[[Stream, bytes], None]


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    exit_report: Exited | None
    # The exception the on_output callback raised (the worker was then killed), if it did.
    callback_error: BaseException | None = None


class Worker:
    def __init__(
        self,
        spawned: SpawnedWorker,
        spawn_started: float,
        cpu_cores: float,
        acting_as: tuple[int, int] | None = None,
    ) -> None:
        self.spawned = spawned
        # Root mode: the worker's host (uid, gid), which the pool takes (in one thread, for
        # the call) to tighten the program's rlimits: see rlimits.limit_running_worker.
        self.acting_as = acting_as
        self.pid = spawned.pid  # the init: PID 1 of the worker's PID namespace
        self.program_pid = spawned.program_pid  # its child, the program (see jail/init.py)
        self.runtime = spawned.runtime
        self.spawn_started = spawn_started
        self.cpu_cores = cpu_cores  # cgroup CPU quota while the request runs; 0: none
        self.boot_us = 0
        self._closed = False
        self._stdin_closed = False
        self.mount_ns_fd = -1
        self.program_pidfd = -1
        self.work_fd = -1
        self.applied: Limits | None = None  # what _set_limits last wrote (prepare)
        self.egress_listener = spawned.egress_listener  # -1 once handed to a session or closed
        self._lock = threading.Lock()

    # -- boot -----------------------------------------------------------------------------------

    def control_fd(self) -> int:
        return self.spawned.control

    def on_ready_byte(self) -> bool:
        """Read the worker's readiness byte; False if it died instead."""
        try:
            data = os.read(self.spawned.control, 1)
        except OSError:
            return False
        if data != b"R" or not self.program_pid:
            return False
        self.boot_us = int((time.monotonic() - self.spawn_started) * 1e6)
        # Hold the worker's mount namespace: otherwise its teardown (an RCU grace period,
        # several ms here) runs inside the worker's exit, before the parent sees it exit.
        # The pool closes this fd after the outcome is built (see Pool._janitor).
        with contextlib.suppress(OSError):
            self.mount_ns_fd = os.open(f"/proc/{self.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        # The program's own pidfd: its exit status from the kernel (pidfd_exit.py). It has just
        # said it is ready, so the pid is still its own.
        with contextlib.suppress(OSError):
            self.program_pidfd = os.pidfd_open(self.program_pid)
        # The working directory, kept open: files out are read from it once the program has
        # exited, when its namespace is gone (files_out.py).
        with contextlib.suppress(OSError):
            self.work_fd = os.open(
                f"/proc/{self.program_pid}/root{WORK_DIR}",
                os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
            )
        return True

    def boot_failure_reason(self) -> str:
        """Best account of why the worker died while booting: zygote report, then its stderr."""
        self.kill()
        report: Exited | None = None
        with contextlib.suppress(FutureTimeout, ZygoteDied):
            report = self.spawned.exit_report.result(timeout=EXIT_REPORT_TIMEOUT_S)
        stderr = b""
        with contextlib.suppress(OSError):
            os.set_blocking(self.spawned.stderr, False)
            stderr = os.read(self.spawned.stderr, 4096)
        self.close()
        # A runtime that cannot start its threads dies in its own way (Node: SIGSEGV with a
        # native stack trace; the init's fork of the program: EAGAIN); the cgroup's count of
        # refused forks names the real cause.
        refused = report.facts.pids_limit_hits if report and report.facts else 0
        hint = (
            f"the pids controller refused {refused} new task(s): the pids.max of its cgroup or "
            "of a parent cgroup is used up"
            if refused
            else ""
        )
        if report is not None and report.boot_error:
            return f"{report.boot_error}; {hint}" if hint else report.boot_error
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        detail = f"exit status {_describe(report.status)}" if report else "no exit report"
        if hint:
            detail += f"; {hint}"
        return f"worker died while booting ({detail}){': ' + ' | '.join(tail) if tail else ''}"

    # -- one execution ----------------------------------------------------------------------------

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.spawned.pidfd, signal.SIGKILL)

    def run(
        self,
        request: ExecutionRequest,
        limits: Limits,
        cancel: threading.Event | None = None,
        *,
        on_output: OutputCallback | None = None,
        execution_id: str = "",
        output_paused: Callable[[], bool] | None = None,
        egress: EgressPolicy | None = None,
        egress_service: EgressService | None = None,
    ) -> RunResult:
        """Run the one request. The caller must close() the worker afterwards.

        egress: the request's policy, served by `egress_service` on the worker's proxy socket
        while the program runs; None: the socket is closed before the code is sent.

        on_output(stream, chunk) is called in this thread with each captured chunk (only
        what is kept under the cap, in order). If it raises, the worker is killed (verdict
        KILLED), it is not called again, and the exception is in RunResult.callback_error.
        output_paused(): while it returns True, stdout and stderr are not read (the program
        blocks once a pipe is full); the limits are enforced all the same.
        """
        session = None
        try:
            if egress is not None and egress_service is not None and self.egress_listener >= 0:
                listener, self.egress_listener = self.egress_listener, -1
                session = egress_service.open(listener, egress, limits)
            else:
                self._close_egress_listener()
            return self._run(
                request,
                limits,
                cancel,
                on_output,
                execution_id,
                output_paused,
                session,
                egress_service.ca.cert_pem if session is not None and egress_service else "",
            )
        finally:
            self.kill()
            if session is not None:
                session.close()  # no-op when _run closed it

    def prepare(self, limits: Limits) -> None:
        """Apply a request's likely limits (the pool's defaults) while the worker waits for its
        request, off the execution's path: _apply_limits then writes only what differs."""
        self._set_limits(limits, self.applied)
        self.applied = limits

    def _apply_limits(self, limits: Limits) -> tuple[int, int]:
        """Per-request limits on the running worker. Returns CPU baselines (cgroup ns, proc us)."""
        if limits != self.applied:
            self._set_limits(limits, self.applied)
            self.applied = limits
        cg = self.spawned.cgroup
        if cg is not None:
            return cg.cpu_time_ns(), 0
        return 0, _proc_cpu_us(self.program_pid)

    def _set_limits(self, limits: Limits, applied: Limits | None) -> None:
        """Write the limits that differ from `applied` (all of them when None): the cgroup's,
        the scratch tmpfs's size, and the program's rlimits (its CPU time counted from its
        start: the time spent so far, a second's rounding and a second of grace)."""
        cg = self.spawned.cgroup

        def changed(*names: str) -> bool:
            return applied is None or any(getattr(limits, n) != getattr(applied, n) for n in names)

        if cg is not None and changed("memory_bytes", "max_processes"):
            cg.set_limits(limits.memory_bytes, limits.max_processes, self.cpu_cores)
        if changed("tmpfs_bytes"):
            mounts.resize_scratch(self.pid, limits.tmpfs_bytes, self.spawned.scratch_fs)
        if changed("cpu_time_ms", "max_processes", "memory_bytes"):
            proc_cpu_us = _proc_cpu_us(self.program_pid)
            cpu_s = (proc_cpu_us // 1_000_000) + (limits.cpu_time_ms + 999) // 1000 + 1
            rlimits.limit_running_worker(
                self.program_pid,
                cpu_s,
                limits.max_processes,
                0 if cg else limits.memory_bytes,
                acting_as=self.acting_as,
            )

    def _run(
        self,
        request: ExecutionRequest,
        limits: Limits,
        cancel: threading.Event | None,
        on_output: OutputCallback | None,
        execution_id: str,
        output_paused: Callable[[], bool] | None,
        session: EgressSession | None,
        egress_ca_pem: str,
    ) -> RunResult:
        cpu_base_ns, proc_cpu_base_us = self._apply_limits(limits)
        started = time.monotonic()
        deadline = started + limits.wall_time_ms / 1000
        self._send_frame(request, limits, execution_id, deadline, egress_ca_pem)
        watch = _Watch(
            limits=limits,
            started=started,
            deadline=deadline,
            cpu_base_ns=cpu_base_ns,
            proc_cpu_base_us=proc_cpu_base_us,
            handler_mode=request.mode is Mode.HANDLER,
            cpu_checked_at=started,
        )
        self._supervise(watch, request.stdin, cancel, on_output, output_paused)
        self._close_stdin()
        egress = session.close() if session is not None else ()
        return self._outcome(watch, execution_id, egress)

    def _supervise(
        self,
        watch: _Watch,
        stdin_data: bytes,
        cancel: threading.Event | None,
        on_output: OutputCallback | None,
        output_paused: Callable[[], bool] | None,
    ) -> None:
        """Feed stdin, drain the outputs and enforce the limits until the program has exited
        (its init reports it on the exit pipe) or the worker's PID 1 is gone (its pidfd says
        so), whatever the program does with its descriptors; then drain what is left in the
        pipes for at most DRAIN_GRACE_S. The init exits right after its report, which ends
        whatever else is left of the namespace."""
        sp = self.spawned
        stdin = memoryview(stdin_data)
        stdin_open = bool(stdin) or self._close_stdin()
        for fd in (sp.stdin, sp.stdout, sp.stderr, sp.control, sp.exit_pipe):
            with contextlib.suppress(OSError):
                os.set_blocking(fd, False)
        streams = {sp.stdout: watch.out, sp.stderr: watch.err}
        if watch.handler_mode:
            streams[sp.control] = watch.result
        while True:
            now = time.monotonic()
            if watch.exited_at is None:
                if watch.kill_reason is KillReason.NONE:
                    self._enforce(watch, now, cancel)
                elif now - watch.killed_at > EXIT_REPORT_TIMEOUT_S:
                    break  # killed, yet not gone: the exit report below decides
            elif not streams or now - watch.exited_at > DRAIN_GRACE_S:
                break
            # While the consumer of the output is behind, the pipes are not read (the program
            # blocks once they are full); the limits above are enforced all the same.
            paused = output_paused is not None and watch.exited_at is None and output_paused()
            poller = select.poll()
            if watch.exited_at is None:
                poller.register(sp.pidfd, select.POLLIN)
                poller.register(sp.exit_pipe, select.POLLIN)
            if stdin_open:
                poller.register(sp.stdin, select.POLLOUT)
            for fd, capture in streams.items():
                if not (paused and capture.stream is not None):
                    poller.register(fd, select.POLLIN)
            if watch.exited_at is not None:
                wait_s = 0.05
            else:
                wait_s = min(max(watch.deadline - now, 0.0), CPU_POLL_S)
            for fd, _events in poller.poll(wait_s * 1000):
                if fd in (sp.pidfd, sp.exit_pipe):
                    if watch.exited_at is not None:
                        continue
                    if fd == sp.exit_pipe:
                        watch.program_exit = _read_program_exit(sp.exit_pipe)
                    # The program has exited (its init says so), or the init itself is gone
                    # (killed with the whole namespace).
                    watch.exited_at = time.monotonic()
                    if stdin_open:
                        stdin_open = self._close_stdin()
                elif fd == sp.stdin and stdin_open:
                    stdin = _feed(sp.stdin, stdin)
                    if not stdin:
                        stdin_open = self._close_stdin()
                elif fd in streams:
                    capture = streams[fd]
                    open_, kept = capture.read_from(fd)
                    if kept and on_output is not None and capture.stream is not None:
                        try:
                            on_output(capture.stream, kept)
                        except BaseException as e:
                            watch.callback_error = e
                            on_output = None
                            self._kill_once(watch, KillReason.CANCELLED)
                    if not open_:
                        del streams[fd]
                    elif capture.overflowed:
                        self._kill_once(watch, KillReason.OUTPUT)

    def _enforce(self, watch: _Watch, now: float, cancel: threading.Event | None) -> None:
        """Kill the running worker at its wall-clock deadline, on cancel, or past its CPU time.
        The CPU time is read at most every CPU_POLL_S (the loop wakes at least that often), not
        on every wake-up for output: the bound on what a program uses past its limit is the
        same, and a short execution reads it only once, for its outcome."""
        if now >= watch.deadline:
            self._kill_once(watch, KillReason.TIMEOUT)
        elif cancel is not None and cancel.is_set():
            self._kill_once(watch, KillReason.CANCELLED)
        elif now - watch.cpu_checked_at >= CPU_POLL_S:
            watch.cpu_checked_at = now
            if self._cpu_used_ns(watch) > watch.limits.cpu_time_ms * 1_000_000:
                self._kill_once(watch, KillReason.CPU)

    def _cpu_used_ns(self, watch: _Watch) -> int:
        """The execution's CPU time so far: the cgroup's (every process); without a cgroup
        (rlimit fallback) the program's threads and its reaped children, as a running child is
        stopped by its own RLIMIT_CPU (whole seconds) only."""
        cg = self.spawned.cgroup
        if cg is not None:
            return cg.cpu_time_ns() - watch.cpu_base_ns
        return (_proc_cpu_us(self.program_pid, children=True) - watch.proc_cpu_base_us) * 1000

    def _kill_once(self, watch: _Watch, reason: KillReason) -> None:
        """Kill the worker for `reason`, unless it was killed already or has exited."""
        if watch.kill_reason is KillReason.NONE and watch.exited_at is None:
            self.kill()
            watch.kill_reason = reason
            watch.killed_at = time.monotonic()

    def _outcome(
        self, watch: _Watch, execution_id: str, egress: tuple[EgressEntry, ...] = ()
    ) -> RunResult:
        """The verdict and usage from the kernel's facts (the program's wait status and rusage
        as its init read them, the cgroup's counters; or the zygote's exit report when the init
        did not report, or the program died of SIGKILL or SIGSYS, which the zygote may have
        sent for a blocked syscall) and what supervision saw."""
        sp = self.spawned
        cg = sp.cgroup
        limits = watch.limits
        exited_at = watch.exited_at if watch.exited_at is not None else time.monotonic()
        wall_us = int((exited_at - watch.started) * 1e6)
        report = self._report_of_init(watch)
        unobserved = UNOBSERVED_MESSAGE
        if report is None:
            try:
                report = sp.exit_report.result(timeout=EXIT_REPORT_TIMEOUT_S)
            except FutureTimeout:
                report = None
            except ZygoteDied:
                report, unobserved = None, ZYGOTE_DIED_MESSAGE
        facts = report.facts if report is not None else None
        rusage = report.rusage if report is not None else Rusage()
        if cg is not None and facts is not None:
            cpu_us = max(0, (facts.cpu_time_ns - watch.cpu_base_ns) // 1000)
            peak = facts.peak_memory_bytes
        else:
            cpu_us = max(0, rusage.utime_us + rusage.stime_us - watch.proc_cpu_base_us)
            peak = rusage.maxrss_kb * 1024
        if report is not None and report.init_lost:
            report, unobserved = None, INIT_LOST_MESSAGE
        status = None if report is None else report.status
        result = watch.result
        # A complete result is one that ended with the socket's close, under the cap.
        result_complete = watch.handler_mode and result.eof and not result.overflowed
        result_missing = watch.handler_mode and not (result_complete and result.size)
        # The program writes the result channel itself (the bootstrap runs in its process): a
        # result is only accepted as strict JSON, checked without building it.
        result_error = ""
        if result_complete and result.size:
            try:
                check_json(result.data(), max_values=result.size, max_depth=MAX_RESULT_DEPTH)
            except ValueError as e:
                result_error = str(e)
                result_complete = False
        verdict = classify(
            ExitFacts(
                wait_status=status,
                kill_reason=watch.kill_reason,
                oom_kills=facts.oom_kills if facts is not None else 0,
                blocked_syscall=report.blocked_syscall if report is not None else None,
                cpu_time_us=cpu_us,
                cpu_limit_us=limits.cpu_time_ms * 1000,
                handler_result_missing=result_missing or bool(result_error),
            )
        )
        exit_code = signum = None
        if status is not None:
            if os.WIFSIGNALED(status):
                signum = os.WTERMSIG(status)
            else:
                exit_code = os.waitstatus_to_exitcode(status)
        stderr = watch.err.data()
        if result_error and exit_code == 0 and verdict is Verdict.RUNTIME_ERROR:
            stderr += f"sandboxd: the handler's result {result_error}\n".encode()
        elif (
            result_missing
            and exit_code == 0
            and watch.kill_reason is KillReason.NONE
            and verdict is Verdict.RUNTIME_ERROR
        ):
            stderr += NO_RESULT_MESSAGE
        elif verdict is Verdict.INTERNAL_ERROR:
            stderr += unobserved
        files: tuple[OutputFile, ...] = ()
        files_truncated = False
        if self.work_fd >= 0 and status is not None:
            self.kill()  # whatever the program left running must not change out/ any more
            files, files_truncated = files_out.collect(
                self.work_fd, limits.max_output_files, limits.max_output_files_bytes
            )
        outcome = Outcome(
            verdict=verdict,
            exit_code=exit_code,
            signal=signum,
            stdout=watch.out.data(),
            stderr=stderr,
            stdout_truncated=watch.out.overflowed,
            stderr_truncated=watch.err.overflowed,
            blocked_syscall=report.blocked_syscall if report is not None else None,
            usage=Usage(wall_time_us=wall_us, cpu_time_us=cpu_us, peak_memory_bytes=peak),
            worker_boot_us=self.boot_us,
            execution_id=execution_id,
            result=result.data() if result_complete else b"",
            files=files,
            files_truncated=files_truncated,
            egress=egress,
        )
        return RunResult(outcome=outcome, exit_report=report, callback_error=watch.callback_error)

    def _report_of_init(self, watch: _Watch) -> Exited | None:
        """The exit report from the init's own account and the cgroup, without waiting for the
        zygote: only for a program that ended by itself (not killed by the pool) and not by
        SIGKILL or SIGSYS (a blocked syscall, an OOM kill: the zygote's report says which)."""
        program_exit = watch.program_exit
        if program_exit is None or watch.kill_reason is not KillReason.NONE:
            return None
        status, utime_us, stime_us, maxrss_kb = program_exit
        # The kernel's own account of the status, where it gives one (the init reaped the
        # program before it reported): that decides, not the init's word.
        if self.program_pidfd >= 0:
            kernel_status = pidfd_exit.exit_status(self.program_pidfd)
            if kernel_status is not None:
                status = kernel_status
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGSYS):
            return None
        facts = None
        cg = self.spawned.cgroup
        if cg is not None:
            try:
                facts = cg.facts()
            except OSError:  # already removed: the zygote's report has them
                return None
            if facts.oom_kills:
                return None
        return Exited(
            pid=self.pid,
            status=status,
            rusage=Rusage(utime_us=utime_us, stime_us=stime_us, maxrss_kb=maxrss_kb),
            facts=facts,
        )

    def _send_frame(
        self,
        request: ExecutionRequest,
        limits: Limits,
        execution_id: str,
        deadline: float,
        egress_ca_pem: str = "",
    ) -> None:
        sock = socket.socket(fileno=os.dup(self.spawned.control))
        parts = request_frame.encode(
            request, execution_id=execution_id, limits=limits, egress_ca_pem=egress_ca_pem
        )
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            for part in parts:
                sock.sendall(part)
        except OSError:
            pass  # the worker died or stalled; the wait below reports what happened
        finally:
            sock.close()

    def _close_stdin(self) -> bool:
        """Close our end of the worker's stdin once (EOF for the program). Returns False."""
        if not self._stdin_closed:
            self._stdin_closed = True
            with contextlib.suppress(OSError):
                os.close(self.spawned.stdin)
        return False

    def _close_egress_listener(self) -> None:
        """No egress for this worker (any more): connections to the proxy's port are refused."""
        listener, self.egress_listener = self.egress_listener, -1
        if listener >= 0:
            with contextlib.suppress(OSError):
                os.close(listener)

    def close(self) -> None:
        self._close_stdin()
        self._close_egress_listener()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        sp = self.spawned
        for fd in (
            sp.pidfd,
            sp.stdout,
            sp.stderr,
            sp.control,
            sp.exit_pipe,
            self.mount_ns_fd,
            self.program_pidfd,
            self.work_fd,
            sp.scratch_fs,
        ):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Capture:
    def __init__(self, cap_bytes: int, stream: Stream | None) -> None:
        self.cap = cap_bytes
        self.stream = stream  # None: the handler's result
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflowed = False
        self.eof = False  # the writer closed its end (not a read error)

    def read_from(self, fd: int) -> tuple[bool, bytes]:
        """Read what is there: (False at EOF, the bytes kept under the cap)."""
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return True, b""
        except OSError:
            return False, b""
        if not chunk:
            self.eof = True
            return False, b""
        room = self.cap - self.size
        if len(chunk) > room:
            chunk = chunk[:room]
            self.overflowed = True
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)
        return True, chunk

    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class _Watch:
    """One execution under supervision: its limits and clocks, and what was seen so far."""

    limits: Limits
    started: float  # monotonic seconds, when the request frame was sent
    deadline: float  # started + the wall-time limit
    cpu_base_ns: int  # the cgroup's CPU time when the request was sent
    proc_cpu_base_us: int  # the program's CPU time then (no cgroup)
    handler_mode: bool
    kill_reason: KillReason = KillReason.NONE
    killed_at: float = 0.0
    cpu_checked_at: float = 0.0  # monotonic seconds, the last CPU-time check (_enforce)
    exited_at: float | None = None  # when the program (or PID 1) was seen to have exited
    program_exit: tuple[int, int, int, int] | None = None  # the init's report (see jail/init.py)
    callback_error: BaseException | None = None
    out: _Capture = field(init=False)
    err: _Capture = field(init=False)
    result: _Capture = field(init=False)

    def __post_init__(self) -> None:
        cap = self.limits.max_output_bytes
        self.out = _Capture(cap, Stream.STDOUT)
        self.err = _Capture(cap, Stream.STDERR)
        self.result = _Capture(cap, None)


def _read_program_exit(fd: int) -> tuple[int, int, int, int] | None:
    """The init's one-line report: (wait status, utime us, stime us, max RSS KiB); None at EOF
    (the init died without one) or if it is malformed."""
    try:
        fields = os.read(fd, 256).split()
        status, utime_us, stime_us, maxrss_kb = (int(f) for f in fields)
    except (OSError, ValueError):
        return None
    return status, utime_us, stime_us, maxrss_kb


def _feed(fd: int, data: memoryview) -> memoryview:
    """Write what the pipe takes; empty when all is written or the reader is gone."""
    try:
        written = os.write(fd, data[:READ_CHUNK])
    except BlockingIOError:
        return data
    except OSError:
        return data[len(data) :]
    return data[written:]


def _proc_cpu_us(pid: int, children: bool = False) -> int:
    """utime + stime of the process (all its threads); with children, plus its reaped ones."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks * 1_000_000 // os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0


def _describe(status: Any) -> str:
    try:
        st = int(status)
    except (TypeError, ValueError):
        return "unknown"
    if os.WIFSIGNALED(st):
        return f"signal {signal.Signals(os.WTERMSIG(st)).name}"
    return f"code {os.waitstatus_to_exitcode(st)}"
