"""Subuid mode: the init opens the program's out/ folder to the pool before it reports the exit.

In subuid mode the pool runs as the daemon's own uid, without any capability over the files of
a worker: they belong to the worker's subordinate uid, and the program chooses their modes (a
0600 file from mkstemp, a 0700 folder). Reading them back (files_out.py) needs "others" to be
able to search /work, list every folder under out/ and read every regular file there. The init,
which has the program's uid inside the sandbox and so owns those files, adds exactly these
bits once the program has exited: o+x on /work, u+rx and o+rx on each folder, u+r and o+r on
each regular file. Nothing else changes: the sandbox has a single uid, so "others" inside it
is no one, and no one outside can reach the worker's mounts but the pool.

Each name is opened with O_PATH | O_NOFOLLOW relative to its folder's descriptor and changed
through that descriptor (/proc/self/fd/N), after an fstat on the same descriptor: a symlink is
never followed (it is left alone, and the pool never follows one either), a name swapped by a
process still running cannot redirect the change, and at most OUT_MAX_ENTRIES names (listed or
opened), OUT_MAX_DEPTH folders deep, are visited, so a program cannot hold its own exit report
for long. Errors are
ignored: an entry that cannot be opened up is one the pool will not return.
"""

from __future__ import annotations

import contextlib
import os
import stat

from .policy import OUT_MAX_DEPTH, OUT_MAX_ENTRIES

_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def open_out(work_dir: str, out_dir: str) -> None:
    """Make `work_dir`/`out_dir` and what is under it readable by others (see above)."""
    budget = [OUT_MAX_ENTRIES + 1]  # out/ itself, then the names under it
    with contextlib.suppress(OSError):
        work = os.open(work_dir, _PATH_FLAGS | os.O_DIRECTORY)
        try:
            _add_bits(work, 0o711)
            _open_entry(work, out_dir, 0, budget)
        finally:
            os.close(work)


def _open_entry(dir_fd: int, name: str, depth: int, budget: list[int]) -> None:
    if budget[0] <= 0:
        return
    budget[0] -= 1
    try:
        fd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            _add_bits(fd, 0o444)
        elif stat.S_ISDIR(mode) and depth < OUT_MAX_DEPTH:
            _add_bits(fd, 0o555)
            _open_folder(fd, depth, budget)
    finally:
        os.close(fd)


def _open_folder(path_fd: int, depth: int, budget: list[int]) -> None:
    try:
        listed = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with os.scandir(listed) as entries:  # no more names than are left to open
            names = [entry.name for _, entry in zip(range(budget[0]), entries, strict=False)]
        for name in names:
            _open_entry(listed, name, depth + 1, budget)
            if budget[0] <= 0:
                return
    except OSError:
        return
    finally:
        os.close(listed)


def _add_bits(fd: int, bits: int) -> None:
    """chmod through an O_PATH descriptor (fchmod refuses one): the inode it holds, never a
    name looked up again."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & bits != bits:
        with contextlib.suppress(OSError):
            os.chmod(f"/proc/self/fd/{fd}", mode | bits)
