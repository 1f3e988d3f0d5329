"""Descriptor hygiene in a process cloned from another: keep only what it was given."""

from __future__ import annotations

import os
from collections.abc import Iterable

MAX_FD = 1 << 20  # above any descriptor a process here holds (RLIMIT_NOFILE is far lower)


def close_all_but(keep: Iterable[int]) -> None:
    """Close every descriptor of this process except `keep` (close_range(2) over the gaps).
    An empty gap is skipped: os.closerange(0, 0) asks the kernel for close_range(0, ~0U),
    which closes everything."""
    low = 0
    for fd in sorted(set(keep)):
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, MAX_FD)
