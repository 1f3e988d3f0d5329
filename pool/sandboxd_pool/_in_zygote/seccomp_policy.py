"""The seccomp policy for workers, compiled once (in the zygote) to raw classic BPF.

Default ALLOW with a deny list (docs/architecture.md, the jail; a per-runtime allowlist is the goal). Three
outcomes for a denied call:

* NOTIFY: the worker blocks in the call and the supervisor holding the listener fd (see
  `jail/seccomp.py`) learns the syscall number from the kernel, names it with
  `SeccompProgram.notify_names`, records it as `blocked_syscall` and kills the sandbox.
  Calls no ordinary program makes: ptrace, mount, namespaces, kernel modules, keys, ...
* ERRNO(ENOSYS): calls runtimes probe and fall back from — clone3 (EPERM makes Node
  abort; ENOSYS makes glibc fall back to clone, whose flags the filter can inspect) and
  io_uring.
* ERRNO(EAFNOSUPPORT): socket/socketpair outside AF_UNIX/AF_INET/AF_INET6; glibc and Node
  probe netlink, so this fails softly.
* ERRNO(EPERM): changing RLIMIT_CORE (it must stay 1: see jail/rlimits.py).

Any other architecture (i386 `int 0x80`, x32) kills the process.

Argument checks compare only what the kernel reads: `clone` flags, `socket` domain and
`personality` are (unsigned) 32-bit to the kernel, so garbage in the upper half of a
register can neither dodge a check nor turn an allowed value into a different one.

Uses the system `seccomp` module (libseccomp's bindings) when importable, else
`pyseccomp` (same API over ctypes). Imported lazily: only the zygote compiles.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "ALLOWED_SOCKET_DOMAINS",
    "CLONE_NAMESPACE_FLAGS",
    "ENOSYS_SYSCALLS",
    "NOTIFY_SYSCALLS",
    "RUNTIMES",
    "SeccompProgram",
    "build_program",
]

RUNTIMES = ("python", "javascript")

# Always notified (the supervisor names the call and kills the sandbox).
NOTIFY_SYSCALLS: tuple[str, ...] = (
    # other processes' memory and handles
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "process_madvise",
    # filesystems and namespaces
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "open_by_handle_at", "name_to_handle_at",
    # kernel attack surface
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "lookup_dcookie", "uselib",
    # the machine itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "acct", "swapon", "swapoff", "reboot", "syslog", "iopl", "ioperm", "quotactl",
    "vhangup", "clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
    "sethostname", "setdomainname",
    # x86 segment descriptors: no runtime here needs them (container runtimes deny it too)
    "modify_ldt",
)  # fmt: skip

# Fail with ENOSYS: runtimes probe these and fall back.
ENOSYS_SYSCALLS: tuple[str, ...] = (
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # File watches: the read-only files of the jail are the host's own inodes, shared with
    # every other worker and the host, so a watch would report their file activity (another
    # tenant's imports, host commands). Libraries that watch files fall back to polling.
    "inotify_init",
    "inotify_init1",
    "fanotify_init",
)

# Without a memory cgroup (the rlimit fallback), RLIMIT_DATA bounds private memory only. These
# would hold memory it does not count, so they are refused there (with a cgroup, every one of
# them is charged to the worker's cgroup and allowed):
#   memfd_create, SysV shmget and msgget   ENOSYS (POSIX shared memory in /dev/shm is a file of
#                                          the size-capped scratch tmpfs, and still works)
#   mmap(MAP_SHARED | MAP_ANONYMOUS)       ENOMEM (shared memory that no file backs)
#   setsockopt(SOL_SOCKET, SO_{SND,RCV}BUF[FORCE])  EPERM (a socket keeps its default buffers)
NO_MEMORY_CGROUP_ENOSYS: tuple[str, ...] = ("memfd_create", "shmget", "msgget")
MAP_SHARED, MAP_ANONYMOUS = 0x01, 0x20
SOL_SOCKET = 1
SOCKET_BUFFER_OPTIONS = (7, 8, 32, 33)  # SO_SNDBUF, SO_RCVBUF, SO_SNDBUFFORCE, SO_RCVBUFFORCE

# RLIMIT_CORE (resource 4) must stay at 1 (jail/rlimits.py): setrlimit(RLIMIT_CORE, ...) and
# prlimit64(pid, RLIMIT_CORE, new != NULL, ...) fail with EPERM; reading it still works.
RLIMIT_CORE = 4

# socket(2)/socketpair(2) domains that pass; every other one fails with EAFNOSUPPORT.
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
ALLOWED_SOCKET_DOMAINS = frozenset({AF_UNIX, AF_INET, AF_INET6})

# clone(2) flags (arg 0 on x86_64) that create namespaces: any one of them is notified.
# CLONE_NEWTIME (0x80) lies inside CSIGNAL (the exit-signal byte) for clone(2) — the kernel
# only honours it through clone3/unshare — and no valid signal number has bit 7, so
# checking it costs ordinary callers nothing.
CLONE_NAMESPACE_FLAGS: Mapping[str, int] = MappingProxyType(
    {
        "CLONE_NEWTIME": 0x00000080,
        "CLONE_NEWNS": 0x00020000,
        "CLONE_NEWCGROUP": 0x02000000,
        "CLONE_NEWUTS": 0x04000000,
        "CLONE_NEWIPC": 0x08000000,
        "CLONE_NEWUSER": 0x10000000,
        "CLONE_NEWPID": 0x20000000,
        "CLONE_NEWNET": 0x40000000,
    }
)

# personality(2): the kernel reads an unsigned int; 0xffffffff only queries, 0 is
# PER_LINUX (what every process already has). Anything else (ADDR_NO_RANDOMIZE,
# READ_IMPLIES_EXEC, ...) is notified. Neither Python nor Node calls it at start.
PERSONALITY_ALLOWED = frozenset({0x00000000, 0xFFFFFFFF})

_Action = Literal["notify", "enosys", "eafnosupport", "eperm", "enomem"]
_Op = Literal["EQ", "NE", "GT", "MASKED_EQ"]


@dataclass(frozen=True)
class _Cmp:
    """One argument comparison, libseccomp style: MASKED_EQ is `(arg & a) == b`."""

    arg: int
    op: _Op
    a: int
    b: int = 0


@dataclass(frozen=True)
class _Rule:
    action: _Action
    syscall: str
    cmps: tuple[_Cmp, ...] = ()


@dataclass(frozen=True)
class SeccompProgram:
    """A compiled filter: `bpf` for `jail.seccomp.load_filter`, and the name of every
    syscall number that the filter sends to the supervisor (native arch, x86_64)."""

    bpf: bytes
    notify_names: Mapping[int, str]


def _personality_rules() -> list[_Rule]:
    # NOTIFY iff the low 32 bits are neither all zeros nor all ones, i.e. they contain
    # both a 0 and a 1 bit. Going round the 32 bits as a circle, such a value has some
    # position j whose bit is 0 while bit j+1 is 1; one MASKED_EQ per j covers exactly
    # that set (libseccomp allows one comparison per argument per rule, so no ranges).
    rules = []
    for j in range(32):
        k = (j + 1) % 32
        mask = (1 << j) | (1 << k)
        rules.append(_Rule("notify", "personality", (_Cmp(0, "MASKED_EQ", mask, 1 << k),)))
    return rules


def _socket_rules(syscall: str) -> list[_Rule]:
    # The domain is an int to the kernel, but comparing all 64 bits is safe: a value
    # passes only if it is exactly 1, 2 or 10; anything with upper bits set is > 10.
    top = max(ALLOWED_SOCKET_DOMAINS)
    denied = [d for d in range(top) if d not in ALLOWED_SOCKET_DOMAINS]
    rules = [_Rule("eafnosupport", syscall, (_Cmp(0, "EQ", d),)) for d in denied]
    rules.append(_Rule("eafnosupport", syscall, (_Cmp(0, "GT", top),)))
    return rules


def _rules(runtime: str, memory_cgroup: bool = True) -> list[_Rule]:
    """The policy as data. `runtime` exists so policies can diverge; today they do not."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    rules = [_Rule("notify", name) for name in NOTIFY_SYSCALLS]
    rules += [
        _Rule("notify", "clone", (_Cmp(0, "MASKED_EQ", flag, flag),))
        for flag in CLONE_NAMESPACE_FLAGS.values()
    ]
    rules += _personality_rules()
    rules += [_Rule("enosys", name) for name in ENOSYS_SYSCALLS]
    rules += _socket_rules("socket") + _socket_rules("socketpair")
    rules.append(_Rule("eperm", "setrlimit", (_Cmp(0, "EQ", RLIMIT_CORE),)))
    rules.append(_Rule("eperm", "prlimit64", (_Cmp(1, "EQ", RLIMIT_CORE), _Cmp(2, "NE", 0))))
    if not memory_cgroup:
        rules += [_Rule("enosys", name) for name in NO_MEMORY_CGROUP_ENOSYS]
        shared_anonymous = MAP_SHARED | MAP_ANONYMOUS
        rules.append(
            _Rule("enomem", "mmap", (_Cmp(3, "MASKED_EQ", shared_anonymous, shared_anonymous),))
        )
        rules += [
            _Rule("eperm", "setsockopt", (_Cmp(1, "EQ", SOL_SOCKET), _Cmp(2, "EQ", option)))
            for option in SOCKET_BUFFER_OPTIONS
        ]
    return rules


def _bindings() -> Any:
    try:
        return importlib.import_module("seccomp")
    except ImportError:
        return importlib.import_module("pyseccomp")


def _syscall_number(sc: Any, name: str) -> int:
    nr = int(sc.resolve_syscall(sc.Arch.NATIVE, name))
    if nr < 0:
        raise ValueError(f"libseccomp does not know syscall {name!r} on this architecture")
    return nr


def _syscall_name(sc: Any, nr: int) -> str:
    name = sc.resolve_syscall(sc.Arch.NATIVE, nr)
    return name.decode() if isinstance(name, bytes) else str(name)


def _export_bpf(filt: Any) -> bytes:
    fd = os.memfd_create("sandboxd-seccomp-bpf", os.MFD_CLOEXEC)
    with open(fd, "w+b", buffering=0) as file:
        filt.export_bpf(file)
        file.seek(0)
        return file.read()


@functools.cache
def build_program(runtime: str, memory_cgroup: bool = True) -> SeccompProgram:
    """Compile the worker filter for `runtime` ("python" or "javascript"); without
    `memory_cgroup` (the rlimit fallback) with the rules for memory that rlimits do not count."""
    sc = _bindings()
    actions = {
        "notify": sc.NOTIFY,
        "enosys": sc.ERRNO(errno.ENOSYS),
        "eafnosupport": sc.ERRNO(errno.EAFNOSUPPORT),
        "eperm": sc.ERRNO(errno.EPERM),
        "enomem": sc.ERRNO(errno.ENOMEM),
    }
    ops = {"EQ": sc.EQ, "NE": sc.NE, "GT": sc.GT, "MASKED_EQ": sc.MASKED_EQ}

    filt = sc.SyscallFilter(sc.ALLOW)
    filt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    sysrawrc = getattr(sc.Attr, "API_SYSRAWRC", None)
    if sysrawrc is not None:
        filt.set_attr(sysrawrc, 1)

    notify_names: dict[int, str] = {}
    for rule in _rules(runtime, memory_cgroup):
        nr = _syscall_number(sc, rule.syscall)
        args = [sc.Arg(c.arg, ops[c.op], c.a, c.b) for c in rule.cmps]
        filt.add_rule(actions[rule.action], nr, *args)
        if rule.action == "notify":
            notify_names[nr] = _syscall_name(sc, nr)

    return SeccompProgram(bpf=_export_bpf(filt), notify_names=MappingProxyType(notify_names))
