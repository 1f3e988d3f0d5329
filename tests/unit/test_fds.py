"""jail/fds.py: a cloned child keeps exactly the descriptors it was given (in a real child)."""

from __future__ import annotations

import json
import os

from sandboxd_pool.jail.fds import close_all_but


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _open_in_child(keep_extra: int) -> tuple[list[int], list[int]]:
    """In a forked child: open 6 pipes, keep 0-2, the report pipe and `keep_extra` of the
    new ones; (the descriptors opened, those left open after close_all_but)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            opened = [fd for _ in range(6) for fd in os.pipe()]
            kept = opened[:keep_extra]
            close_all_but((0, 1, 2, w, *kept))
            listed = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
            left = [fd for fd in listed if _is_open(fd)]  # not listdir's own, closed by now
            os.write(w, json.dumps([opened, left]).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    opened, left = json.loads(data)
    return opened, left


def test_only_the_kept_descriptors_stay_open() -> None:
    opened, left = _open_in_child(keep_extra=3)
    assert set(opened[:3]) <= set(left)
    assert not set(opened[3:]) & set(left)
    assert {0, 1, 2} <= set(left)
    # nothing else of the parent's survives either (pytest's own descriptors, ...)
    assert len(left) == 3 + 1 + 3


def test_keeping_nothing_but_stdio_and_the_report() -> None:
    opened, left = _open_in_child(keep_extra=0)
    assert not set(opened) & set(left)
    assert len(left) == 4
