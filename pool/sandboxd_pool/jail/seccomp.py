"""Install a compiled seccomp filter and supervise its user notifications.

Two sides, one file, because they share the kernel ABI:

* `load_filter` runs in the worker being jailed (a freshly cloned child, just before
  execve). It installs a classic-BPF program with a user-notification listener and
  returns the listener fd, which the caller hands to the supervisor (SCM_RIGHTS) and
  closes before exec: the jailed program must never hold it.
* `receive_notification` / `respond_error` / `notification_id_valid` run in the
  supervisor (the zygote), which never loads the filter and only holds the listener fd.
  They use the raw `SECCOMP_IOCTL_NOTIF_*` ioctls, which work from any process holding the
  fd (libseccomp's helpers insist on the filter having been loaded in-process).

Standard library + ctypes only: this module is imported in the zygote before it forks,
and runs in the child where nothing else may be loaded. All structure layouts are for
x86_64 and were checked against <linux/seccomp.h> and `SECCOMP_GET_NOTIF_SIZES` on the
development kernel (6.18): seccomp_notif 80 bytes, seccomp_notif_resp 24, seccomp_data 64.

The listener fd is readable (POLLIN) when a notification is pending and reports POLLHUP
once no task uses the filter any more, so a supervisor can poll it alongside its pipes.
If the supervisor closes the fd, pending and later notified syscalls fail with ENOSYS.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

__all__ = [
    "AUDIT_ARCH_X86_64",
    "SECCOMP_IOCTL_NOTIF_ID_VALID",
    "SECCOMP_IOCTL_NOTIF_RECV",
    "SECCOMP_IOCTL_NOTIF_SEND",
    "Notification",
    "load_filter",
    "notification_id_valid",
    "receive_notification",
    "respond_error",
]

# --- kernel constants (x86_64) -------------------------------------------------------

SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
PR_SET_NO_NEW_PRIVS = 38
BPF_MAXINSNS = 4096
SOCK_FILTER_SIZE = 8  # struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
AUDIT_ARCH_X86_64 = 0xC000003E

# struct seccomp_notif { u64 id; u32 pid; u32 flags;
#                        struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; } }
_NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp { u64 id; s64 val; s32 error; u32 flags; }
_NOTIF_RESP = struct.Struct("=QqiI")
_U64 = struct.Struct("=Q")
assert _NOTIF.size == 80 and _NOTIF_RESP.size == 24

# asm-generic/ioctl.h: dir(2 bits) << 30 | size(14) << 16 | type(8) << 8 | nr(8)
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, type_: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(type_) << 8) | nr


_SECCOMP_IOC_MAGIC = "!"
SECCOMP_IOCTL_NOTIF_RECV = _ioc(_IOC_READ | _IOC_WRITE, _SECCOMP_IOC_MAGIC, 0, _NOTIF.size)
SECCOMP_IOCTL_NOTIF_SEND = _ioc(_IOC_READ | _IOC_WRITE, _SECCOMP_IOC_MAGIC, 1, _NOTIF_RESP.size)
SECCOMP_IOCTL_NOTIF_ID_VALID = _ioc(_IOC_WRITE, _SECCOMP_IOC_MAGIC, 2, _U64.size)
assert SECCOMP_IOCTL_NOTIF_RECV == 0xC0502100
assert SECCOMP_IOCTL_NOTIF_SEND == 0xC0182101
assert SECCOMP_IOCTL_NOTIF_ID_VALID == 0x40082102

# Errors meaning "the notified task went away (or was interrupted) before we got to it".
_GONE = frozenset({errno.ENOENT, errno.EINTR})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.ioctl.restype = ctypes.c_int


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _ioctl(fd: int, request: int, buffer: ctypes.Array[ctypes.c_char]) -> int:
    """ioctl(fd, request, buffer); 0 on success, else the errno."""
    if _libc.ioctl(ctypes.c_int(fd), ctypes.c_ulong(request), buffer) == 0:
        return 0
    return ctypes.get_errno()


def _last_oserror(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


# --- worker side ---------------------------------------------------------------------


def load_filter(bpf: bytes) -> int:
    """Install `bpf` on the calling thread and return the new user-notification fd.

    `bpf` is a classic-BPF program as written by libseccomp's `export_bpf` (an array of
    8-byte `struct sock_filter`). Sets no_new_privs first (required without
    CAP_SYS_ADMIN, and wanted anyway). Only the calling thread is filtered: call it while
    single-threaded. The returned fd is close-on-exec; pass it to the supervisor and
    close it before exec. Raises OSError (with errno) if the kernel refuses.
    """
    count, remainder = divmod(len(bpf), SOCK_FILTER_SIZE)
    if remainder or not 0 < count <= BPF_MAXINSNS:
        raise ValueError(f"not a BPF program: {len(bpf)} bytes")
    zero = ctypes.c_ulong(0)
    if _libc.prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), zero, zero, zero) != 0:
        raise _last_oserror("prctl(PR_SET_NO_NEW_PRIVS)")
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(count, ctypes.cast(program, ctypes.c_void_p))
    fd = _libc.syscall(
        ctypes.c_long(SYS_SECCOMP),
        ctypes.c_ulong(SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(SECCOMP_FILTER_FLAG_NEW_LISTENER),
        ctypes.byref(fprog),
    )
    if fd < 0:
        raise _last_oserror("seccomp(SECCOMP_SET_MODE_FILTER)")
    return int(fd)


# --- supervisor side -----------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One notified syscall, as the kernel reported it.

    `pid` is the calling *thread's* id, in the supervisor's PID namespace. `nr` is the
    syscall number for `arch` (an AUDIT_ARCH_* value). `args` are the six raw registers.
    Nothing here came from the sandboxed program except the argument values.
    """

    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, int, int, int, int, int]


def receive_notification(listener_fd: int) -> Notification | None:
    """Block until a notification is pending on `listener_fd` and return it.

    Returns None when the notified task died or was interrupted between the wake-up and
    the receive (ENOENT), or when this call was interrupted by a signal (EINTR): the
    caller should simply poll/receive again. Poll the fd first to avoid blocking.
    """
    buffer = ctypes.create_string_buffer(_NOTIF.size)  # zeroed: the kernel insists
    code = _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_RECV, buffer)
    if code:
        if code in _GONE:
            return None
        raise OSError(code, f"SECCOMP_IOCTL_NOTIF_RECV: {os.strerror(code)}")
    notif_id, pid, _flags, nr, arch, _ip, a0, a1, a2, a3, a4, a5 = _NOTIF.unpack(buffer.raw)
    return Notification(id=notif_id, pid=pid, nr=nr, arch=arch, args=(a0, a1, a2, a3, a4, a5))


def respond_error(listener_fd: int, notif_id: int, errno_value: int) -> bool:
    """Make the notified syscall fail with `errno_value` (a positive errno).

    Returns False if the notification is no longer pending (the task died or a signal
    interrupted the call: ENOENT) — not an error for a supervisor about to kill it anyway.
    """
    if errno_value <= 0:
        raise ValueError(f"errno_value must be a positive errno, got {errno_value}")
    response = ctypes.create_string_buffer(_NOTIF_RESP.pack(notif_id, 0, -errno_value, 0))
    code = _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_SEND, response)
    if code:
        if code == errno.ENOENT:
            return False
        raise OSError(code, f"SECCOMP_IOCTL_NOTIF_SEND: {os.strerror(code)}")
    return True


def notification_id_valid(listener_fd: int, notif_id: int) -> bool:
    """Whether `notif_id` is still pending (its task alive and still in the syscall)."""
    value = ctypes.create_string_buffer(_U64.pack(notif_id))
    code = _ioctl(listener_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, value)
    if code:
        if code == errno.ENOENT:
            return False
        raise OSError(code, f"SECCOMP_IOCTL_NOTIF_ID_VALID: {os.strerror(code)}")
    return True
