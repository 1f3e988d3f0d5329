"""Boot the cgroup v2 VM (qemu, TCG) on the cached assets and run one command in it.

The guest sees the checkout read-only over 9p at /mnt/checkout and writes its results into a
second 9p share, a temporary directory of the host: output.txt (the command's stdout and
stderr), rc (its exit status), guest.json (kernel release, command line, cgroup mounts), and
whatever the command writes there (pytest's junit XML). The VM has no network device.

KVM is not used: /dev/kvm here is PVM, which runs only PVM-enabled guest kernels; qemu's TCG
runs Debian's stock kernel (code in the guest is 10-20x slower than on the host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .assets import REPO, RESULTS_MOUNT, Assets

QEMU = "qemu-system-x86_64"
MEMORY_MIB = 2048
CPUS = 2
# cgroup_no_v1=all: every controller on the unified hierarchy only, as on a current
# distribution (the kernel would otherwise still offer v1). panic=-1 and -no-reboot: a guest
# that dies ends qemu instead of hanging the test.
KERNEL_ARGS = (
    "console=ttyS0",
    "cgroup_no_v1=all",
    "panic=-1",
    "quiet",
    "loglevel=4",
    "mitigations=off",
    "tsc=reliable",
    "8250.nr_uarts=1",
    "random.trust_cpu=on",
)


@dataclass(frozen=True)
class GuestRun:
    rc: int | None  # the command's exit status; None when the guest never reported one
    output: str  # its stdout and stderr
    console: str  # the VM's serial console (kernel, initramfs and init messages)
    guest: Mapping[str, object]  # what init saw: release, cmdline, cgroup mounts, ...
    files: Mapping[str, bytes]  # other files the command left in the results share
    boot_to_exit_s: float

    def report(self) -> str:
        return (
            f"guest exit status {self.rc} after {self.boot_to_exit_s:.1f} s\n"
            f"--- guest output (tail)\n{self.output[-20000:]}\n"
            f"--- console (tail)\n{self.console[-4000:]}"
        )


def run_in_guest(
    assets: Assets,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str = "/tmp",
    timeout_s: float,
) -> GuestRun:
    """Boot, run `argv` as root in the guest, power off. The guest kills the command at
    `timeout_s`; the host kills qemu if the VM is still up a minute after that."""
    with tempfile.TemporaryDirectory(prefix="sandboxd-v2-results-") as results:
        os.chmod(results, 0o755)
        with open(os.path.join(results, "request.json"), "w") as f:
            json.dump({"argv": list(argv), "env": dict(env), "cwd": cwd, "timeout_s": timeout_s}, f)
        console_path = os.path.join(results, "console.log")
        command = [
            QEMU,
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-display", "none",
            "-accel", "tcg,thread=multi",
            "-cpu", "max",
            "-smp", str(CPUS),
            "-m", str(MEMORY_MIB),
            "-kernel", assets.kernel,
            "-initrd", assets.initramfs,
            "-append", " ".join(KERNEL_ARGS),
            "-serial", f"file:{console_path}",
            "-drive", f"file={assets.rootfs},format=raw,if=virtio,snapshot=on",
            "-fsdev", f"local,id=checkout,path={REPO},security_model=none,readonly=on",
            "-device", "virtio-9p-pci,fsdev=checkout,mount_tag=checkout",
            "-fsdev", f"local,id=results,path={results},security_model=none",
            "-device", "virtio-9p-pci,fsdev=results,mount_tag=results",
        ]  # fmt: skip
        start = time.monotonic()
        qemu = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": results},  # snapshot=on's overlay goes there
        )
        try:
            qemu_output, _ = qemu.communicate(timeout=timeout_s + 60)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu_output, _ = qemu.communicate()
            qemu_output += b"\n(host: qemu killed, the VM did not power off in time)\n"
        elapsed = time.monotonic() - start
        files = {}
        for name in os.listdir(results):
            path = os.path.join(results, name)
            if os.path.isfile(path) and name not in ("request.json",):
                with open(path, "rb") as f:
                    files[name] = f.read()
        shutil.rmtree(results, ignore_errors=True)
    rc_text = files.pop("rc", b"").decode().strip()
    guest = json.loads(files.pop("guest.json", b"{}") or b"{}")
    return GuestRun(
        rc=int(rc_text) if rc_text.lstrip("-").isdigit() else None,
        output=files.pop("output.txt", b"").decode(errors="replace"),
        console=files.pop("console.log", b"").decode(errors="replace")
        + qemu_output.decode(errors="replace"),
        guest=guest,
        files=files,
        boot_to_exit_s=elapsed,
    )


def results_path(name: str) -> str:
    """Where the guest writes a result file `name` (read back in GuestRun.files)."""
    return f"{RESULTS_MOUNT}/{name}"


def main() -> None:
    """`python -m cgroup_v2.vm CMD...` (from tests/): run CMD in the VM (the benchmarks of
    bench/, a debugging shell command), print its output, exit with its status."""
    import sys

    from .assets import ensure_assets
    from .guest_env import GUEST_ENV

    run = run_in_guest(
        ensure_assets(), sys.argv[1:], GUEST_ENV, cwd="/mnt/checkout", timeout_s=1800
    )
    print(run.output, end="")
    if run.rc != 0:
        print(run.report(), file=sys.stderr)
    sys.exit(1 if run.rc is None else run.rc)


if __name__ == "__main__":
    main()
