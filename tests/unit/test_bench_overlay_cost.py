"""bench/pool/overlay_cost.py: which mount holds a layer (the "one overlay" variant needs every
layer in the root mount, which a non-recursive bind of / shows)."""

from __future__ import annotations

from pathlib import Path

from bench.pool.overlay_cost import mount_point_of

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 254:0 /srv/python /opt/py rw,relatime shared:1 - ext4 /dev/vda rw
41 22 0:30 / /usr/local rw - tmpfs tmpfs rw
42 22 0:31 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def test_the_longest_mount_point_that_holds_the_path(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert mount_point_of("/usr/lib", str(info)) == "/"
    assert mount_point_of("/usr/local/lib", str(info)) == "/usr/local"
    assert mount_point_of("/usr/local", str(info)) == "/usr/local"
    # a bind of the root filesystem's own directory is a mount of its own all the same
    assert mount_point_of("/opt/py/bin", str(info)) == "/opt/py"
    # a name that merely starts like a mount point is not under it
    assert mount_point_of("/usr/localized", str(info)) == "/"
    assert mount_point_of("/mnt/with space/x", str(info)) == "/mnt/with space"
