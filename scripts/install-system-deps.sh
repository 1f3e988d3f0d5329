#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need, only if they are missing.
# Idempotent and quick when everything is present (no apt-get call at all then).
#
#   node              the JavaScript runtime the pool runs (Debian package `nodejs`)
#   npm               installs the e2e Node.js client's dependencies (tests/e2e/node_client)
#   libseccomp.so.2   loaded by pyseccomp (ctypes) to build the seccomp filter
#   newuidmap         setuid helpers newuidmap/newgidmap (package `uidmap`): the pool's subuid
#                     jail mode (a non-root daemon); tests/pool/test_subuid_mode.py runs it
#   redis-server      tests/cluster and `python -m bench cluster` start their own on a free
#                     port (package `redis-server`; its system service is not used)
#   qemu-system-x86_64, debootstrap, mke2fs
#                     tests/cgroup_v2 boots a cgroup v2 VM (qemu, TCG) on Debian's kernel and a
#                     debootstrap root filesystem made into an ext4 image (packages
#                     `qemu-system-x86`, `debootstrap`, `e2fsprogs`)
set -euo pipefail

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v mke2fs >/dev/null 2>&1 || missing+=(e2fsprogs)
{ [ -x /usr/bin/newuidmap ] && [ -x /usr/bin/newgidmap ]; } || missing+=(uidmap)
if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2 '; then
    missing+=(libseccomp2)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-system-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
else
    echo "install-system-deps: need root (or sudo) to apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
