"""A fresh root on tmpfs holding only read-only binds of what the runtime needs.

Layout inside the jail:
    /usr/bin /usr/lib ... read-only binds of the host (plus the runtime's own prefix)
    /opt/sandboxd         the in-worker bootstraps, read-only
    /work /tmp /dev/shm   one size-capped tmpfs ("scratch"), owned by the sandbox user
    /dev                  null, zero, random, urandom (binds of the host nodes), fd symlinks
    /proc                 a fresh proc of the worker's own PID namespace
    /etc                  passwd, group, hosts, ... written for the jail
No /sys, no other host path. The root itself is remounted read-only at the end.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable, Mapping

from ._libc import SYS_pivot_root, check, libc
from .policy import WORK_DIR, Bind

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

# statvfs f_flag bits that are locked on mounts inherited into a user namespace: a read-only
# remount of a bind must keep them or the kernel refuses it.
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
_ST_LOCKED = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,  # atime flags are locked too (a relatime mount needs nothing)
    os.ST_NODIRATIME: MS_NODIRATIME,
}

NEW_ROOT = "/tmp"  # any existing directory: the new root tmpfs is mounted over it, privately
SCRATCH = "/run/sandbox-scratch"
DEVICES = ("null", "zero", "random", "urandom")
BOOT_MOUNT = "/opt/sandboxd"  # the in-worker bootstraps
JAIL_LIB_MOUNT = "/opt/sandboxd-lib"  # holds jail/ (this package), for the Python template


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype} on {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    check(libc.umount2(target.encode(), flags), f"umount {target}")


def _locked_flags(path: str) -> int:
    st = os.statvfs(path)
    return sum(ms for st_flag, ms in _ST_LOCKED.items() if st.f_flag & st_flag)


def bind_readonly(source: str, target: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _locked_flags(source)
    mount(None, target, None, flags)


def mask_dir(target: str) -> None:
    """Hide a directory behind an empty read-only tmpfs."""
    if os.path.isdir(target):
        mount(
            "tmpfs",
            target,
            "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            "size=4k,mode=0555",
        )


def _jail_path(root: str, path: str) -> str:
    return root + "/" + path.lstrip("/")


def build_root(
    binds: Iterable[Bind],
    extra_binds: Mapping[str, str],
    masked_dirs: Iterable[str],
    symlinks: Mapping[str, str],
    etc_files: Mapping[str, str],
    become: Callable[[], None] | None = None,
    mount_proc: bool = False,
) -> None:
    """Build the jail's read-only filesystem and pivot into it (see mount_private for the rest).

    Root mode: runs as real root in a fresh mount namespace that belongs to the host's user
    namespace, before the process enters its own user namespace: the mounts are then locked for
    the program (it holds no capability over that mount namespace, even as root of its own user
    namespace), and host paths such as a pyenv prefix under /root (0700) can be bound.
    Subuid mode: runs in the worker's own user namespace (full capabilities there, none over
    host files): the sources are opened first with the daemon user's file access, then
    `become()` switches to the mapped sandbox ids (files the jail creates need an owner the
    namespace knows), and with `mount_proc` the fresh /proc is mounted before the old root is
    detached (after it, the kernel refuses proc in a user namespace: EPERM).
    `extra_binds` maps jail paths to host directories (the bootstraps)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Every source is opened before the new root is mounted over NEW_ROOT, which may hide
    # some of them (a checkout under /tmp); the binds then go through /proc/self/fd.
    sources: list[tuple[int, str, bool]] = []
    for bind in binds:
        if os.path.realpath(bind.path) == "/":
            raise ValueError("refusing to bind the host's root into the jail")
        if os.path.lexists(bind.path):
            fd = os.open(os.path.realpath(bind.path), os.O_PATH | os.O_CLOEXEC)
            sources.append((fd, bind.path, bind.is_dir))
    for jail_path, host_path in extra_binds.items():
        sources.append((os.open(host_path, os.O_PATH | os.O_CLOEXEC), jail_path, True))
    if become is not None:
        become()
    root = NEW_ROOT
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for fd, jail_path, is_dir in sources:
        bind_readonly(f"/proc/self/fd/{fd}", _jail_path(root, jail_path), is_dir)
        os.close(fd)
    for path in masked_dirs:
        mask_dir(_jail_path(root, path))
    for link, target in symlinks.items():
        os.symlink(target, _jail_path(root, link))
    _make_dev(root)
    _make_etc(root, etc_files)
    for mount_point in ("/proc", WORK_DIR, "/tmp", "/dev/shm", SCRATCH):
        os.makedirs(_jail_path(root, mount_point), exist_ok=True)
    if mount_proc:
        mount_fresh_proc(_jail_path(root, "/proc"))

    old = _jail_path(root, "/.old-root")
    os.mkdir(old)
    check(libc.syscall(SYS_pivot_root, root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    umount("/.old-root", MNT_DETACH)
    os.rmdir("/.old-root")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_private(scratch_bytes: int, owner_uid: int, proc: bool = True) -> None:
    """The worker's own mounts, over the mount points of the read-only root: its scratch tmpfs
    and (root mode) a fresh /proc of its PID namespace. Root mode: run as real root in the
    worker's own mount and PID namespaces (in a user namespace, a new proc could not be mounted
    after pivot_root; subuid mode mounts it in build_root instead)."""
    _make_scratch(scratch_bytes, owner_uid)
    if proc:
        mount_fresh_proc("/proc")
    os.chdir(WORK_DIR)


def mount_fresh_proc(target: str) -> None:
    """A proc of the calling process's PID namespace (the worker's: it is its PID 1)."""
    mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _make_scratch(scratch_bytes: int, owner_uid: int) -> None:
    """One tmpfs behind /work, /tmp and /dev/shm so a single size cap bounds all three."""
    mount(
        "tmpfs",
        SCRATCH,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={max(scratch_bytes, 4096)},mode=0755",
    )
    for name, jail_path in (("work", WORK_DIR), ("tmp", "/tmp"), ("shm", "/dev/shm")):
        src = f"{SCRATCH}/{name}"
        os.mkdir(src)
        os.chown(src, owner_uid, owner_uid)  # the host uid the sandbox user maps to
        os.chmod(src, 0o700 if name == "work" else 0o1777)
        mount(src, jail_path, None, MS_BIND)
    umount(SCRATCH, MNT_DETACH)


def _make_dev(root: str) -> None:
    dev = _jail_path(root, "/dev")
    os.makedirs(dev, exist_ok=True)
    for name in DEVICES:
        bind_readonly_dev(f"/dev/{name}", f"{dev}/{name}")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")


def bind_readonly_dev(source: str, target: str) -> None:
    """Device nodes cannot be created in a user namespace; bind the host's instead."""
    with open(target, "w"):
        pass
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC | _locked_flags(source))


def _make_etc(root: str, etc_files: Mapping[str, str]) -> None:
    etc = _jail_path(root, "/etc")
    os.makedirs(etc, exist_ok=True)
    for name, content in etc_files.items():
        path = f"{etc}/{name}"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content.startswith("symlink:"):
            os.symlink(content.removeprefix("symlink:"), path)
        else:
            with open(path, "w") as f:
                f.write(content)


FSPICK_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_RECONFIGURE = 7


def pick_scratch() -> int:
    """Subuid mode, in the worker before it drops its capabilities: an fs context of its own
    scratch tmpfs, handed to the pool (never kept). fspick needs CAP_SYS_ADMIN over the caller's
    mount namespace, which a non-root pool lacks; the reconfigure only needs it over the
    tmpfs's user namespace, which the pool's user owns (it created that namespace)."""
    from ._libc import SYS_fspick

    return check(libc.syscall(SYS_fspick, -100, WORK_DIR.encode(), FSPICK_CLOEXEC), "fspick")


def resize_scratch(pid: int, size_bytes: int, picked: int = -1) -> None:
    """Set the size cap of a running worker's scratch tmpfs (/work, /tmp, /dev/shm), from outside.

    Root mode: fspick(2) on the worker's /work through /proc/PID/root, then reconfigure: no
    namespace is entered, so this is safe from a multi-threaded process. Subuid mode: `picked`
    is the fs context the worker made (pick_scratch); it is used once and left open."""
    from ._libc import SYS_fsconfig, SYS_fspick

    fd = picked
    if fd < 0:
        fd = check(
            libc.syscall(SYS_fspick, -100, f"/proc/{pid}/root{WORK_DIR}".encode(), FSPICK_CLOEXEC),
            "fspick",
        )
    try:
        check(
            libc.syscall(
                SYS_fsconfig, fd, FSCONFIG_SET_STRING, b"size", str(size_bytes).encode(), 0
            ),
            "fsconfig size",
        )
        check(
            libc.syscall(SYS_fsconfig, fd, FSCONFIG_CMD_RECONFIGURE, None, None, 0), "reconfigure"
        )
    finally:
        if picked < 0:
            os.close(fd)
