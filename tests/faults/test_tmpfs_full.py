"""A full scratch tmpfs (/work, /tmp, /dev/shm: one tmpfs per worker). Filled to its size the
program gets ENOSPC (RUNTIME_ERROR when it does not catch it); filled past its memory limit
(tmpfs pages are charged to the worker's memory cgroup) it is MEMORY_LIMIT. Either way the next
executions, on fresh workers, find an empty scratch space of full size."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
from e2e.daemon import Daemon, start
from soak import footprint

from sandboxd_client import NO_RETRY, Client, Limits, Verdict

from .support import warm

WARM = 2
MiB = 1024 * 1024
FILL = {
    "python": "with open('/tmp/fill', 'wb') as f:\n    while True:\n        f.write(b'x' * 65536)\n",
    "javascript": "const fs = require('fs'); const fd = fs.openSync('/tmp/fill', 'w');\n"
    "const b = Buffer.alloc(65536, 120); while (true) fs.writeSync(fd, b);\n",
}
ENOSPC = {
    "python": b"OSError: [Errno 28] No space left on device",
    "javascript": b"ENOSPC: no space left on device, write",
}
PROBE = {
    "python": "import json, os\ns = os.statvfs('/tmp')\n"
    "open('/work/probe', 'wb').write(b'y' * (1 << 20))\n"
    "print(json.dumps([sorted(os.listdir('/tmp')), s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize]))",
    "javascript": "const fs = require('fs'); const s = fs.statfsSync('/tmp');\n"
    "fs.writeFileSync('/work/probe', Buffer.alloc(1 << 20, 121));\n"
    "console.log(JSON.stringify([fs.readdirSync('/tmp').sort(), s.bavail * s.bsize, s.blocks * s.bsize]));",
}


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    mounts_before = footprint.mount_points()
    d = start(["--warm-workers", str(WARM)], warm=WARM)
    zygote = footprint.zygote_of(d.proc.pid)
    assert zygote is not None
    yield d
    assert d.stop() == 0, "".join(d.raw_stderr[-20:])
    footprint.wait_nothing_left(d.proc.pid, {zygote}, mounts_before)


def _next_ones_unaffected(client: Client, runtime: str, size_bytes: int) -> None:
    for _ in range(WARM + 1):  # every warm worker, then a fresh one
        r = client.execute(
            runtime, PROBE[runtime], limits=Limits(tmpfs_bytes=size_bytes, wall_time_ms=20_000)
        )
        assert r.verdict is Verdict.OK, r
        listing, free, total = json.loads(r.stdout)
        assert listing == [] and total == size_bytes and free >= size_bytes - 64 * 1024, r.stdout


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_filled_to_its_size_is_enospc(daemon: Daemon, runtime: str) -> None:
    warm(daemon, WARM)
    size = 2 * MiB
    with Client(daemon.address, retry=NO_RETRY) as client:
        r = client.execute(
            runtime, FILL[runtime], limits=Limits(tmpfs_bytes=size, wall_time_ms=20_000)
        )
        assert (r.verdict, r.exit_code) == (Verdict.RUNTIME_ERROR, 1), r
        assert ENOSPC[runtime] in r.stderr, r.stderr[-500:]
        _next_ones_unaffected(client, runtime, size)


@pytest.mark.parametrize("runtime", ["python", "javascript"])
def test_filled_past_its_memory_limit_is_memory_limit(daemon: Daemon, runtime: str) -> None:
    warm(daemon, WARM)
    limits = Limits(tmpfs_bytes=512 * MiB, memory_bytes=64 * MiB, wall_time_ms=20_000)
    with Client(daemon.address, retry=NO_RETRY) as client:
        r = client.execute(runtime, FILL[runtime], limits=limits)
        assert (r.verdict, r.signal) == (Verdict.MEMORY_LIMIT, signal.SIGKILL), r
        assert r.usage.peak_memory_bytes <= 64 * MiB
        _next_ones_unaffected(client, runtime, 64 * MiB)
