"""deploy/kubernetes parsed and cross-checked: kinds, selectors against labels, ports between
the image, the Deployment, the Service, the probes and the settings, the security context
docs/operations.md documents, and the settings the Deployment passes as the daemon would read them.
Nothing here talks to a cluster (there is none); test_metric_names.py checks the metrics
against a live daemon, test_pod_in_podman.py runs the pod's security context under podman."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from sandboxd import settings
from sandboxd.tenants import add_tenant
from sandboxd_pool import PoolConfig
from sandboxd_pool.jail.mode import MAX_SLOTS, read_subid_range
from sandboxd_pool.jail.mode import resolve as resolve_jail_mode

from .manifests import (
    KUBERNETES,
    REPO,
    Manifest,
    adapter_rules,
    kustomization,
    kustomized,
    load_documents,
    objects,
    one,
    yaml_files,
)

API_VERSIONS = {
    "Service": "v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
}
# A `hostUsers: false` pod has container ids 0..65535 (the kubelet's default per pod).
POD_USERNS_IDS = 65536
NOBODY = 65534


@pytest.fixture(scope="module")
def applied() -> list[Manifest]:
    return kustomized()


@pytest.fixture(scope="module")
def deployment(applied: list[Manifest]) -> dict[str, Any]:
    return one(applied, "Deployment", "sandboxd")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["name"] == "sandboxd"
    return dict(c)


@pytest.fixture(scope="module")
def env(container: dict[str, Any]) -> dict[str, str]:
    pairs = {e["name"]: e["value"] for e in container["env"]}
    assert len(pairs) == len(container["env"]), "an environment variable is set twice"
    return pairs


def container_ports(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def dockerfile() -> str:
    with open(os.path.join(REPO, "Dockerfile")) as f:
        return f.read()


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) for every mapping entry, recursively."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def pod_templates(manifests: list[Manifest]) -> list[tuple[Manifest, dict[str, Any]]]:
    return [
        (m, m.obj["spec"]["template"]) for m in manifests if m.kind in ("Deployment", "StatefulSet")
    ]


# --------------------------------------------------------------------------- parsing, kinds


def test_every_file_parses_into_known_objects() -> None:
    found = objects()
    assert {m.kind for m in found} == set(API_VERSIONS)
    for m in found:
        assert m.obj["apiVersion"] == API_VERSIONS[m.kind], (m.path, m.kind)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", m.name), (m.path, m.name)
        assert m.obj["metadata"]["labels"]["app.kubernetes.io/name"] == "sandboxd", m.path
    names = [(m.kind, m.name) for m in found]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


def test_kustomization_lists_every_manifest_of_its_directory() -> None:
    listed = kustomization()["resources"]
    here = sorted(
        os.path.relpath(p, KUBERNETES)
        for p in yaml_files()
        if os.path.dirname(p) == KUBERNETES and not p.endswith("kustomization.yaml")
    )
    assert sorted(listed) == here
    # the monitoring stack's pieces live in its namespace and need its CRDs: not applied
    assert not [r for r in listed if r.startswith("monitoring")]
    (image,) = kustomization()["images"]
    deployment = one(kustomized(), "Deployment", "sandboxd")
    assert image["name"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]


# --------------------------------------------------------------------------- selectors


def test_workload_selectors_match_their_pod_labels(applied: list[Manifest]) -> None:
    for m, template in pod_templates(applied):
        selector = m.obj["spec"]["selector"]["matchLabels"]
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items(), m.name
    statefulset = one(applied, "StatefulSet", "sandboxd-redis")
    assert one(applied, "Service", statefulset["spec"]["serviceName"])


def test_each_service_selects_exactly_one_workload(applied: list[Manifest]) -> None:
    for service in (m for m in applied if m.kind == "Service"):
        selector = service.obj["spec"]["selector"]
        chosen = [
            m.name
            for m, template in pod_templates(applied)
            if selector.items() <= template["metadata"]["labels"].items()
        ]
        assert len(chosen) == 1, (service.name, chosen)


def test_pdb_topology_spread_and_network_policy_select_the_right_pods(
    applied: list[Manifest], deployment: dict[str, Any]
) -> None:
    server = deployment["spec"]["template"]["metadata"]["labels"]
    redis = one(applied, "StatefulSet", "sandboxd-redis")["spec"]["template"]["metadata"]["labels"]
    pdb = one(applied, "PodDisruptionBudget", "sandboxd")["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= server.items() and not pdb.items() <= redis.items()
    for spread in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        assert spread["labelSelector"]["matchLabels"].items() <= server.items()
    policy = one(applied, "NetworkPolicy", "sandboxd-redis")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis.items()
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= server.items()
    assert not source["podSelector"]["matchLabels"].items() <= redis.items()
    podmonitor = one(objects(), "PodMonitor", "sandboxd")["spec"]
    assert podmonitor["selector"]["matchLabels"].items() <= server.items()


def test_hpa_and_pdb_fit_the_deployment(
    applied: list[Manifest], deployment: dict[str, Any]
) -> None:
    hpa = one(applied, "HorizontalPodAutoscaler", "sandboxd")["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        "sandboxd",
    )
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pdb = one(applied, "PodDisruptionBudget", "sandboxd")["spec"]
    # a drain leaves at least one replica serving
    assert hpa["minReplicas"] - pdb["maxUnavailable"] >= 1
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    # the HPA's metric is one the adapter serves, per pod
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    served = {rule["name"]["as"] for rule in adapter_rules()}
    assert metric["pods"]["metric"]["name"] in served
    for rule in adapter_rules():
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


# --------------------------------------------------------------------------- ports


def test_ports_agree_between_image_deployment_service_probes_and_settings(
    applied: list[Manifest],
    deployment: dict[str, Any],
    container: dict[str, Any],
    env: dict[str, str],
) -> None:
    ports = container_ports(container)
    assert ports == {"grpc": 50051, "metrics": 9090}
    exposed = {
        int(p) for line in re.findall(r"^EXPOSE (.+)$", dockerfile(), re.M) for p in line.split()
    }
    assert exposed == set(ports.values())
    assert env["SANDBOXD_LISTEN"].rpartition(":")[2] == str(ports["grpc"])
    assert env["SANDBOXD_METRICS_PORT"] == str(ports["metrics"])
    assert env["SANDBOXD_METRICS_HOST"] == "0.0.0.0"  # reachable by Prometheus
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        # the kubelet's gRPC probe takes a number, not a port name
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
        assert container[probe]["grpc"].get("service", "") == "", probe  # overall health
    service = one(applied, "Service", "sandboxd")["spec"]
    by_name = {p["name"]: p for p in service["ports"]}
    assert set(by_name) == set(ports)
    for name, port in by_name.items():
        assert port["targetPort"] == name and port["port"] == ports[name]
    podmonitor = one(objects(), "PodMonitor", "sandboxd")["spec"]
    assert [e["port"] for e in podmonitor["podMetricsEndpoints"]] == ["metrics"]


def test_redis_url_names_the_redis_service(applied: list[Manifest], env: dict[str, str]) -> None:
    url = urlparse(env["SANDBOXD_REDIS_URL"])
    assert url.scheme == "redis"
    service = one(applied, "Service", str(url.hostname))
    (port,) = service["spec"]["ports"]
    assert url.port == port["port"]
    (redis,) = one(applied, "StatefulSet", "sandboxd-redis")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container_ports(redis)[port["targetPort"]] == port["port"]


# --------------------------------------------------------------------------- security


def test_nothing_is_privileged_or_shares_the_host(applied: list[Manifest]) -> None:
    for m in objects():
        for path, key, value in walk(m.obj):
            assert not (key == "privileged" and value is not False), (m.path, path)
            assert key not in ("hostNetwork", "hostPID", "hostIPC", "hostPath"), (m.path, path)
            assert key != "hostPort", (m.path, path)
    for m, template in pod_templates(applied):
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False, m.name
        # no SANDBOXD_* variables injected for Services named sandboxd-*
        assert spec["enableServiceLinks"] is False, m.name


@pytest.mark.parametrize("field", ["privileged", "allowPrivilegeEscalation", "capabilities"])
def test_every_container_states_its_security_context(applied: list[Manifest], field: str) -> None:
    for m, template in pod_templates(applied):
        for c in template["spec"]["containers"]:
            sc = c["securityContext"]
            assert field in sc, (m.name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (m.name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (m.name, c["name"])
            assert sc["runAsNonRoot"] is True, (m.name, c["name"])
            assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"]


def test_sandboxd_security_context_is_what_the_jail_needs(
    deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    sc = container["securityContext"]
    # procMount: Unmasked is only allowed (and only safe) in a pod with its own user namespace
    assert sc["procMount"] == "Unmasked"
    assert pod["hostUsers"] is False
    # no_new_privs would stop newuidmap/newgidmap from gaining their file capabilities
    assert sc["allowPrivilegeEscalation"] is True
    assert sc["privileged"] is False
    assert sorted(sc["capabilities"]["add"]) == ["SETGID", "SETUID"]
    # the outer filter: the runtime default plus the jail's calls (or lifted)
    assert sc["seccompProfile"]["type"] in ("Unconfined", "Localhost")
    # the image's user, with a group that can read the tenants Secret
    uid = int(re.search(r"^ARG SANDBOXD_UID=(\d+)$", dockerfile(), re.M).group(1))  # type: ignore[union-attr]
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_redis_asks_for_nothing(applied: list[Manifest]) -> None:
    spec = one(applied, "StatefulSet", "sandboxd-redis")["spec"]["template"]["spec"]
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = spec["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert "add" not in c["securityContext"]["capabilities"]


def test_the_tenants_secret_is_mounted_where_the_daemon_reads_it(
    deployment: dict[str, Any], container: dict[str, Any], env: dict[str, str]
) -> None:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    directory, _, filename = env["SANDBOXD_TENANTS"].rpartition("/")
    mount = mounts[directory]
    assert mount["readOnly"] is True and "subPath" not in mount
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "sandboxd-tenants"
    assert [item["path"] for item in secret["items"]] == [filename]
    # group-readable (fsGroup), not world-readable: it holds the key hashes
    assert secret["defaultMode"] == 0o440


def test_the_images_subordinate_ids_fit_a_pod_user_namespace(
    container: dict[str, Any], env: dict[str, str], deployment: dict[str, Any]
) -> None:
    """The image's own /etc/subuid and /etc/subgid (no override in the pod), read by the
    engine's parser and checked by its startup check against a `hostUsers: false` pod's id
    map: inside the pod's 65536 ids, clear of the daemon's uid and nobody, and holding every
    worker slot the Deployment's settings need."""
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert not mounted & {"/etc/subuid", "/etc/subgid"}, mounted
    uid = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    slots = PoolConfig(
        warm_workers_per_runtime=int(env["SANDBOXD_WARM_WORKERS"]),
        max_concurrent_executions=int(env["SANDBOXD_MAX_CONCURRENT"]),
    ).worker_slots_needed
    lines = {
        path: line
        for line, path in re.findall(r'echo "(sandboxd:\d+:\d+)" > (/etc/sub[ug]id)', dockerfile())
    }
    assert sorted(lines) == ["/etc/subgid", "/etc/subuid"], lines
    with tempfile.TemporaryDirectory(prefix="sandboxd-deploy-") as tmp:
        files = {}
        for path, line in lines.items():
            files[path] = os.path.join(tmp, os.path.basename(path))
            with open(files[path], "w") as f:
                f.write(line + "\n")
            found = read_subid_range(files[path], uid, "sandboxd")
            assert found is not None, path
            end = found.start + min(found.count, MAX_SLOTS)
            assert found.start > 0 and end <= POD_USERNS_IDS, (path, found)
            assert not found.start <= uid < end and not found.start <= NOBODY < end, (path, found)
        # the startup check, as this test's user (the same ranges, under its uid)
        pod_map = os.path.join(tmp, "id_map")
        with open(pod_map, "w") as f:
            f.write(f"         0     200000      {POD_USERNS_IDS}\n")
        for path, line in lines.items():
            with open(files[path], "w") as f:
                f.write(line.replace("sandboxd:", f"{os.getuid()}:", 1) + "\n")
        jail = resolve_jail_mode(
            "subuid",
            0,
            slots,
            subuid_file=files["/etc/subuid"],
            subgid_file=files["/etc/subgid"],
            helpers=("/bin/sh", "/bin/sh"),
            id_maps=(pod_map, pod_map),
        )
        assert jail.slots >= slots


def test_termination_grace_covers_the_prestop_and_the_drain(
    deployment: dict[str, Any], container: dict[str, Any], env: dict[str, str]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(env["SANDBOXD_DRAIN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    # liveness must not kill a pod that is draining (NOT_SERVING) within its grace
    live = container["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] > drain


# --------------------------------------------------------------------------- settings


def test_every_sandboxd_variable_is_a_setting_and_valid(env: dict[str, str]) -> None:
    """The Deployment's environment through the daemon's own settings code (the tenants file,
    a Secret in the pod, replaced by a real file: the settings check that it exists)."""
    known = set(
        re.findall(
            r"\[env (SANDBOXD_\w+)",
            subprocess.run(
                [sys.executable, "-m", "sandboxd", "serve", "--help"],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "COLUMNS": "1000"},
            ).stdout,
        )
    )
    assert set(env) <= known, set(env) - known
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    with tempfile.TemporaryDirectory(prefix="sandboxd-deploy-") as tmp:
        tenants = os.path.join(tmp, "tenants.toml")
        add_tenant(tenants, "acme")
        values = settings.from_args(parser.parse_args([]), {**env, "SANDBOXD_TENANTS": tenants})
    assert values.listen == "0.0.0.0:50051"
    assert values.metrics_port == 9090
    assert values.jail_mode == "subuid"
    assert values.redis_url == env["SANDBOXD_REDIS_URL"]


# --------------------------------------------------------------------------- redis


def test_redis_server_accepts_the_statefulset_arguments() -> None:
    """A real redis-server (Debian's; the image pins redis:7.2) started with the StatefulSet's
    arguments, on a unix socket in a temp dir instead of the volume: it runs, and the
    durability settings are in effect."""
    (doc,) = [
        d
        for d in load_documents(os.path.join(KUBERNETES, "redis.yaml"))
        if d["kind"] == "StatefulSet"
    ]
    args = list(doc["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args[0] == "redis-server"
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is missing: make system-deps installs it"
    with tempfile.TemporaryDirectory(prefix="sandboxd-redis-") as tmp:
        args[args.index("--dir") + 1] = tmp
        sock = os.path.join(tmp, "redis.sock")
        proc = subprocess.Popen(
            [server, *args[1:], "--port", "0", "--unixsocket", sock, "--daemonize", "no"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            got = {}
            for key in ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory"):
                got[key] = _redis_cli(sock, proc, "CONFIG", "GET", key).split("\n")[1]
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert got == {
        "appendonly": "yes",
        "appendfsync": "always",
        "maxmemory-policy": "noeviction",
        "maxmemory": str(1024**3),
    }


def _redis_cli(sock: str, proc: subprocess.Popen[bytes], *command: str) -> str:
    """Run a command once the server answers on `sock` (it is starting)."""
    for _ in range(200):
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"redis-server exited {proc.returncode}: {out[-2000:]}")
        if os.path.exists(sock):
            done = subprocess.run(
                ["redis-cli", "-s", sock, *command], capture_output=True, text=True, timeout=10
            )
            if done.returncode == 0 and not done.stdout.startswith("LOADING"):
                return done.stdout.strip()
        time.sleep(0.05)
    raise AssertionError("redis-server never answered on its socket")
