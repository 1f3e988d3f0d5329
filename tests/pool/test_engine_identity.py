"""The zygote runs the very engine files of the pool that started it, never another install.

Two copies of sandboxd_pool on one machine (a virtualenv and the base interpreter, two checkouts)
must not mix: the pool starts its zygote on the base interpreter, which used to import
sandboxd_pool from its own site-packages. Here a copy of the engine outside every site-packages
runs a pool; its zygote must report that copy, and a hello naming another copy is refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sandboxd_pool
from sandboxd_pool.zygote import ENGINE_DIR, ZygoteDied, check_engine
from sandboxd_pool.zygote_protocol import Hello

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import sandboxd_pool
from sandboxd_pool import ExecutionRequest, Pool, PoolConfig, Runtime
with Pool(PoolConfig(warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,))) as pool:
    outcome = pool.execute(ExecutionRequest(runtime=Runtime.PYTHON, code="print(6 * 7)"))
    zygote = pool._zygote
    print(json.dumps({
        "pool_engine": sandboxd_pool.__file__,
        "zygote_engine": zygote.engine_dir,
        "verdict": outcome.verdict.value,
        "stdout": outcome.stdout.decode(),
    }))
"""


def test_zygote_runs_the_pools_own_copy_of_the_engine(tmp_path: Path) -> None:
    copy = tmp_path / "other-checkout"
    shutil.copytree(
        Path(sandboxd_pool.__file__).parent,
        copy / "sandboxd_pool",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["pool_engine"] == str(copy / "sandboxd_pool" / "__init__.py")
    assert seen["zygote_engine"] == str(copy / "sandboxd_pool")
    assert (seen["verdict"], seen["stdout"]) == ("OK", "42\n")


def test_a_zygote_of_another_engine_is_refused() -> None:
    check_engine(Hello(pid=1, swept=(), engine=ENGINE_DIR))
    with pytest.raises(ZygoteDied, match="engine mismatch: the zygote runs sandboxd_pool from"):
        check_engine(Hello(pid=1, swept=(), engine="/elsewhere/sandboxd_pool"))
    with pytest.raises(ZygoteDied, match="engine mismatch"):
        check_engine(Hello(pid=1, swept=(), engine=""))
