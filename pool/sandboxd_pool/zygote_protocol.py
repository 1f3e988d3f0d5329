"""Messages between the pool and its zygote: one JSON object per SOCK_SEQPACKET datagram, with
file descriptors attached by SCM_RIGHTS. Both sides import this module; each message is a frozen
dataclass here, tagged on the wire by its "op".

pool -> zygote            zygote -> pool
  Spawn                     Hello (once, first)
  Shutdown (or EOF)         Spawned + fds: pidfd, stdin, stdout, stderr, control, the init's
                              exit pipe, then those named in Spawned.handed: the egress
                              proxy's listening socket, (subuid mode) the scratch fs context
                            SpawnFailed
                            Exited (a worker's PID 1 was reaped: the kernel's facts)
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from .jail.cgroups import CgroupFacts

MAX_MESSAGE_BYTES = 64 * 1024
MAX_FDS = 10
# Descriptors a worker's init may hand the pool after the fixed six, in this order.
HANDED_NAMES = ("proxy", "scratch")


@dataclass(frozen=True)
class Spawn:
    id: int
    runtime: str
    environment: str = ""  # PoolConfig.environments; "": the bare runtime


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Hello:
    pid: int
    swept: tuple[str, ...]  # stale worker cgroups removed at start
    engine: str  # the directory of the sandboxd_pool the zygote imported
    clone_into_error: str = ""  # v2: why workers cannot be created in their cgroups, if so


@dataclass(frozen=True)
class Spawned:
    id: int
    pid: int  # the worker's init: PID 1 of its PID namespace
    slot: int
    runtime: str
    cgroup: dict[str, str]  # controller (or "unified") -> path; empty without cgroups
    program_pid: int  # the program, the init's child; 0 if it was not found
    handed: tuple[str, ...] = ()  # names (HANDED_NAMES) of the fds after the fixed six


@dataclass(frozen=True)
class SpawnFailed:
    id: int
    error: str


@dataclass(frozen=True)
class Rusage:
    utime_us: int = 0
    stime_us: int = 0
    maxrss_kb: int = 0


@dataclass(frozen=True)
class Exited:
    pid: int
    # The program's wait status as its init reported it; else the init's own (killed by the
    # pool at a limit, or it died while booting).
    status: int
    rusage: Rusage = field(default_factory=Rusage)
    facts: CgroupFacts | None = None  # the worker's cgroup, read after the tree died
    blocked_syscall: str | None = None
    boot_error: str = ""
    init_lost: bool = False  # the init exited by itself without reporting: fate unknown
    reported_spawned: bool = True
    spawn_id: int = 0


Message = Spawn | Shutdown | Hello | Spawned | SpawnFailed | Exited
_BY_OP: dict[str, type[Any]] = {
    "spawn": Spawn,
    "shutdown": Shutdown,
    "hello": Hello,
    "spawned": Spawned,
    "spawn_failed": SpawnFailed,
    "exited": Exited,
}
_OP_OF = {cls: op for op, cls in _BY_OP.items()}


def send(sock: socket.socket, message: Message, fds: list[int] | None = None) -> None:
    data = json.dumps({"op": _OP_OF[type(message)], **dataclasses.asdict(message)}).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[Message, list[int]] | None:
    """One message and its fds; None at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE_BYTES, MAX_FDS)
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    return decode(json.loads(data)), list(fds)


def decode(raw: dict[str, Any]) -> Message:
    cls = _BY_OP[raw.pop("op")]
    if cls is Hello:
        raw["swept"] = tuple(raw["swept"])
    elif cls is Spawned:
        raw["handed"] = tuple(raw["handed"])
    elif cls is Exited:
        raw["rusage"] = Rusage(**raw["rusage"])
        raw["facts"] = None if raw["facts"] is None else CgroupFacts(**raw["facts"])
    message: Message = cls(**raw)
    return message
