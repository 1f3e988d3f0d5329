"""The cgroup v2 VM's assets, built from Debian's packages and cached between runs.

    vmlinux             the uncompressed kernel of Debian's `linux-image-amd64` (its bzImage's
                        xz payload): qemu boots an ELF directly (PVH), which under TCG is about
                        twice as fast as letting the emulated CPU decompress a bzImage
    initramfs.cpio.gz   busybox (`busybox-static`) and the modules for virtio-pci, virtio-blk,
                        ext4, 9p over virtio and overlay; its /init loads them, mounts the root
                        filesystem and the shares, then hands over to
                        tests/cgroup_v2/guest/init.py from the checkout
    rootfs.ext4         `debootstrap --variant=minbase bookworm` with python3, nodejs,
                        libseccomp2 and uidmap, the Python packages of requirements.lock (and
                        pytest's from requirements-dev.lock) installed with --require-hashes,
                        as an ext4 image made with `mke2fs -d` (opened with snapshot=on: the
                        image is never written)

Cache: CACHE_ROOT/<key>/, the key a hash of this file, the locks and the guest's package list,
so a change to any of them builds a new set. A build holds CACHE_ROOT/.lock (concurrent test
sessions wait instead of building twice) and writes into a temporary directory renamed into
place when complete. Sets not used for a week are removed.
"""

from __future__ import annotations

import fcntl
import glob
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_ROOT = "/var/cache/sandboxd-test/cgroup-v2"
UNUSED_FOR_S = 7 * 24 * 3600  # cached sets older than this (by last use) are removed

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
KERNEL_META = "linux-image-amd64"
# What the engine needs in the guest (the Dockerfile's runtime packages, less the image-only
# ones): the interpreters, libseccomp for the workers' filter, newuidmap/newgidmap for the
# unprivileged (subuid) mode the container image uses.
GUEST_PACKAGES = ("python3", "nodejs", "libseccomp2", "uidmap", "tzdata", "ca-certificates")
# The test runner in the guest: pytest and its dependencies, exactly as requirements-dev.lock
# pins them (the rest of that lock, linters and type stubs, is not needed there).
GUEST_TEST_PACKAGES = ("pytest", "iniconfig", "packaging", "pluggy", "pygments")
# Modules the initramfs loads (their dependencies are added from each module's modinfo).
# ext4 asks the crypto API for crc32c at mount time (no modprobe in the initramfs to load it);
# overlay is what the jail mounts for a worker's environment layers. Loaded once, in the
# initramfs: the root filesystem has no modules.
INITRAMFS_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "9p",
    "9pnet_virtio",
    "overlay",
)
CHECKOUT_MOUNT = "/mnt/checkout"
RESULTS_MOUNT = "/mnt/results"
GUEST_INIT = f"{CHECKOUT_MOUNT}/tests/cgroup_v2/guest/init.py"

# The initramfs's /init (busybox sh): modules, the root filesystem (/dev/vda), the two 9p
# shares, loopback up, then the guest's real init from the checkout. Any failure powers the
# VM off at once with the reason on the console (the host then reports it).
INITRAMFS_INIT = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
fail() {{ echo "initramfs: $*"; echo o > /proc/sysrq-trigger; sleep 60; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.load); do insmod "/lib/modules/$m.ko" || fail "insmod $m"; done
n=0
while [ ! -b /dev/vda ]; do
    n=$((n + 1)); [ $n -gt 500 ] && fail "no /dev/vda"; usleep 10000
done
mount -t ext4 /dev/vda /newroot || fail "mount /dev/vda"
opts=trans=virtio,version=9p2000.L,msize=524288
mount -t 9p -o $opts,ro,cache=loose checkout /newroot{CHECKOUT_MOUNT} || fail "mount checkout"
mount -t 9p -o $opts results /newroot{RESULTS_MOUNT} || fail "mount results"
ip link set lo up || fail "lo up"
umount /sys /proc
mount --move /dev /newroot/dev || fail "move /dev"
exec switch_root /newroot /usr/bin/python3 -I {GUEST_INIT}
"""
SLIM_DPKG = (
    "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
    "path-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n"
    "path-exclude /usr/share/info/*\n"
)


@dataclass(frozen=True)
class Assets:
    directory: str
    kernel: str  # uncompressed ELF vmlinux
    initramfs: str
    rootfs: str  # ext4 image
    manifest: dict[str, str]  # what went in: kernel package and version, guest python, ...
    build_s: float  # 0 when the cached set was used


# --------------------------------------------------------------------------- the cache


def cache_key() -> str:
    digest = hashlib.sha256()
    with open(__file__, "rb") as f:
        digest.update(f.read())
    for lock in ("requirements.lock", "requirements-dev.lock"):
        with open(os.path.join(REPO, lock), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def ensure_assets(log: Iterable[str] | None = None) -> Assets:
    """The cached set for this key, built first if missing."""
    os.makedirs(CACHE_ROOT, exist_ok=True)
    key = cache_key()
    final = os.path.join(CACHE_ROOT, key)
    build_s = 0.0
    with _locked(os.path.join(CACHE_ROOT, ".lock")):
        if not os.path.isfile(os.path.join(final, "manifest.json")):
            start = time.monotonic()
            _build(final)
            build_s = time.monotonic() - start
        os.utime(final)  # last use, for the removal of unused sets
        _remove_unused(keep=key)
    with open(os.path.join(final, "manifest.json")) as f:
        manifest = json.load(f)
    return Assets(
        directory=final,
        kernel=os.path.join(final, "vmlinux"),
        initramfs=os.path.join(final, "initramfs.cpio.gz"),
        rootfs=os.path.join(final, "rootfs.ext4"),
        manifest=manifest,
        build_s=build_s,
    )


@contextmanager
def _locked(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_unused(keep: str) -> None:
    now = time.time()
    for entry in os.listdir(CACHE_ROOT):
        path = os.path.join(CACHE_ROOT, entry)
        if entry == keep or not os.path.isdir(path):
            continue
        if entry.startswith("build-") or now - os.path.getmtime(path) > UNUSED_FOR_S:
            shutil.rmtree(path, ignore_errors=True)


def _build(final: str) -> None:
    work = tempfile.mkdtemp(prefix="build-", dir=CACHE_ROOT)
    try:
        debs = os.path.join(work, "debs")
        os.mkdir(debs)
        kernel_package = _kernel_package()
        _apt_download(debs, (kernel_package, "busybox-static"))
        kernel_tree = _unpack(debs, kernel_package, os.path.join(work, "kernel"))
        busybox_tree = _unpack(debs, "busybox-static", os.path.join(work, "busybox"))
        release = _kernel_release(kernel_tree)
        _write_vmlinux(
            os.path.join(kernel_tree, "boot", f"vmlinuz-{release}"),
            os.path.join(work, "vmlinux"),
        )
        _write_initramfs(
            os.path.join(busybox_tree, "bin", "busybox"),
            os.path.join(kernel_tree, "lib", "modules", release),
            os.path.join(work, "initramfs.cpio.gz"),
        )
        root = os.path.join(work, "root")
        guest_python = _build_root(root)
        _write_ext4(root, os.path.join(work, "rootfs.ext4"))
        manifest = {
            "kernel_package": kernel_package,
            "kernel_version": _deb_version(debs, kernel_package),
            "kernel_release": release,
            "guest_python": guest_python,
            "guest_packages": " ".join(GUEST_PACKAGES),
            "suite": SUITE,
        }
        for sub in ("debs", "kernel", "busybox", "root"):
            shutil.rmtree(os.path.join(work, sub))
        with open(os.path.join(work, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- Debian packages


def _run(argv: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a build step; on failure raise with its output (the test shows it)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    return done


def _kernel_package() -> str:
    """The versioned kernel package linux-image-amd64 depends on (apt-get update if unknown)."""
    for attempt in range(2):
        done = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            name = line.strip().removeprefix("Depends:").strip()
            if line.strip().startswith("Depends:") and name.startswith("linux-image-"):
                return name
        if attempt == 0:
            _run(["apt-get", "update", "-q"])
    raise RuntimeError(f"apt knows no package {KERNEL_META} (is a Debian mirror configured?)")


def _apt_download(into: str, packages: Iterable[str]) -> None:
    _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *packages], cwd=into)


def _deb(debs: str, package: str) -> str:
    found = glob.glob(os.path.join(debs, f"{package}_*.deb"))
    if len(found) != 1:
        raise RuntimeError(f"expected one {package} .deb in {debs}, found {found}")
    return found[0]


def _deb_version(debs: str, package: str) -> str:
    return _run(["dpkg-deb", "-f", _deb(debs, package), "Version"]).stdout.strip()


def _unpack(debs: str, package: str, into: str) -> str:
    _run(["dpkg-deb", "-x", _deb(debs, package), into])
    return into


def _kernel_release(tree: str) -> str:
    releases = os.listdir(os.path.join(tree, "lib", "modules"))
    if len(releases) != 1:
        raise RuntimeError(f"expected one kernel release in the package, found {releases}")
    return releases[0]


# --------------------------------------------------------------------------- kernel


XZ_MAGIC = b"\xfd7zXZ\x00"


def _write_vmlinux(bzimage: str, out: str) -> None:
    """The ELF inside the bzImage: its payload is one xz stream (Debian: CONFIG_KERNEL_XZ)."""
    with open(bzimage, "rb") as f:
        data = f.read()
    start = data.find(XZ_MAGIC)
    while start >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(b"\x7fELF"):
            with open(out, "wb") as f:
                f.write(elf)
            return
        start = data.find(XZ_MAGIC, start + 1)
    raise RuntimeError(f"no xz-compressed ELF kernel found in {bzimage}")


# --------------------------------------------------------------------------- initramfs


def _write_initramfs(busybox: str, modules_dir: str, out: str) -> None:
    index = _module_index(modules_dir)
    order = _load_order(index, INITRAMFS_MODULES)
    archive = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"):
        archive.directory(d)
    archive.char_device("dev/console", 5, 1)
    with open(busybox, "rb") as f:
        archive.file("bin/busybox", f.read(), 0o755)
    archive.file("init", INITRAMFS_INIT.encode(), 0o755)
    archive.file("modules.load", "\n".join(order).encode() + b"\n", 0o644)
    for name in order:
        with open(index[name], "rb") as f:
            archive.file(f"lib/modules/{name}.ko", f.read(), 0o644)
    with gzip.open(out, "wb", compresslevel=6) as f:
        f.write(archive.finish())


def _module_index(modules_dir: str) -> dict[str, str]:
    """Module name (dashes as underscores) -> path of its .ko."""
    index = {}
    for d, _dirs, files in os.walk(modules_dir):
        for name in files:
            if name.endswith(".ko"):
                index[name[:-3].replace("-", "_")] = os.path.join(d, name)
    return index


def _load_order(index: dict[str, str], wanted: Iterable[str]) -> list[str]:
    """The wanted modules and their dependencies, each after what it depends on."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in order:
            return
        if name in path:
            raise RuntimeError(f"module dependency cycle: {' -> '.join((*path, name))}")
        if name not in index:
            raise RuntimeError(f"module {name} is not in the kernel package")
        for dep in _modinfo(index[name]).get("depends", "").split(","):
            if dep:
                visit(dep, (*path, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def _modinfo(ko: str) -> dict[str, str]:
    """The key=value strings of a module's .modinfo section (ELF64, little endian)."""
    with open(ko, "rb") as f:
        elf = f.read()
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize
        )
        return name, offset, size

    _, names_at, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if elf[names_at + name : elf.index(b"\0", names_at + name)] == b".modinfo":
            info = {}
            for item in elf[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, value)
            return info
    raise RuntimeError(f"{ko} has no .modinfo section")


class _Cpio:
    """A "newc" cpio archive, the initramfs format."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        raw = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0)
        self.out.write(b"070701" + b"".join(b"%08X" % v for v in fields) + raw)
        self._pad()
        self.out.write(data)
        self._pad()
        self.ino += 1

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int) -> None:
        self._entry(name, 0o100000 | mode, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


# --------------------------------------------------------------------------- root filesystem


def _build_root(root: str) -> str:
    """debootstrap, the locked Python packages, mount points. Returns the guest's python3 -V."""
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(GUEST_PACKAGES)}",
            SUITE,
            root,
            MIRROR,
        ]
    )
    version = _run(
        ["chroot", root, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    ).stdout.strip()
    site = os.path.join(root, "usr", "local", "lib", f"python{version}", "dist-packages")
    with tempfile.TemporaryDirectory() as tmp:
        test_lock = os.path.join(tmp, "guest-test.lock")
        with open(test_lock, "w") as f:
            f.write(_lock_subset(os.path.join(REPO, "requirements-dev.lock"), GUEST_TEST_PACKAGES))
        for lock in (os.path.join(REPO, "requirements.lock"), test_lock):
            # The host's pip (this interpreter's), into the guest's dist-packages: every
            # package in the locks is a wheel (pure Python, or cp311/abi3 manylinux), and the
            # guest is the same Debian release, so what the host resolves runs there.
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-cache-dir",
                    "--require-hashes",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--no-compile",
                    "--target",
                    site,
                    "-r",
                    lock,
                ]
            )
    shutil.rmtree(os.path.join(site, "bin"), ignore_errors=True)
    _run(["chroot", root, "python3", "-m", "compileall", "-q", site.removeprefix(root)])
    guest_python = _run(["chroot", root, "python3", "-V"]).stdout.strip()
    for mount_point in (CHECKOUT_MOUNT, RESULTS_MOUNT):
        os.makedirs(root + mount_point, exist_ok=True)
    with open(os.path.join(root, "etc", "hostname"), "w") as f:
        f.write("sandboxd-v2\n")
    with open(os.path.join(root, "etc", "dpkg", "dpkg.cfg.d", "slim"), "w") as f:
        f.write(SLIM_DPKG)
    for sub in ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        path = os.path.join(root, sub)
        for entry in os.listdir(path) if os.path.isdir(path) else ():
            target = os.path.join(path, entry)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
    return guest_python


def _lock_subset(lock: str, names: Iterable[str]) -> str:
    """The entries (pin and hashes) of `names` from a requirements lock."""
    with open(lock) as f:
        text = f.read()
    entries: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = line.split("==", 1)[0].strip().lower()
            entries[current] = line
        elif current and line.strip().startswith("--hash"):
            entries[current] += "\n" + line
        else:
            current = ""
    missing = [n for n in names if n not in entries]
    if missing:
        raise RuntimeError(f"{os.path.basename(lock)} pins no {', '.join(missing)}")
    return "\n".join(entries[n] for n in names) + "\n"


def _write_ext4(root: str, out: str) -> None:
    used = int(_run(["du", "-s", "--block-size=1", root]).stdout.split()[0])
    size_mib = (used * 5 // 4) // (1 << 20) + 256  # room for what the tests write
    _run(["mke2fs", "-q", "-t", "ext4", "-L", "sandboxd-v2", "-d", root, "-F", out, f"{size_mib}M"])
