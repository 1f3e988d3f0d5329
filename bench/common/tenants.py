"""A tenants file for a benchmark's daemon, written by the real `sandboxd tenants add`.

`bench_tenant(...)` makes a temporary directory holding `tenants.toml` with one tenant, the
quotas given as that command's flags, and yields (path, API key); the directory is removed
afterwards. The daemon is then started with `--tenants path` (bench.common.servers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common.servers import REPO


@dataclass(frozen=True)
class TenantQuotas:
    """`sandboxd tenants add` flags; each field is the flag's value."""

    max_concurrent: int
    max_open_calls: int
    max_queued_jobs: int
    max_async_bytes: int


@contextmanager
def bench_tenant(name: str, quotas: TenantQuotas) -> Iterator[tuple[Path, str]]:
    directory = Path(tempfile.mkdtemp(prefix="sandboxd-bench-tenants-"))
    try:
        path = directory / "tenants.toml"
        argv = [sys.executable, "-m", "sandboxd", "tenants", "add", name, "--file", str(path)]
        argv += ["--max-concurrent", str(quotas.max_concurrent)]
        argv += ["--max-open-calls", str(quotas.max_open_calls)]
        argv += ["--max-queued-jobs", str(quotas.max_queued_jobs)]
        argv += ["--max-async-bytes", str(quotas.max_async_bytes)]
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"sandboxd tenants add failed ({done.returncode}): {done.stderr}")
        yield path, lines[-1].strip()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
