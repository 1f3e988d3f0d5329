"""A fresh root on tmpfs holding only read-only binds of what the runtime needs.

Layout inside the jail:
    /usr/bin /usr/lib ... read-only overlays of the host's (see build_root)
    /opt/python           the interpreter's own prefix, when it is not a system one (pyenv)
    /opt/sandboxd         the in-worker bootstraps, read-only
    /work /tmp /dev/shm   one size-capped tmpfs ("scratch"), owned by the sandbox user
    /dev                  null, zero, random, urandom (nodes of its own), fd symlinks
    /proc                 a fresh proc of the worker's own PID namespace
    /etc                  passwd, group, hosts, ... written for the jail
No /sys, no host path (not even in /proc/self/mountinfo). The root is remounted read-only.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence

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


# Inside a root while it is built: s/N the stage bind of layer N, p/N its patch layer, e an empty
# lower layer (overlay needs two lower layers when it has no upper one), r the new root of a
# Python template's child (see build_root).
STAGE = "/.sandboxd"


def build_root(
    layers: Sequence[Bind],
    masked_dirs: Iterable[str],
    symlinks: Mapping[str, str],
    etc_files: Mapping[str, str],
    patches: Mapping[int, Mapping[str, bytes]],
    become: Callable[[], None] | None = None,
    mount_proc: bool = False,
    stage: str = "detach",
) -> None:
    """Build the jail's read-only filesystem and pivot into it (see mount_private for the rest).

    Every directory layer is mounted as an overlay of its own (read-only, no upper layer) at its
    jail path, never as a bind of the host directory: a bind's entry in /proc/self/mountinfo
    names the host path of its source, and its files are the host's own inodes, whose locks
    (flock) every execution shares. An overlay's files are inodes of that overlay instance: a
    lock taken in one worker is invisible to every other worker and to the host, and mountinfo
    shows the overlay's own root. The host directory is first bound at STAGE/s/N (the overlay's
    lower layer, with `patches[N]` above it: files such as an interpreter whose RUNPATH was
    relocated, jail/elf_runpath.py); the overlay keeps a private clone of that bind, so the
    stage bind is then detached. /dev is a tmpfs of the worker's own with device nodes made
    there (root mode), /etc a set of files written for the jail; nothing else of the host.

    `stage`:
      "detach"     the stage binds are detached once the overlays exist (a worker).
      "keep"       they stay at STAGE/s/N (the Python template: its children overlay them).
      "inherited"  the process is a child of the Python template, in its mount namespace: the
                   stage binds, the patch layers and the empty layer are the template's own;
                   a new root is built at STAGE/r with fresh overlays of them, and the
                   template's tree is detached after the pivot.

    Root mode: runs as real root in a fresh mount namespace that belongs to the host's user
    namespace, before the process enters its own user namespace: the mounts are then locked for
    the program (it holds no capability over that mount namespace, even as root of its own user
    namespace), and host paths such as a pyenv prefix under /root (0700) can be bound.
    Subuid mode: runs in the worker's own user namespace (full capabilities there, none over
    host files): the sources are opened first with the daemon user's file access, then
    `become()` switches to the mapped sandbox ids (files the jail creates need an owner the
    namespace knows), and with `mount_proc` the fresh /proc is mounted before the old root is
    detached (after it, the kernel refuses proc in a user namespace: EPERM); device nodes cannot
    be made there, so /dev holds binds of the host's four."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    inherited = stage == "inherited"
    # Every source is opened before the new root is mounted over NEW_ROOT, which may hide
    # some of them (a checkout under /tmp); the binds then go through /proc/self/fd.
    sources: dict[int, int] = {}
    if not inherited:
        for index, layer in enumerate(layers):
            if os.path.realpath(layer.path) == "/":
                raise ValueError("refusing to bind the host's root into the jail")
            if os.path.lexists(layer.path):
                sources[index] = os.open(os.path.realpath(layer.path), os.O_PATH | os.O_CLOEXEC)
    if become is not None:
        become()
    root = f"{STAGE}/r" if inherited else NEW_ROOT
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    os.chdir(root)
    # Overlay options name their lower layers as given: relative to the root being built, or
    # (inherited) the template's own STAGE paths. No host path appears in either.
    layer_root = STAGE if inherited else STAGE.lstrip("/")
    empty = f"{layer_root}/e"
    if not inherited:
        os.makedirs(empty)
    for index, layer in enumerate(layers):
        if not inherited and index not in sources:
            continue  # an optional source that does not exist on this host
        target = _jail_path(root, layer.jail_path)
        staged = f"{layer_root}/s/{index}"
        if not inherited:
            _make_mount_point(staged, layer.is_dir)
            bind_readonly(f"/proc/self/fd/{sources.pop(index)}", staged, layer.is_dir)
        if not layer.is_dir:
            bind_readonly(staged if not inherited else layer.jail_path, target, is_dir=False)
            continue
        # The uppermost lower layer gives the overlay's root directory its owner and mode: a
        # directory of the root tmpfs (0755, root), never the host's own (a 0700 temp dir, say,
        # would keep the sandbox user out). It is the patch layer, or the empty one.
        patch = f"{layer_root}/p/{index}"
        if index in patches and not inherited:
            _write_patch(patch, patches[index])
        lower = [patch if index in patches else empty, staged]
        os.makedirs(target, exist_ok=True)
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV
        mount("overlay", target, "overlay", flags, "lowerdir=" + ":".join(lower))
    for path in masked_dirs:
        mask_dir(_jail_path(root, path))
    for link, target in symlinks.items():
        os.symlink(target, _jail_path(root, link))
    _make_dev(root, make_nodes=become is None)
    _make_etc(root, etc_files)
    for mount_point in ("/proc", WORK_DIR, "/tmp", "/dev/shm", SCRATCH):
        os.makedirs(_jail_path(root, mount_point), exist_ok=True)
    if mount_proc:
        mount_fresh_proc(_jail_path(root, "/proc"))
    if stage == "keep":
        os.makedirs(f"{layer_root}/r")  # where each child builds its own root
    if stage == "detach":
        for index in range(len(layers)):
            staged = f"{STAGE.lstrip('/')}/s/{index}"
            if os.path.ismount(staged):
                umount(staged, MNT_DETACH)

    old = _jail_path(root, "/.old-root")
    os.mkdir(old)
    check(libc.syscall(SYS_pivot_root, root.encode(), old.encode()), "pivot_root")
    os.chdir("/")
    umount("/.old-root", MNT_DETACH)
    os.rmdir("/.old-root")
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _make_mount_point(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w"):
            pass


def _write_patch(patch: str, files: Mapping[str, bytes]) -> None:
    """A lower layer holding replacement files (relative paths), above the host directory."""
    for rel, data in files.items():
        path = os.path.join(patch, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755)


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


def _make_dev(root: str, make_nodes: bool) -> None:
    """/dev: a small tmpfs of this worker's own holding the four device nodes (made here as
    real root, so no other worker or host process shares their inodes), or (subuid mode, where
    no node can be made) binds of the host's."""
    dev = _jail_path(root, "/dev")
    os.makedirs(dev, exist_ok=True)
    if make_nodes:
        mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
        for name in DEVICES:
            st = os.stat(f"/dev/{name}")
            os.mknod(f"{dev}/{name}", 0o666 | stat.S_IFCHR, st.st_rdev)
            os.chmod(f"{dev}/{name}", 0o666)
    else:
        for name in DEVICES:
            bind_readonly_dev(f"/dev/{name}", f"{dev}/{name}")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(f"{dev}/shm", exist_ok=True)
    if make_nodes:
        mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


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
