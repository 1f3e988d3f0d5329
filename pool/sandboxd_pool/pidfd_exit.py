"""The exit status of a process that is not our child, from the kernel (Linux 6.15+).

A worker's program is the child of its init (jail/init.py), so the pool cannot wait for it. The
init reports the wait status it read; where the kernel offers it (PIDFD_GET_INFO with
PIDFD_INFO_EXIT, on a pidfd the pool holds), the pool reads the same fact itself once the
program has been reaped, and that is what decides the verdict. Older kernels: None, and the
init's report stands.
"""

from __future__ import annotations

import errno
import fcntl
import struct

PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, struct pidfd_info), the 64-byte version 0
PIDFD_INFO_EXIT = 1 << 3
_INFO = struct.Struct("<QQ11Ii")  # mask, cgroupid, pid..fsgid, exit_code


def exit_status(pidfd: int) -> int | None:
    """The raw wait status of the process behind `pidfd` once it has exited and been reaped;
    None when the kernel has none to give (not reaped yet, or no PIDFD_INFO_EXIT)."""
    buf = bytearray(_INFO.pack(PIDFD_INFO_EXIT, 0, *([0] * 11), 0))
    try:
        fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ESRCH):
            return None
        raise
    mask, *_rest, exit_code = _INFO.unpack(buf)
    return exit_code if mask & PIDFD_INFO_EXIT else None
