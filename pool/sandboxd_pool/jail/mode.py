"""Which jail mode the engine runs in, decided once at pool start.

    root    the zygote holds CAP_SYS_ADMIN and CAP_SETUID in the initial user namespace (host
            root): the child unshares mount/net/IPC/UTS/cgroup as real root, builds its root,
            creates its user namespace last, and the zygote writes the one-uid map itself
            (`uid_base + slot`).
    subuid  anyone else (a non-root daemon, root in a container without CAP_SYS_ADMIN): the
            zygote clones the child with CLONE_NEWUSER | CLONE_NEWPID and maps its one inside
            uid/gid to a subordinate id of the daemon's user (`subid start + slot`) with the
            setuid helpers newuidmap/newgidmap (Debian package `uidmap`), ranges from
            /etc/subuid and /etc/subgid. The child then holds every capability inside its own
            user namespace and builds the rest of the jail there.

PoolConfig.jail_mode: "auto" (default: root if privileged, else subuid), "root" or "subuid".
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from ..errors import JailModeError

CAP_SETUID = 7
CAP_SYS_ADMIN = 21
NEWUIDMAP = "/usr/bin/newuidmap"
NEWGIDMAP = "/usr/bin/newgidmap"
SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
UID_MAP_FILE = "/proc/self/uid_map"
GID_MAP_FILE = "/proc/self/gid_map"
MODES = ("auto", "root", "subuid")
MAX_SLOTS = 4096  # never more uid slots than this, whatever the range


@dataclass(frozen=True)
class JailMode:
    mode: str  # "root" | "subuid"
    why: str  # how it was chosen, for the startup log
    uid_base: int  # outside uid of slot 0
    gid_base: int  # outside gid of slot 0
    slots: int  # worker slots, each with its own outside uid/gid


@dataclass(frozen=True)
class SubidRange:
    start: int
    count: int


def privileged(status_path: str = "/proc/self/status", uid_map: str = "/proc/self/uid_map") -> str:
    """'' if this process holds CAP_SYS_ADMIN and CAP_SETUID in the initial user namespace,
    else why not."""
    try:
        with open(uid_map) as f:
            initial = f.read().split() == ["0", "0", "4294967295"]
        with open(status_path) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        effective = int(fields["CapEff"].strip(), 16)
    except (OSError, KeyError, ValueError) as e:
        return f"cannot read capabilities ({e})"
    missing = [
        name
        for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_SETUID, "CAP_SETUID"))
        if not effective >> bit & 1
    ]
    if not initial:
        return "not in the initial user namespace"
    if missing:
        return f"euid {os.geteuid()} lacks {' and '.join(missing)}"
    return ""


def read_subid_range(path: str, uid: int, name: str | None) -> SubidRange | None:
    """The first `name:start:count` (or `uid:start:count`) line of /etc/subuid or /etc/subgid."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or line.lstrip().startswith("#"):
            continue
        owner, start, count = parts
        if owner == str(uid) or (name is not None and owner == name):
            try:
                return SubidRange(int(start), int(count))
            except ValueError:
                continue
    return None


def read_id_map(path: str) -> list[SubidRange]:
    """The ids that exist in this process's user namespace (its uid_map or gid_map: lines
    `inside outside count`), as ranges of inside ids; [] if the file cannot be read."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            ranges.append(SubidRange(int(parts[0]), int(parts[2])))
    return ranges


def mapped_from(start: int, mapped: list[SubidRange]) -> int:
    """How many consecutive ids from `start` exist in the namespace (0: not even `start`)."""
    end = start
    for extent in sorted(mapped, key=lambda r: r.start):
        if extent.start <= end < extent.start + extent.count:
            end = extent.start + extent.count
    return end - start


def _describe(mapped: list[SubidRange]) -> str:
    return ", ".join(f"{r.start}-{r.start + r.count - 1}" for r in mapped) or "none"


def resolve(
    requested: str,
    uid_base: int,
    slots_needed: int,
    *,
    subuid_file: str = SUBUID_FILE,
    subgid_file: str = SUBGID_FILE,
    helpers: tuple[str, str] = (NEWUIDMAP, NEWGIDMAP),
    id_maps: tuple[str, str] = (UID_MAP_FILE, GID_MAP_FILE),
) -> JailMode:
    if requested not in MODES:
        raise JailModeError(f"jail_mode must be one of {', '.join(MODES)}, not {requested!r}")
    why_not_root = privileged()
    if requested == "root" or (requested == "auto" and not why_not_root):
        if why_not_root:
            raise JailModeError(
                f"jail_mode='root' needs CAP_SYS_ADMIN and CAP_SETUID in the initial user "
                f"namespace, but {why_not_root}; use jail_mode='subuid' (or 'auto')"
            )
        why = "configured" if requested == "root" else "auto: privileged"
        return JailMode("root", why, uid_base, uid_base, MAX_SLOTS)
    uid = os.getuid()
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    who = name or str(uid)
    ranges = []
    for path, map_file in zip((subuid_file, subgid_file), id_maps, strict=True):
        found = read_subid_range(path, uid, name)
        if found is None or found.count < slots_needed:
            have = "has no line" if found is None else f"gives only {found.count} ids"
            raise JailModeError(
                f"jail_mode subuid: {path} {have} for user {who!r} (uid {uid}); the pool needs "
                f"{slots_needed} subordinate ids (one per worker slot). Add a line such as "
                f"'{who}:200000:65536' to {path} (a range no other user or "
                f"subordinate range uses), and the same to "
                f"{subgid_file if path == subuid_file else subuid_file}"
            )
        # Only ids that exist in this user namespace can be mapped: in a Kubernetes pod with
        # `hostUsers: false` or a rootless container, 0-65535. Use the part of the range
        # that exists (from its start), and refuse to start if it is too short, rather than
        # let every worker fail in newuidmap.
        mapped = read_id_map(map_file)
        usable = min(found.count, mapped_from(found.start, mapped)) if mapped else found.count
        if usable < slots_needed:
            raise JailModeError(
                f"jail_mode subuid: {path} gives user {who!r} ids {found.start}-"
                f"{found.start + found.count - 1}, but this user namespace has only ids "
                f"{_describe(mapped)} ({map_file}), so {usable} of them can be mapped and the "
                f"pool needs {slots_needed} (one per worker slot). Give {who!r} a range inside "
                f"them in {subuid_file} and {subgid_file}, e.g. '{who}:20000:4096' (clear of "
                f"the daemon's own uid and of 65534)"
            )
        ranges.append(SubidRange(found.start, usable))
    for helper in helpers:
        if not os.access(helper, os.X_OK):
            raise JailModeError(
                f"jail_mode subuid needs {helper} (Debian/Ubuntu package `uidmap`, setuid "
                f"root): apt-get install uidmap"
            )
    why = "configured" if requested == "subuid" else f"auto: {why_not_root}"
    slots = min(ranges[0].count, ranges[1].count, MAX_SLOTS)
    return JailMode("subuid", why, ranges[0].start, ranges[1].start, slots)
