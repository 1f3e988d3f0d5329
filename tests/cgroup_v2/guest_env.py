"""What the host sets for the tests in the guest (imported on both sides)."""

from __future__ import annotations

from .assets import CHECKOUT_MOUNT

GUEST_MARKER = "SANDBOXD_CGROUP_V2_GUEST"  # "1" in the VM: tests/cgroup_v2/guest is collected

GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",  # the checkout is a read-only share
    # The three distributions straight from the checkout (the engine's zygote is started with
    # this copy's own import path, see docs/architecture.md, "The engine").
    "PYTHONPATH": ":".join(f"{CHECKOUT_MOUNT}/{d}" for d in ("pool", "client", ".")),
    GUEST_MARKER: "1",
}
