"""Files out: what a program leaves under out/ in its working directory, read by the pool after
the program has exited. Runs in the pool (the parent side).

The pool holds an O_PATH descriptor of the worker's working directory, opened when the worker
booted (it keeps the worker's scratch tmpfs alive after the namespace is gone). The folder is
walked one name at a time relative to descriptors, each open with O_NOFOLLOW: a symlink is never
followed (nor returned), ".." never appears in a directory listing, so nothing outside out/ can
be reached, whatever the program left there. Only regular files are returned (devices, FIFOs and
sockets are skipped, opened with O_NONBLOCK so none can block); a directory is entered only if
it is a real directory. A name that is not valid UTF-8 is skipped too, file or folder: a result's
path is a string, which the API carries as UTF-8. Limits: at most `max_files` files and
`max_bytes` bytes in all, in path order; what does not fit sets `truncated`. At most
OUT_MAX_ENTRIES names are looked at in all (a program can leave hundreds of thousands, which
would cost the pool's process memory and time): past that too the rest is left out, and which
names of an overfull folder were looked at is the folder's listing order.
"""

from __future__ import annotations

import contextlib
import os
import stat

from .jail.policy import OUT_DIR, OUT_MAX_DEPTH, OUT_MAX_ENTRIES
from .types import OutputFile

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def collect(work_fd: int, max_files: int, max_bytes: int) -> tuple[tuple[OutputFile, ...], bool]:
    """(the files, truncated). No out/ folder (or not a real one): no files."""
    try:
        out_fd = os.open(OUT_DIR, _DIR_FLAGS, dir_fd=work_fd)
    except OSError:
        return (), False
    found: list[OutputFile] = []
    budget = [max_files, max_bytes, OUT_MAX_ENTRIES]  # files, bytes, names looked at
    try:
        truncated = _walk(out_fd, "", 0, found, budget)
    finally:
        os.close(out_fd)
    return tuple(found), truncated


def _walk(dir_fd: int, prefix: str, depth: int, found: list[OutputFile], budget: list[int]) -> bool:
    try:
        names, truncated = _names(dir_fd, budget)
    except OSError:
        return False
    for name in sorted(names):
        if not _is_utf8(name):
            continue
        rel = f"{prefix}{name}"
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if depth + 1 >= OUT_MAX_DEPTH:
                truncated = True
                continue
            with contextlib.suppress(OSError):
                sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    truncated |= _walk(sub, f"{rel}/", depth + 1, found, budget)
                finally:
                    os.close(sub)
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # symlinks, devices, FIFOs, sockets: never followed nor returned
        if budget[0] <= 0 or budget[1] <= 0:
            truncated = True
            continue
        data, whole = _read_regular(dir_fd, name, budget[1])
        if data is None:
            continue
        budget[0] -= 1
        budget[1] -= len(data)
        truncated |= not whole
        found.append(OutputFile(path=rel, data=data))
    return truncated


def _names(dir_fd: int, budget: list[int]) -> tuple[list[str], bool]:
    """The folder's names, as many as the budget of names still allows (each counted), and
    whether some were left out."""
    names: list[str] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if budget[2] <= 0:
                return names, True
            budget[2] -= 1
            names.append(entry.name)
    return names, False


def _is_utf8(name: str) -> bool:
    """A name listed as str holds each byte that is not UTF-8 as a lone surrogate."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _read_regular(dir_fd: int, name: str, limit: int) -> tuple[bytes | None, bool]:
    """(up to `limit` bytes of the file, whether that is all of it); None if it is not a
    regular file once opened (it was swapped for something else)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None, True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, True
        chunks = []
        left = limit + 1  # one byte more than fits tells that the file was cut
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError:
        return None, True
    finally:
        os.close(fd)
    return data[:limit], len(data) <= limit
