"""The worker seccomp policy, checked without loading it: names, compilation, and the
compiled BPF run through a small classic-BPF interpreter against crafted seccomp_data."""

from __future__ import annotations

import errno
import random
import struct

import pytest

from sandboxd_pool._in_zygote import seccomp_policy
from sandboxd_pool._in_zygote.seccomp_policy import (
    CLONE_NAMESPACE_FLAGS,
    ENOSYS_SYSCALLS,
    NOTIFY_SYSCALLS,
    SeccompProgram,
    build_program,
)
from sandboxd_pool.jail import seccomp as jail_seccomp

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

RET_KILL_PROCESS = 0x80000000
RET_NOTIFY = 0x7FC00000
RET_ALLOW = 0x7FFF0000


def RET_ERRNO(code: int) -> int:  # mirrors SECCOMP_RET_ERRNO(code)
    return 0x00050000 | code


# x86_64 syscall numbers used below (asm/unistd_64.h)
NR = {
    "read": 0,
    "getpid": 39,
    "socket": 41,
    "socketpair": 53,
    "clone": 56,
    "fork": 57,
    "ptrace": 101,
    "personality": 135,
    "setrlimit": 160,
    "modify_ldt": 154,
    "inotify_init": 253,
    "unshare": 272,
    "inotify_init1": 294,
    "fanotify_init": 300,
    "prlimit64": 302,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "clone3": 435,
}

# What glibc 2.36 fork() and pthread_create() (after clone3 -> ENOSYS) pass to clone.
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
THREAD_FLAGS = 0x003D0F00  # VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
VFORK_FLAGS = 0x00004111  # CLONE_VM | CLONE_VFORK | SIGCHLD (posix_spawn)


def run_bpf(bpf: bytes, nr: int, args: tuple[int, ...] = (), arch: int = AUDIT_ARCH_X86_64) -> int:
    """Interpret the classic-BPF subset libseccomp emits over one seccomp_data."""
    regs = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0x401000, *regs)
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack_from("<HBBI", bpf, off) for off in range(0, len(bpf), 8)
    ]
    a = x = 0
    mem = [0] * 16
    pc = 0
    for _ in range(len(insns) + 1):  # classic BPF only jumps forward
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            (a,) = struct.unpack_from("<I", data, k)
        elif code == 0x00:  # ld #k
            a = k
        elif code == 0x60:  # ld M[k]
            a = mem[k]
        elif code == 0x61:  # ldx M[k]
            x = mem[k]
        elif code == 0x02:  # st M[k]
            mem[k] = a
        elif code == 0x03:  # stx M[k]
            mem[k] = x
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x07:  # tax
            x = a
        elif code == 0x87:  # txa
            a = x
        elif code == 0x05:  # ja k
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq/jgt/jge/jset #k
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"BPF opcode {code:#x} not understood by this interpreter")
    raise AssertionError("BPF program did not return")


@pytest.fixture(scope="module", params=seccomp_policy.RUNTIMES)
def program(request: pytest.FixtureRequest) -> SeccompProgram:
    return build_program(request.param)


def test_bpf_is_whole_instructions_within_kernel_limit(program: SeccompProgram) -> None:
    assert len(program.bpf) % 8 == 0
    assert 0 < len(program.bpf) // 8 <= jail_seccomp.BPF_MAXINSNS


def test_notify_names_cover_exactly_the_notified_syscalls(program: SeccompProgram) -> None:
    expected = set(NOTIFY_SYSCALLS) | {"clone", "personality"}
    assert set(program.notify_names.values()) == expected
    assert len(program.notify_names) == len(expected)
    assert program.notify_names[NR["ptrace"]] == "ptrace"
    assert program.notify_names[NR["unshare"]] == "unshare"
    assert program.notify_names[NR["clone"]] == "clone"
    for nr, name in program.notify_names.items():
        if name not in ("clone", "personality"):  # these two depend on arguments
            assert run_bpf(program.bpf, nr, (0x7FFF0000,) * 6) == RET_NOTIFY, name


def test_notify_names_is_read_only(program: SeccompProgram) -> None:
    with pytest.raises(TypeError):
        program.notify_names[0] = "read"  # type: ignore[index]


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        build_program("ruby")


def test_program_is_compiled_once() -> None:
    assert build_program("python") is build_program("python")


def test_ordinary_syscalls_are_allowed(program: SeccompProgram) -> None:
    for name in ("read", "getpid", "fork"):
        assert run_bpf(program.bpf, NR[name]) == RET_ALLOW


def test_enosys_syscalls(program: SeccompProgram) -> None:
    assert ENOSYS_SYSCALLS == (
        "clone3",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "inotify_init",
        "inotify_init1",
        "fanotify_init",
    )
    for name in ENOSYS_SYSCALLS:
        assert run_bpf(program.bpf, NR[name]) == RET_ERRNO(errno.ENOSYS), name


def test_rlimit_core_cannot_be_changed(program: SeccompProgram) -> None:
    core, nofile = 4, 7
    assert run_bpf(program.bpf, NR["setrlimit"], (core, 0x1000)) == RET_ERRNO(errno.EPERM)
    assert run_bpf(program.bpf, NR["setrlimit"], (nofile, 0x1000)) == RET_ALLOW
    # prlimit64(pid, resource, new, old): a change of RLIMIT_CORE is refused, a read is not.
    assert run_bpf(program.bpf, NR["prlimit64"], (0, core, 0x1000, 0)) == RET_ERRNO(errno.EPERM)
    assert run_bpf(program.bpf, NR["prlimit64"], (0, core, 0, 0x1000)) == RET_ALLOW
    assert run_bpf(program.bpf, NR["prlimit64"], (0, nofile, 0x1000, 0)) == RET_ALLOW


def test_modify_ldt_is_notified(program: SeccompProgram) -> None:
    assert run_bpf(program.bpf, NR["modify_ldt"], (1, 0x1000, 16)) == RET_NOTIFY


@pytest.mark.parametrize("flags", [FORK_FLAGS, THREAD_FLAGS, VFORK_FLAGS, 0x11, 0])
def test_clone_for_fork_and_threads_is_allowed(program: SeccompProgram, flags: int) -> None:
    assert run_bpf(program.bpf, NR["clone"], (flags, 0, 0, 0, 0)) == RET_ALLOW


@pytest.mark.parametrize("name", sorted(CLONE_NAMESPACE_FLAGS))
def test_clone_with_a_namespace_flag_is_notified(program: SeccompProgram, name: str) -> None:
    flag = CLONE_NAMESPACE_FLAGS[name]
    assert run_bpf(program.bpf, NR["clone"], (flag | 0x11,)) == RET_NOTIFY
    assert run_bpf(program.bpf, NR["clone"], (flag | FORK_FLAGS,)) == RET_NOTIFY
    # garbage in the upper half (the kernel ignores it) does not hide the flag
    assert run_bpf(program.bpf, NR["clone"], (0xFFFF_0000_0000_0000 | flag | 0x11,)) == RET_NOTIFY


@pytest.mark.parametrize("name", ["socket", "socketpair"])
def test_socket_domains(program: SeccompProgram, name: str) -> None:
    for domain in (1, 2, 10):  # AF_UNIX, AF_INET, AF_INET6
        assert run_bpf(program.bpf, NR[name], (domain, 1, 0)) == RET_ALLOW
    for domain in (0, 3, 4, 9, 11, 16, 17, 38, 44, 45, 0xFFFFFFFF, 1 << 32 | 1, 1 << 63 | 2):
        assert run_bpf(program.bpf, NR[name], (domain, 1, 0)) == RET_ERRNO(errno.EAFNOSUPPORT)


def test_personality_query_and_per_linux_are_allowed(program: SeccompProgram) -> None:
    # 0xffffffff queries; 0 is PER_LINUX. The kernel reads 32 bits, so -1 is a query too.
    for value in (0, 0xFFFFFFFF, 0xFFFF_FFFF_FFFF_FFFF, 1 << 32):
        assert run_bpf(program.bpf, NR["personality"], (value,)) == RET_ALLOW


def test_personality_changes_are_notified(program: SeccompProgram) -> None:
    samples = [1, 8, 0x40000, 0x0400000, 0x80000000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFF_FFFF_0004_0000]
    rng = random.Random(1234)
    samples += [rng.getrandbits(64) for _ in range(300)]
    samples += [1 << i for i in range(32)] + [0xFFFFFFFF ^ (1 << i) for i in range(32)]
    for value in samples:
        low = value & 0xFFFFFFFF
        expected = RET_ALLOW if low in (0, 0xFFFFFFFF) else RET_NOTIFY
        assert run_bpf(program.bpf, NR["personality"], (value,)) == expected, hex(value)


def test_other_architectures_are_killed(program: SeccompProgram) -> None:
    assert run_bpf(program.bpf, 20, arch=AUDIT_ARCH_I386) == RET_KILL_PROCESS
    assert run_bpf(program.bpf, X32_SYSCALL_BIT | NR["getpid"]) == RET_KILL_PROCESS
    assert run_bpf(program.bpf, X32_SYSCALL_BIT | NR["ptrace"]) == RET_KILL_PROCESS


def test_ioctl_numbers_match_linux_headers() -> None:
    assert jail_seccomp.SECCOMP_IOCTL_NOTIF_RECV == 0xC0502100
    assert jail_seccomp.SECCOMP_IOCTL_NOTIF_SEND == 0xC0182101
    assert jail_seccomp.SECCOMP_IOCTL_NOTIF_ID_VALID == 0x40082102


@pytest.mark.parametrize("bpf", [b"", b"\x06\x00\x00\x00\x00\x00\xff", b"\0" * 8 * 4097])
def test_load_filter_refuses_what_is_not_a_program(bpf: bytes) -> None:
    # Refused before any syscall, so this is safe to run in the test process itself.
    with pytest.raises(ValueError, match="not a BPF program"):
        jail_seccomp.load_filter(bpf)


def test_without_a_memory_cgroup_uncounted_memory_is_refused() -> None:
    fallback = build_program("python", memory_cgroup=False)
    normal = build_program("python")
    memfd, shmget, msgget, mmap, setsockopt = 319, 29, 68, 9, 54
    for nr in (memfd, shmget, msgget):
        assert run_bpf(fallback.bpf, nr) == RET_ERRNO(errno.ENOSYS), nr
        assert run_bpf(normal.bpf, nr) == RET_ALLOW, nr
    shared_anon, private_anon, shared_file = 0x21, 0x22, 0x01
    assert run_bpf(fallback.bpf, mmap, (0, 4096, 3, shared_anon)) == RET_ERRNO(errno.ENOMEM)
    assert run_bpf(fallback.bpf, mmap, (0, 4096, 3, 0x23)) == RET_ERRNO(errno.ENOMEM)
    assert run_bpf(fallback.bpf, mmap, (0, 4096, 3, private_anon)) == RET_ALLOW
    assert run_bpf(fallback.bpf, mmap, (0, 4096, 3, shared_file)) == RET_ALLOW
    assert run_bpf(normal.bpf, mmap, (0, 4096, 3, shared_anon)) == RET_ALLOW
    for option in (7, 8, 32, 33):
        assert run_bpf(fallback.bpf, setsockopt, (3, 1, option)) == RET_ERRNO(errno.EPERM)
        assert run_bpf(normal.bpf, setsockopt, (3, 1, option)) == RET_ALLOW
    assert run_bpf(fallback.bpf, setsockopt, (3, 1, 2)) == RET_ALLOW  # SO_REUSEADDR
    assert run_bpf(fallback.bpf, setsockopt, (3, 6, 7)) == RET_ALLOW  # another level
