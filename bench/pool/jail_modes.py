"""Cost of the jail mode: worker boot time and hello latency, root mode vs subuid mode.

    python -m bench.pool.jail_modes [--mode auto|root|subuid] [--no-template] [-n 200]

Run it once as root (root mode, with and without the Python template) and once as a non-root
user with /etc/subuid and /etc/subgid lines (subuid mode); docs/architecture.md "The two jail modes" has the
numbers. Per runtime it reports, over n executions:
  boot     worker_boot_us: spawn request -> the worker's ready byte (clone, map, jail, runtime
           start, warm-up), medians and p90
  hello    end-to-end execute() of a hello with a warm worker ready (the pool refills between
           calls), p50 and p90
  rate     back-to-back hellos for 3 s on one thread: executions/s, bounded by boot rate
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from sandboxd_pool import ExecutionRequest, Pool, PoolConfig, Runtime

HELLO = {Runtime.PYTHON: "print('hello')", Runtime.JAVASCRIPT: "console.log('hello')"}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="auto", choices=("auto", "root", "subuid"))
    parser.add_argument("--no-template", action="store_true")
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    config = PoolConfig(
        warm_workers_per_runtime=2,
        jail_mode=args.mode,
        python_template=not args.no_template,
    )
    result: dict[str, object] = {}
    with Pool(config) as pool:
        result["mode"] = pool.jail_mode.mode
        result["python_template"] = config.python_template and pool.jail_mode.mode == "root"
        assert pool.wait_until_ready(60), pool.health()
        for runtime, code in HELLO.items():
            boots: list[float] = []
            latencies: list[float] = []
            for _ in range(args.n):
                pool.wait_until_ready(10)
                t0 = time.perf_counter()
                outcome = pool.execute(ExecutionRequest(runtime=runtime, code=code))
                latencies.append((time.perf_counter() - t0) * 1000)
                assert outcome.stdout == b"hello\n", outcome
                boots.append(outcome.worker_boot_us / 1000)
            pool.wait_until_ready(10)
            done, end = 0, time.monotonic() + 3.0
            while time.monotonic() < end:
                pool.execute(ExecutionRequest(runtime=runtime, code=code))
                done += 1
            result[runtime.value] = {
                "boot_ms_p50": round(statistics.median(boots), 1),
                "boot_ms_p90": round(_pct(boots, 0.9), 1),
                "hello_ms_p50": round(statistics.median(latencies), 2),
                "hello_ms_p90": round(_pct(latencies, 0.9), 2),
                "rate_per_s": round(done / 3.0, 1),
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
