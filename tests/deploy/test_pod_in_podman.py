"""The Deployment's pod security settings, run for real: the image under podman with every
setting of deploy/kubernetes/sandboxd-deployment.yaml that shapes the sandbox translated to
its podman flag, read from the parsed manifest (not restated here):

    hostUsers: false                      --uidmap/--gidmap 0:HOST:65536 (a pod user namespace)
    runAsUser/runAsGroup, fsGroup         --user UID:GID, --group-add FSGROUP
    procMount: Unmasked                   --security-opt systempaths=unconfined
    seccompProfile: Localhost             --security-opt seccomp=<`sandboxd seccomp-profile`>
    capabilities drop ALL, add S*ID       --cap-drop ALL --cap-add SETUID,SETGID
    allowPrivilegeEscalation: true        (no no-new-privileges)
    readOnlyRootFilesystem: true          --read-only
    the Secret                            the tenants file (0440); the image's own subordinate
                                          ids, which fit in the pod's user namespace
    env                                   -e for each, but SANDBOXD_REDIS_URL (no Redis here)

It must serve both runtimes, each worker as uid 1000 with no capability, and a hostile basic
(the tenants file) must stay out of reach. What it cannot show: the kubelet, Pod Security
admission, the ProcMountType feature gate (docs/operations.md "Kubernetes", what is not tested).
The image, its podman storage and the seccomp profile are tests/container's (same fixtures).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from container.conftest import free_port, health

# tests/container's fixtures (re-exported here so that pytest finds them): one image, one storage
from container.conftest import image as image
from container.conftest import podman as podman
from container.conftest import seccomp_profile as seccomp_profile
from container.podman import Built, Podman

from sandboxd.tenants import add_tenant
from sandboxd_client import Client, Verdict

from .manifests import kustomized, one

HOST_ID_BASE = 200_000  # the pod's user namespace maps its ids 0..65535 here on the host
POD_IDS = 65536
SERVING_TIMEOUT_S = 120.0
NOT_PASSED = {"SANDBOXD_REDIS_URL"}  # no Redis in this test; quotas are node-local


def translate(deployment: dict[str, Any], seccomp: str) -> list[str]:
    """The podman flags for the pod's security settings; fails on a setting it does not know."""
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc, psc = c["securityContext"], pod["securityContext"]
    flags: list[str] = []
    assert pod["hostUsers"] is False
    ids = f"0:{HOST_ID_BASE}:{POD_IDS}"
    flags += ["--uidmap", ids, "--gidmap", ids]
    flags += ["--user", f"{psc['runAsUser']}:{psc['runAsGroup']}"]
    flags += ["--group-add", str(psc["fsGroup"])]
    assert sc["procMount"] == "Unmasked"
    flags += ["--security-opt", "systempaths=unconfined"]
    assert sc["seccompProfile"]["type"] == "Localhost"
    flags += ["--security-opt", f"seccomp={seccomp}"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    flags += ["--cap-drop", "ALL", "--cap-add", ",".join(sc["capabilities"]["add"])]
    assert sc["allowPrivilegeEscalation"] is True and sc["privileged"] is False
    if sc["readOnlyRootFilesystem"]:
        flags.append("--read-only")
    for e in c["env"]:
        if e["name"] not in NOT_PASSED:
            flags += ["-e", f"{e['name']}={e['value']}"]
    return flags


@pytest.fixture(scope="module")
def pod(podman: Podman, image: Built, seccomp_profile: str) -> Iterator[tuple[str, str, str]]:
    """(container name, target, API key) of the image running with the pod's settings."""
    applied = kustomized()
    deployment = one(applied, "Deployment", "sandboxd")
    psc = deployment["spec"]["template"]["spec"]["securityContext"]
    group = HOST_ID_BASE + psc["fsGroup"]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    name = f"sandboxd-pod-{os.getpid()}"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sandboxd-pod-") as tmp:
        secret = os.path.join(tmp, "secret")
        os.mkdir(secret)
        tenants = os.path.join(secret, os.path.basename(env["SANDBOXD_TENANTS"]))
        key = add_tenant(tenants, "acme")
        os.chown(secret, HOST_ID_BASE, group)
        os.chmod(secret, 0o750)
        os.chown(tenants, HOST_ID_BASE, group)  # the Secret's files: root, fsGroup, 0440
        os.chmod(tenants, 0o440)
        mounts = ["-v", f"{secret}:{os.path.dirname(env['SANDBOXD_TENANTS'])}:ro"]
        podman.run(
            "run", "--detach", "--name", name, *translate(deployment, seccomp_profile),
            *mounts, "-p", f"127.0.0.1:{port}:50051", image.image,
        )  # fmt: skip
        try:
            target = f"127.0.0.1:{port}"
            deadline = time.monotonic() + SERVING_TIMEOUT_S
            while health(target) != "SERVING":
                if time.monotonic() > deadline:
                    logs = podman.run("logs", name, check=False)
                    pytest.fail(f"not SERVING in {SERVING_TIMEOUT_S} s:\n{logs.stderr[-3000:]}")
                time.sleep(0.2)
            yield name, target, key
        finally:
            podman.run("rm", "--force", "--time", "10", name, check=False)


def test_the_pod_serves_both_runtimes(pod: tuple[str, str, str]) -> None:
    _name, target, key = pod
    with Client(target, api_key=key) as c:
        py = c.execute("python", "print('hello', 6 * 7)")
        js = c.execute("javascript", "console.log('hello', 6 * 7)")
    assert (py.verdict, py.stdout) == (Verdict.OK, b"hello 42\n"), py
    assert (js.verdict, js.stdout) == (Verdict.OK, b"hello 42\n"), js


def test_the_pods_workers_are_the_sandbox_user_without_capabilities(
    pod: tuple[str, str, str],
) -> None:
    _name, target, key = pod
    code = (
        "import json, os\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines())\n"
        "print(json.dumps({'ids': [os.getuid(), os.geteuid(), os.getgid()],\n"
        "  'groups': os.getgroups(), 'CapEff': status['CapEff'], 'CapBnd': status['CapBnd'],\n"
        "  'NoNewPrivs': status['NoNewPrivs'], 'Seccomp': status['Seccomp']}))\n"
    )
    with Client(target, api_key=key) as c:
        r = c.execute("python", code)
    assert r.verdict is Verdict.OK, r
    assert json.loads(r.stdout) == {
        "ids": [1000, 1000, 1000],
        "groups": [],
        "CapEff": "0000000000000000",
        "CapBnd": "0000000000000000",
        "NoNewPrivs": "1",
        "Seccomp": "2",
    }


def test_the_tenants_file_is_out_of_the_workers_reach(pod: tuple[str, str, str]) -> None:
    _name, target, key = pod
    code = (
        "try:\n    open('/etc/sandboxd/tenants.toml').read()\n    print('READ')\n"
        "except OSError as e:\n    print(type(e).__name__)\n"
    )
    with Client(target, api_key=key) as c:
        r = c.execute("python", code)
    assert (r.verdict, r.stdout) == (Verdict.OK, b"FileNotFoundError\n"), r
