"""One hello in each runtime through the real daemon (`sandboxd serve` on port 0, the client
library) on the v2 hierarchy (run inside the VM)."""

from __future__ import annotations

import os

from e2e.daemon import start

from sandboxd_client import Client, Verdict

from .conftest import CGROUP2, cgroup_tree

HELLO = {"python": "print('hello')", "javascript": "console.log('hello')"}


def test_hello_through_the_daemon_in_both_runtimes() -> None:
    before = cgroup_tree()
    daemon = start(["--warm-workers", "1"], warm=1)
    try:
        with Client(daemon.address) as client:
            for runtime, code in HELLO.items():
                result = client.execute(runtime, code, timeout_s=60)
                assert (result.verdict, result.stdout) == (Verdict.OK, b"hello\n"), result
                assert result.usage.peak_memory_bytes > 0, result.usage
        assert os.path.isdir(os.path.join(CGROUP2, "sandboxd"))  # the default parent
    finally:
        rc = daemon.stop()
    assert rc == 0, "".join(daemon.raw_stderr[-40:])
    assert cgroup_tree() == before
