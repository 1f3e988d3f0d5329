"""What a worker's read-only layers cost the machine, by the way they are mounted.

    python -m bench.pool.overlay_cost [-n 300] [--runtimes python,javascript]

Root only. Each worker mounts its read-only layers in a mount namespace of its own, and the
kernel tears them down when the namespace goes. For the real layers of each runtime's jail
(the pool's own plan: /usr/bin, /usr/lib, ..., the interpreter's prefix, the bootstraps, the
jail package), this forks n children, one after another, each of which makes a new mount
namespace, mounts a tmpfs and then the layers one of these ways, and exits:

  namespace only        no layer: the floor (fork, the namespace, the tmpfs, exit)
  binds                 a read-only bind of each host directory (before issue 12: the
                        host's own inodes, whose locks every worker shares)
  overlay per layer     what the engine does (jail/mounts.py build_root): an overlay of
                        each directory layer over a stage bind, so that every worker has
                        inodes of its own
  one overlay + binds   one overlay of the whole root filesystem (a non-recursive bind of
                        /, so no other mount shows through), then a bind of each layer's
                        directory inside it: inodes of the worker's own, one superblock.
                        Only where every layer is on the root filesystem.

and reports the machine's busy CPU per child (/proc/stat: the child, its teardown, and the
kernel's deferred work, all included) and the wall time per child. The children do nothing
else, in a small process, so the difference between two rows is what those mounts cost a
worker; docs and bench/RESULTS.md compare it with the CPU a whole pooled execution costs
(bench/pool/cpu_cost.py). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence

from bench.pool.cpu_cost import busy_ms
from sandboxd_pool import PoolConfig, Runtime
from sandboxd_pool.config import build_jail_plan
from sandboxd_pool.jail import cgroups, mode

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV = 0x1, 0x2, 0x4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    args = (
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if _libc.mount(*args) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _bind_readonly(source: str, target: str) -> None:
    os.makedirs(target)
    _mount(source, target, None, MS_BIND)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _binds(layers: Sequence[str]) -> None:
    for index, path in enumerate(layers):
        _bind_readonly(path, f"t/{index}")


def _overlay_per_layer(layers: Sequence[str]) -> None:
    for index, path in enumerate(layers):
        os.makedirs(f"s/{index}")
        _mount(path, f"s/{index}", None, MS_BIND | MS_REC)
        os.makedirs(f"t/{index}")
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV
        _mount("overlay", f"t/{index}", "overlay", flags, f"lowerdir=e:s/{index}")


def _one_overlay_and_binds(layers: Sequence[str]) -> None:
    os.makedirs("h")
    os.makedirs("o")
    _mount("/", "h", None, MS_BIND)  # not MS_REC: the root filesystem alone
    _mount("overlay", "o", "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV, "lowerdir=e:h")
    for index, path in enumerate(layers):
        _bind_readonly("o" + path, f"t/{index}")


VARIANTS: dict[str, Callable[[Sequence[str]], None] | None] = {
    "namespace only": None,
    "binds": _binds,
    "overlay per layer": _overlay_per_layer,
    "one overlay + binds": _one_overlay_and_binds,
}


def _child(mounts: Callable[[Sequence[str]], None] | None, layers: Sequence[str]) -> int:
    try:
        if _libc.unshare(CLONE_NEWNS) < 0:
            return 3
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", "/mnt", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
        os.chdir("/mnt")
        os.mkdir("e")
        if mounts is not None:
            mounts(layers)
        return 0
    except BaseException as e:
        print(f"overlay_cost child: {e}", flush=True)
        return 1


def measure(
    mounts: Callable[[Sequence[str]], None] | None, layers: Sequence[str], n: int
) -> dict[str, float]:
    """Machine CPU and wall time per child, over n children one after another."""
    time.sleep(0.5)  # let earlier teardown (deferred by the kernel) finish outside the reading
    cpu0, wall0 = busy_ms(), time.monotonic()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(_child(mounts, layers))
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"a child failed (wait status {status}); see its message above")
    wall_ms = (time.monotonic() - wall0) * 1000
    time.sleep(0.5)  # the kernel's deferred teardown of the last ones, inside the reading
    return {
        "cpu_ms_per_worker": round((busy_ms() - cpu0) / n, 3),
        "wall_ms_per_worker": round(wall_ms / n, 3),
    }


def directory_layers(runtime: Runtime) -> list[str]:
    """The host directories of a runtime's jail layers (files and absent paths left out)."""
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--runtimes", default="python,javascript")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("overlay_cost mounts in new mount namespaces: run it as root")
    out: dict[str, object] = {"loadavg_start": os.getloadavg()}
    root_dev = os.stat("/").st_dev
    for name in args.runtimes.split(","):
        layers = directory_layers(Runtime(name))
        rows: dict[str, object] = {"layers": len(layers)}
        for variant, mounts in VARIANTS.items():
            if variant == "one overlay + binds" and any(
                os.stat(p).st_dev != root_dev for p in layers
            ):
                rows[variant] = "not measured: a layer is not on the root filesystem"
                continue
            rows[variant] = measure(mounts, layers, args.n)
        out[name] = rows
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
