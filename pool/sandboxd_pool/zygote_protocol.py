"""Messages between the pool and its zygote: one JSON object per SOCK_SEQPACKET datagram, with
file descriptors attached by SCM_RIGHTS. Both sides import this module.

pool -> zygote                         zygote -> pool
  {"op": "spawn", "id", "runtime"}       {"op": "spawned", "id", "pid", "slot", "cgroup",
                                          "program_pid"} + fds
                                         {"op": "spawn_failed", "id", "error"}
                                         {"op": "exited", "pid", "status", "init_lost",
                                          "rusage", "facts", "blocked_syscall", "boot_error"}
  {"op": "shutdown"} (or EOF)            {"op": "hello", "pid", "swept", "engine"}
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024
MAX_FDS = 8

# The fds attached to a "spawned" message, in order: pidfd, stdin, stdout, stderr, control,
# the init's exit pipe, and (subuid mode) the scratch fs context.


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One message and its fds; None at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE_BYTES, MAX_FDS)
    if not data:
        for fd in fds:
            __import__("os").close(fd)
        return None
    return json.loads(data), list(fds)
