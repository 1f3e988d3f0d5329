"""CPU per single-use execution: where the pool's throughput ceiling comes from.

    python -m bench.pool.cpu_cost [--duration-s 5] [--threads 2] [--runtimes python,javascript]

Single-use throughput is bounded by the CPU each execution costs, since every execution
consumes a worker that must be made and torn down. For each runtime this drives hello
executions back to back from N threads for the duration (bench/common/harness.py), through:
a bare spawn of the interpreter (no isolation), the pool, and the pool without cgroups (an
empty cgroup root: the rlimit fallback), and reports sustained executions/s and the machine's
busy CPU per execution
(/proc/stat, every process: caller, zygote, workers, kernel). Then it spawns `/bin/true` 300
times plain and under `unshare` with each namespace the jail makes, to show what creating and
tearing down the namespaces themselves costs. Prints one JSON line; docs/benchmarks.md
quotes a run. `bench.pool.cpu_roles` splits the pool's CPU per execution by process role
(caller, zygote, template, worker processes, kernel threads), on the pool made here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sandboxd_pool
from bench.common import baselines
from bench.common.harness import measure_throughput
from bench.common.runtimes import BenchRuntime, select_runtimes
from bench.common.stats import Attempt
from bench.pool.engine import pool_runner

WARM_WORKERS = 8
READY_TIMEOUT_S = 60.0  # for a new pool's warm workers to be all ready
BOOT_SETTLE_S = 1.0  # then, for the aftermath of their boots

NAMESPACES = {
    "none": [],
    "net": ["-n"],
    "mount": ["-m"],
    "ipc+uts": ["-i", "-u"],
    "pid": ["-p", "-f"],
    "all five": ["-n", "-m", "-i", "-u", "-p", "-f"],
}


def busy_ms() -> float:
    """The machine's busy CPU time so far (all CPUs, ms): total minus idle and iowait."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) * 1000 / os.sysconf("SC_CLK_TCK")


def drive(run_once: Callable[[], Attempt], threads: int, duration_s: float) -> dict[str, object]:
    """The harness's sustained throughput, and the machine's CPU over the whole run divided by
    every call it made."""
    cpu0 = busy_ms()
    run = measure_throughput(run_once, threads, duration_s)
    calls = run.completed + run.failures
    return {
        "exec_s": round(run.per_s, 1),
        "cpu_ms_per_exec": round((busy_ms() - cpu0) / max(calls, 1), 2),
        "failures": run.failures,
        **({"first_error": run.first_error} if run.first_error else {}),
    }


@contextmanager
def warm_pool(runtime: BenchRuntime, **config: Any) -> Iterator[sandboxd_pool.Pool]:
    """A pool of `runtime` alone (`config`: further PoolConfig fields), once its warm workers
    are all ready and BOOT_SETTLE_S has passed for their boots' aftermath; RuntimeError, with
    the pool's health, if they are not ready within READY_TIMEOUT_S."""
    pool_config = sandboxd_pool.PoolConfig(
        warm_workers_per_runtime=WARM_WORKERS,
        runtimes=(sandboxd_pool.Runtime(runtime.name),),
        **config,
    )
    with sandboxd_pool.Pool(pool_config) as pool:
        if not pool.wait_until_ready(READY_TIMEOUT_S):
            raise RuntimeError(
                f"the {runtime.name} pool's warm workers were not ready in "
                f"{READY_TIMEOUT_S:.0f} s: {pool.health()}"
            )
        time.sleep(BOOT_SETTLE_S)
        yield pool


def measure_runtime(runtime: BenchRuntime, threads: int, duration_s: float) -> dict[str, object]:
    bare = baselines.spawn_runner(runtime.hello_argv, runtime.expected_stdout)
    result: dict[str, object] = {"bare spawn": drive(bare, threads, duration_s)}
    with tempfile.TemporaryDirectory() as empty_root:
        for name, extra in (("pool", {}), ("pool without cgroups", {"cgroup_root": empty_root})):
            with warm_pool(runtime, **extra) as pool:
                run_once = pool_runner(sandboxd_pool, pool, runtime)
                result[name] = {
                    **drive(run_once, threads, duration_s),
                    "cgroups": pool.cgroups.version,
                }
    return result


def measure_namespaces(n: int = 300) -> dict[str, float]:
    """CPU ms per `/bin/true`, plain and under unshare with each namespace (teardown included:
    a pause lets the kernel's deferred network-namespace cleanup run before the reading)."""
    costs = {"/bin/true": ["/bin/true"]}
    costs.update(
        {f"unshare {name}": ["unshare", *flags, "/bin/true"] for name, flags in NAMESPACES.items()}
    )
    result = {}
    for name, argv in costs.items():
        time.sleep(0.5)
        cpu0 = busy_ms()
        for _ in range(n):
            subprocess.run(argv, check=True)
        time.sleep(0.5)
        result[name] = round((busy_ms() - cpu0) / n, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", default="python,javascript")
    args = parser.parse_args()
    out: dict[str, object] = {"loadavg_start": os.getloadavg()}
    for runtime in select_runtimes(args.runtimes.split(",")):
        out[runtime.name] = measure_runtime(runtime, args.threads, args.duration_s)
    out["namespaces (cpu ms per /bin/true)"] = measure_namespaces()
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
