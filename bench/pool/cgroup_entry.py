"""Cost of putting a new process into its cgroup on cgroup v2: CLONE_INTO_CGROUP vs cgroup.procs.

    python -m bench.pool.cgroup_entry [--root /sys/fs/cgroup] [-n 100] [--gap-ms 50]

Run as root on a cgroup v2 hierarchy (by default the cgroup2 mount of this process; on a
hybrid v1 host, /sys/fs/cgroup/unified). In a fresh cgroup each time, it makes a process the
way the zygote makes a worker and times, per method, clone to "the child runs in its cgroup"
(the child writes one byte to a pipe the parent waits on):

  fork only            clone, no cgroup at all: the floor
  clone3 into          clone3(CLONE_INTO_CGROUP): born in the cgroup (the engine on v2)
  child writes procs   clone, then the child writes "0" to a cgroup.procs fd the parent
                       opened (the engine's fallback where clone3 is refused)
  parent writes pid    clone, then the parent writes the child's pid to cgroup.procs (what
                       an engine without either would do)

A migration takes the kernel's global cgroup_threadgroup_rwsem for writing, which waits for an
RCU grace period unless another writer took it within the last one; so each method runs as
its own block, with --gap-ms between spawns (the engine spawns workers tens of milliseconds
apart), not interleaved with the others. Medians, p90 and p99 in milliseconds; prints a
Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

from sandboxd_pool.jail import cgroups, namespaces

Method = Callable[[str], float]


def _v2_mount() -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    raise SystemExit("no cgroup2 mount: pass --root")


def _child_says(r: int, w: int, start: float) -> float:
    os.close(w)
    os.read(r, 1)
    elapsed = (time.perf_counter() - start) * 1000
    os.close(r)
    return elapsed


def fork_only(_: str) -> float:
    r, w = os.pipe()
    start = time.perf_counter()
    pid = namespaces.clone_into_namespaces(0)
    if pid == 0:
        os.write(w, b"x")
        os._exit(0)
    elapsed = _child_says(r, w, start)
    os.waitpid(pid, 0)
    return elapsed


def clone3_into(cgroup: str) -> float:
    directory = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    r, w = os.pipe()
    start = time.perf_counter()
    pid = cgroups.clone_into(0, directory)
    if pid == 0:
        os.write(w, b"x")
        os._exit(0)
    elapsed = _child_says(r, w, start)
    os.close(directory)
    os.waitpid(pid, 0)
    return elapsed


def child_writes_procs(cgroup: str) -> float:
    procs = os.open(f"{cgroup}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
    r, w = os.pipe()
    start = time.perf_counter()
    pid = namespaces.clone_into_namespaces(0)
    if pid == 0:
        os.write(procs, b"0")
        os.write(w, b"x")
        os._exit(0)
    elapsed = _child_says(r, w, start)
    os.close(procs)
    os.waitpid(pid, 0)
    return elapsed


def parent_writes_pid(cgroup: str) -> float:
    go_r, go_w = os.pipe()
    r, w = os.pipe()
    start = time.perf_counter()
    pid = namespaces.clone_into_namespaces(0)
    if pid == 0:
        os.read(go_r, 1)  # released once it is in the cgroup
        os.write(w, b"x")
        os._exit(0)
    with open(f"{cgroup}/cgroup.procs", "w") as f:
        f.write(str(pid))
    os.write(go_w, b"g")
    os.close(go_r)
    os.close(go_w)
    elapsed = _child_says(r, w, start)
    os.waitpid(pid, 0)
    return elapsed


METHODS: dict[str, Method] = {
    "fork only": fork_only,
    "clone3 into": clone3_into,
    "child writes procs": child_writes_procs,
    "parent writes pid": parent_writes_pid,
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", help="a cgroup v2 directory to work under")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=50.0)
    args = parser.parse_args()
    root = args.root or _v2_mount()
    parent = os.path.join(root, f"bench-cgroup-entry-{os.getpid()}")
    os.mkdir(parent)
    samples: dict[str, list[float]] = {name: [] for name in METHODS}
    try:
        for name, method in METHODS.items():
            for i in range(args.n):
                cgroup = os.path.join(parent, f"c{i}")
                os.mkdir(cgroup)
                try:
                    samples[name].append(method(cgroup))
                finally:
                    cgroups.WorkerCgroup(2, {cgroups.UNIFIED: cgroup}).remove()
                time.sleep(args.gap_ms / 1000)
    finally:
        os.rmdir(parent)
    rows = {
        name: {
            "p50_ms": round(statistics.median(values), 3),
            "p90_ms": round(_pct(values, 0.9), 3),
            "p99_ms": round(_pct(values, 0.99), 3),
        }
        for name, values in samples.items()
    }
    print(
        f"cgroup v2 under {root}; kernel {platform.release()}; n={args.n}; "
        f"loadavg {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("| method | p50 ms | p90 ms | p99 ms |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['p50_ms']:.3f} | {row['p90_ms']:.3f} | {row['p99_ms']:.3f} |")
    print(json.dumps({"root": root, "kernel": platform.release(), "n": args.n, "rows": rows}))


if __name__ == "__main__":
    main()
