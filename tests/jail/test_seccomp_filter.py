"""The worker seccomp filter on the real kernel.

Each test forks a child that loads the compiled filter, hands the listener fd to the
parent (the test process, playing the supervisor) over a socketpair and closes its own
copy, then does one thing. The parent receives notifications with the raw ioctls, names
them with `notify_names`, and kills or answers the child. Every child is reaped and
every fd closed, whatever happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psutil
import pytest

from sandboxd_pool import PoolConfig
from sandboxd_pool._in_zygote.seccomp_policy import SeccompProgram, build_program
from sandboxd_pool.jail.seccomp import (
    AUDIT_ARCH_X86_64,
    SYS_SECCOMP,
    Notification,
    load_filter,
    notification_id_valid,
    receive_notification,
    respond_error,
)

# The interpreters the pool itself would use (the real binary, never pyenv's shim), found on
# this machine rather than written down for one; a missing node fails loudly below.
PYTHON = PoolConfig().python_path
NODE = shutil.which("node") or "node"

SYS_PTRACE = 101
SYS_PERSONALITY = 135
SYS_UNSHARE = 272
SYS_IO_URING_SETUP = 425
SYS_CLONE = 56
SYS_CLONE3 = 435
CLONE_NEWUSER = 0x10000000
ADDR_NO_RANDOMIZE = 0x0040000
PTRACE_TRACEME = 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Exit codes the child uses to say what went wrong before/around its action.
CHILD_CRASHED = 101
ACTION_RETURNED = 102

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64", reason="x86_64 Linux only"
)


def raw_syscall(nr: int, *args: int) -> tuple[int, int]:
    """(return value, errno) of a raw syscall."""
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args))
    return int(ret), ctypes.get_errno() if ret == -1 else 0


@dataclass
class Run:
    status: int
    output: bytes
    notifications: list[Notification] = field(default_factory=list)

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None


@pytest.fixture(scope="module")
def program() -> SeccompProgram:
    return build_program("python")


def _own_children() -> list[psutil.Process]:
    """Children of this process other than a warm pool's zygote (another test module's)."""
    own = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "sandboxd_pool._in_zygote" not in " ".join(child.cmdline()):
                own.append(child)
    return own


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    fds_before = set(os.listdir("/proc/self/fd"))
    yield
    # A session-wide pool may open and close fds in its own threads meanwhile: a leak is an
    # fd that is still there after that churn settles.
    deadline = time.monotonic() + 2
    while not set(os.listdir("/proc/self/fd")) <= fds_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(os.listdir("/proc/self/fd")) <= fds_before, "a test leaked an fd"
    assert not _own_children(), "a test left a child process (alive or zombie)"


def _child(
    program: SeccompProgram,
    action: Callable[[], int],
    fd_sock: socket.socket,
    out_w: int,
    go_r: int,
) -> None:
    """Runs in the forked child; never returns."""
    code = CHILD_CRASHED
    try:
        os.dup2(out_w, 1)
        os.close(out_w)
        listener = load_filter(program.bpf)
        cloexec = bool(fcntl.fcntl(listener, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        socket.send_fds(fd_sock, [b"L" if cloexec else b"!"], [listener])
        os.close(listener)
        fd_sock.close()
        os.read(go_r, 1)  # wait until the supervisor is ready (or has gone away)
        os.close(go_r)
        code = action()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def run_under_filter(
    program: SeccompProgram,
    action: Callable[[], int],
    *,
    on_notify: str = "kill",
    close_listener_first: bool = False,
    timeout_s: float = 30.0,
) -> Run:
    """Fork, filter the child, run `action` in it and supervise until the child is gone.

    on_notify: "kill" (SIGKILL the child, like the pool) or "eperm" (answer EPERM).
    close_listener_first: the supervisor closes the listener before letting the child go.
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    go_r, go_w = os.pipe()
    listener = -1
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        os.close(out_r)
        os.close(go_w)
        _child(program, action, child_sock, out_w, go_r)
    reaped = False
    status = 0
    output = bytearray()
    notifications: list[Notification] = []
    try:
        child_sock.close()
        os.close(out_w)
        os.close(go_r)
        msg, fds, _flags, _addr = socket.recv_fds(parent_sock, 1, 1)
        assert len(fds) == 1, f"child sent no listener fd (message {msg!r})"
        listener = fds[0]
        assert msg == b"L", "the listener fd is not close-on-exec"
        if close_listener_first:
            os.close(listener)
            listener = -1
        os.write(go_w, b"g")
        os.set_blocking(out_r, False)
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        if listener >= 0:
            poller.register(listener, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while not reaped:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"child still running after {timeout_s}s")
            for fd, events in poller.poll(20):
                if fd == out_r:
                    chunk = os.read(out_r, 65536) if events & select.POLLIN else b""
                    if not chunk:
                        poller.unregister(out_r)
                    output += chunk
                elif fd == listener and events & select.POLLIN:
                    notif = receive_notification(listener)
                    if notif is None:
                        continue
                    notifications.append(notif)
                    if on_notify == "kill":
                        os.kill(pid, signal.SIGKILL)
                    else:
                        assert notification_id_valid(listener, notif.id)
                        assert respond_error(listener, notif.id, errno.EPERM)
                        assert not notification_id_valid(listener, notif.id)
            done, status = os.waitpid(pid, os.WNOHANG)
            reaped = done == pid
        with contextlib.suppress(BlockingIOError):  # the writer is gone; take what is left
            output += os.read(out_r, 65536)
        return Run(status=status, output=bytes(output), notifications=notifications)
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in (listener, out_r, go_w):
            if fd >= 0:
                os.close(fd)
        parent_sock.close()


def names(program: SeccompProgram, run: Run) -> list[str]:
    assert all(n.arch == AUDIT_ARCH_X86_64 for n in run.notifications)
    return [program.notify_names[n.nr] for n in run.notifications]


# --- notified calls: named by the kernel, then the sandbox is killed --------------------


def test_ptrace_is_named_and_the_child_killed(program: SeccompProgram) -> None:
    def action() -> int:
        raw_syscall(SYS_PTRACE, PTRACE_TRACEME, 0, 0, 0)
        return ACTION_RETURNED

    run = run_under_filter(program, action)
    assert names(program, run) == ["ptrace"]
    assert run.notifications[0].args[0] == PTRACE_TRACEME
    assert run.signal == signal.SIGKILL


def test_unshare_newuser_is_named(program: SeccompProgram) -> None:
    def action() -> int:
        raw_syscall(SYS_UNSHARE, CLONE_NEWUSER)
        return ACTION_RETURNED

    run = run_under_filter(program, action)
    assert names(program, run) == ["unshare"]
    assert run.signal == signal.SIGKILL


def test_clone_with_a_namespace_flag_is_named(program: SeccompProgram) -> None:
    def action() -> int:
        pid, _ = raw_syscall(SYS_CLONE, CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:  # only if the filter failed: leave at once
            os._exit(0)
        return ACTION_RETURNED

    run = run_under_filter(program, action)
    assert names(program, run) == ["clone"]
    assert run.notifications[0].args[0] & CLONE_NEWUSER
    assert run.signal == signal.SIGKILL


def test_personality_query_passes_but_a_change_is_named(program: SeccompProgram) -> None:
    def action() -> int:
        current, err = raw_syscall(SYS_PERSONALITY, 0xFFFFFFFF)
        if err or raw_syscall(SYS_PERSONALITY, current)[1]:
            return 1
        raw_syscall(SYS_PERSONALITY, current | ADDR_NO_RANDOMIZE)
        return ACTION_RETURNED

    run = run_under_filter(program, action)
    assert names(program, run) == ["personality"]
    assert run.notifications[0].args[0] & ADDR_NO_RANDOMIZE
    assert run.signal == signal.SIGKILL


def test_supervisor_can_answer_eperm_instead(program: SeccompProgram) -> None:
    def action() -> int:
        _, err = raw_syscall(SYS_PTRACE, PTRACE_TRACEME, 0, 0, 0)
        return err

    run = run_under_filter(program, action, on_notify="eperm")
    assert names(program, run) == ["ptrace"]
    assert run.exit_code == errno.EPERM


def test_without_a_supervisor_notified_calls_fail_closed(program: SeccompProgram) -> None:
    def action() -> int:
        _, err = raw_syscall(SYS_PTRACE, PTRACE_TRACEME, 0, 0, 0)
        return err

    run = run_under_filter(program, action, close_listener_first=True)
    assert run.exit_code == errno.ENOSYS


# --- soft failures ------------------------------------------------------------------


def test_clone3_fails_with_enosys(program: SeccompProgram) -> None:
    run = run_under_filter(program, lambda: raw_syscall(SYS_CLONE3, 0, 0)[1])
    assert run.notifications == []
    assert run.exit_code == errno.ENOSYS  # without the filter: EINVAL


def test_io_uring_fails_with_enosys(program: SeccompProgram) -> None:
    run = run_under_filter(program, lambda: raw_syscall(SYS_IO_URING_SETUP, 1, 0)[1])
    assert run.notifications == []
    assert run.exit_code == errno.ENOSYS


def test_netlink_socket_fails_with_eafnosupport(program: SeccompProgram) -> None:
    def action() -> int:
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            socket.socket(family, socket.SOCK_STREAM).close()
        for sock in socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM):
            sock.close()
        try:
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE).close()
        except OSError as exc:
            return exc.errno or 0
        return 0

    run = run_under_filter(program, action)
    assert run.notifications == []
    assert run.exit_code == errno.EAFNOSUPPORT


# --- ordinary programs work -----------------------------------------------------------


def test_fork_and_threads_work(program: SeccompProgram) -> None:
    def action() -> int:
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        results: list[int] = []
        thread = threading.Thread(target=lambda: results.append(os.getpid()))
        thread.start()
        thread.join()
        return 0 if os.waitstatus_to_exitcode(status) == 7 and results else 1

    run = run_under_filter(program, action)
    assert run.notifications == []
    assert run.exit_code == 0


def _exec(argv: list[str]) -> Callable[[], int]:
    def action() -> int:
        os.execve(argv[0], argv, {})

    return action


def test_python_runs_under_the_filter(program: SeccompProgram) -> None:
    code = "import threading, subprocess, json; print(subprocess.run(['/bin/true']).returncode)"
    run = run_under_filter(program, _exec([PYTHON, "-I", "-S", "-c", code]))
    assert names(program, run) == []
    assert run.exit_code == 0
    assert run.output == b"0\n"


def test_node_runs_under_the_filter() -> None:
    assert shutil.which("node"), "node is not on PATH (scripts/install-system-deps.sh installs it)"
    code = (
        "require('child_process').execSync('true'); require('crypto').randomBytes(8);"
        " setTimeout(()=>console.log('ok'),1)"
    )
    program = build_program("javascript")
    run = run_under_filter(program, _exec([NODE, "-e", code]))
    assert names(program, run) == []
    assert run.exit_code == 0
    assert run.output == b"ok\n"


def test_kernel_agrees_on_notification_struct_sizes() -> None:
    sizes = ctypes.create_string_buffer(6)  # struct seccomp_notif_sizes { u16 x3 }
    ret = _libc.syscall(ctypes.c_long(SYS_SECCOMP), ctypes.c_ulong(3), ctypes.c_ulong(0), sizes)
    assert ret == 0, os.strerror(ctypes.get_errno())
    notif, resp, data = (int.from_bytes(sizes.raw[i : i + 2], "little") for i in (0, 2, 4))
    assert (notif, resp, data) == (80, 24, 64)
