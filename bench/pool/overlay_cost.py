"""What a worker's read-only layers cost the machine, by the way they are mounted.

    python -m bench.pool.overlay_cost [-n 300] [--rounds 10] [--runtimes python,javascript]

Root only. Each worker mounts its read-only layers in a mount namespace of its own, and the
kernel tears them down when the namespace goes. For the directory layers of each runtime's
jail (the pool's own plan: /usr/bin, /usr/lib, ..., the interpreter's prefix, the bootstraps,
the jail package; file layers and the relocated-interpreter patch layer are left out), this
process first makes a private mount namespace holding a read-only stage bind of each layer,
as the Python template's does; then it forks n children per variant, one after another, each
of which makes a new mount namespace (a copy of that one, as a template child copies the
template's), mounts a tmpfs, does the variant's mounts and exits. The namespace they copy is
this process's, larger than a template's: only the differences between the rows carry over to
a worker.

  namespace only             nothing more: the floor, and what a Python template child did
                             before issue 12 (it kept the template's root and built nothing)
  binds                      a read-only bind of each host directory: the exec path (Node)
                             before issue 12, the host's own inodes, whose locks every worker
                             shares
  overlays on stage binds    an overlay of each layer over the stage bind the parent holds:
                             what a Python template child does now (jail/mounts.py build_root,
                             stage "inherited"), inodes of the worker's own
  stage binds and overlays   a read-only stage bind of each host directory, an overlay over
                             it, the stage bind detached: the exec path (Node) now
  one overlay and binds      one overlay of the root filesystem (a bind of / without its
                             submounts), then a read-only bind of each layer's directory in
                             it: inodes of the worker's own, one superblock. Only where every
                             layer lies in the root mount.

The variants alternate in rounds (the order rotating), so that load from elsewhere on the VM
and the kernel's deferred teardown of one batch, which lands in the next, are spread over all
of them. It reports the machine's busy CPU per child (/proc/stat: the child, its teardown,
kernel threads) and the wall time per child. The children do nothing else, in a small
process: the difference between two rows is what those mounts cost a worker.
bench/RESULTS.md compares it with the CPU of a whole pooled execution (bench/pool/cpu_cost.py,
bench/pool/cpu_roles.py). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence

from bench.common.machine import machine_info
from bench.common.runtimes import select_runtimes
from bench.pool.cpu_cost import busy_ms
from sandboxd_pool import PoolConfig, Runtime
from sandboxd_pool.config import build_jail_plan
from sandboxd_pool.jail import cgroups, mode, mounts, namespaces

EMPTY_LAYER = "e"  # overlay needs two lower layers when it has no upper one
OVERLAY_FLAGS = mounts.MS_RDONLY | mounts.MS_NOSUID | mounts.MS_NODEV


def _overlay(lower: str, target: str) -> None:
    os.makedirs(target)
    mounts.mount("overlay", target, "overlay", OVERLAY_FLAGS, f"lowerdir={EMPTY_LAYER}:{lower}")


def _binds(layers: Sequence[str], stage: str) -> None:
    for index, path in enumerate(layers):
        mounts.bind_readonly(path, f"t/{index}", is_dir=True)


def _overlays_on_stage_binds(layers: Sequence[str], stage: str) -> None:
    for index in range(len(layers)):
        _overlay(f"{stage}/s/{index}", f"t/{index}")


def _stage_binds_and_overlays(layers: Sequence[str], stage: str) -> None:
    for index, path in enumerate(layers):
        mounts.bind_readonly(path, f"s/{index}", is_dir=True)
        _overlay(f"s/{index}", f"t/{index}")
        mounts.umount(f"s/{index}", mounts.MNT_DETACH)


def _one_overlay_and_binds(layers: Sequence[str], stage: str) -> None:
    os.makedirs("h")
    mounts.mount("/", "h", None, mounts.MS_BIND)  # not MS_REC: the root mount alone
    _overlay("h", "o")
    for index, path in enumerate(layers):
        mounts.bind_readonly("o" + path, f"t/{index}", is_dir=True)


Mounts = Callable[[Sequence[str], str], None] | None
ONE_OVERLAY = "one overlay and binds"  # measured only where every layer is in the root mount
VARIANTS: dict[str, Mounts] = {
    "namespace only": None,
    "binds": _binds,
    "overlays on stage binds": _overlays_on_stage_binds,
    "stage binds and overlays": _stage_binds_and_overlays,
    ONE_OVERLAY: _one_overlay_and_binds,
}


def _private_mount_namespace() -> None:
    """A mount namespace of the caller's own, from which no mount propagates to the host."""
    namespaces.unshare(namespaces.CLONE_NEWNS)
    mounts.mount(None, "/", None, mounts.MS_REC | mounts.MS_PRIVATE)


def _child(variant: Mounts, layers: Sequence[str], stage: str) -> int:
    try:
        _private_mount_namespace()
        mounts.mount("tmpfs", "/mnt", "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV, "size=1m")
        os.chdir("/mnt")
        os.mkdir(EMPTY_LAYER)
        if variant is not None:
            variant(layers, stage)
        return 0
    except BaseException as e:
        print(f"overlay_cost child: {type(e).__name__}: {e}", flush=True)
        return 1


def _batch(variant: Mounts, layers: Sequence[str], stage: str, n: int) -> tuple[float, float]:
    """Machine CPU ms and wall ms of n children, one after another."""
    cpu0, wall0 = busy_ms(), time.monotonic()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(_child(variant, layers, stage))
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"overlay_cost: a child failed (wait status {status}), see above")
    return busy_ms() - cpu0, (time.monotonic() - wall0) * 1000


def measure(
    layers: Sequence[str], variants: Sequence[str], n: int, rounds: int, stage: str
) -> dict[str, object]:
    """Per variant, CPU and wall ms per child over n children, in `rounds` alternating batches.
    Runs in this process's own mount namespace (made by main), where `stage` holds the stage
    binds (stage_layers)."""
    if n < rounds:
        raise SystemExit(f"overlay_cost: -n {n} is fewer children than --rounds {rounds}")
    per_batch = n // rounds
    cpu = dict.fromkeys(variants, 0.0)
    wall = dict.fromkeys(variants, 0.0)
    for turn in range(rounds):
        shift = turn % len(variants)
        for name in [*variants[shift:], *variants[:shift]]:
            spent_cpu, spent_wall = _batch(VARIANTS[name], layers, stage, per_batch)
            cpu[name] += spent_cpu
            wall[name] += spent_wall
    children = per_batch * rounds
    return {
        name: {
            "cpu_ms_per_worker": round(cpu[name] / children, 3),
            "wall_ms_per_worker": round(wall[name] / children, 3),
        }
        for name in variants
    }


def stage_layers(layers: Sequence[str], stage: str) -> None:
    """A tmpfs at `stage` holding a read-only stage bind of each layer, as the Python
    template's namespace holds them; in this process's own mount namespace, so none of it
    reaches the host."""
    mounts.mount("tmpfs", stage, "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV, "size=1m")
    for index, path in enumerate(layers):
        mounts.bind_readonly(path, f"{stage}/s/{index}", is_dir=True)


def measure_runtime(runtime: Runtime, n: int, rounds: int, stage: str) -> dict[str, object]:
    layers = directory_layers(runtime)
    variants = list(VARIANTS)
    outside = sorted({p for p in layers if mount_point_of(p) != "/"})
    if outside:
        variants.remove(ONE_OVERLAY)
    try:
        stage_layers(layers, stage)
        rows: dict[str, object] = {"layers": len(layers)}
        rows.update(measure(layers, variants, n, rounds, stage))
        if outside:
            rows[ONE_OVERLAY] = f"not measured: not in the root mount: {', '.join(outside)}"
        return rows
    finally:
        if os.path.ismount(stage):
            mounts.umount(stage, mounts.MNT_DETACH)


def directory_layers(runtime: Runtime) -> list[str]:
    """The host directories of a runtime's jail layers (file layers and absent paths left out)."""
    config = PoolConfig(runtimes=(runtime,), warm_workers_per_runtime=1)
    with tempfile.TemporaryDirectory() as empty:
        plan = build_jail_plan(
            config,
            cgroups.CgroupSetup.detect(root=empty),
            mode.resolve("root", config.uid_base, config.worker_slots_needed),
        )
    return [
        os.path.realpath(b.path)
        for b in plan.layers(runtime.value)
        if b.is_dir and os.path.isdir(b.path)
    ]


def mount_point_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The mount point of the mount that holds `path` (the longest one that is a prefix)."""
    best = "/"
    with open(mountinfo) as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best = point
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300, help="children per variant")
    parser.add_argument("--rounds", type=int, default=10, help="alternating batches")
    parser.add_argument("--runtimes", default="python,javascript")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("overlay_cost mounts in new mount namespaces: run it as root")
    runtimes = select_runtimes(args.runtimes.split(","))
    out: dict[str, object] = {"machine": machine_info(runtimes)}
    _private_mount_namespace()  # the stage binds go with this process, whatever happens
    stage = tempfile.mkdtemp(prefix="sandboxd-overlay-cost-")
    try:
        for runtime in runtimes:
            out[runtime.name] = measure_runtime(Runtime(runtime.name), args.n, args.rounds, stage)
    finally:
        with contextlib.suppress(OSError):  # never in place of the error that got here
            os.rmdir(stage)  # empty: its tmpfs is detached
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
