"""A container seccomp profile for the daemon: the runtime's own default, plus the jail.

Container runtimes wrap the daemon in an outer seccomp filter (podman's and CRI-O's
/usr/share/containers/seccomp.json, docker's and containerd's built-in default). Those defaults
allow some of what the jail does only to a container holding CAP_SYS_ADMIN, which a filter
checks against the container's capabilities, not the ones a worker holds inside its own user
namespace: podman's refuses `sethostname` (the workers' hostname `sandbox`), docker's also
`unshare`, `mount` and `clone` with namespace flags. `derive()` returns the base profile with
exactly the system calls the jail makes before its own filter (JAIL_SYSCALLS) allowed
unconditionally, and nothing else changed. Every worker still gets sandboxd's own, stricter
filter (sandboxd_pool._in_zygote.seccomp_policy) on top.

The profile format is the one podman, docker, CRI-O and the kubelet (`Localhost` profiles) read:
`{"defaultAction": ..., "syscalls": [{"names": [...], "action": ..., "args": [...],
"includes": {...}, "excludes": {...}}, ...]}`."""

from __future__ import annotations

import copy
import json
from typing import Any

# What the engine calls outside its own filter: making namespaces (clone, clone3 as glibc's
# posix_spawn and fork may use it, unshare), building the root (mount, umount2, pivot_root,
# fspick/fsconfig to resize a worker's tmpfs), the hostname, and loading the workers' filter.
JAIL_SYSCALLS = (
    "clone",
    "clone3",
    "unshare",
    "mount",
    "umount2",
    "pivot_root",
    "fspick",
    "fsconfig",
    "sethostname",
    "seccomp",
)
COMMENT = (
    "sandboxd: the base profile with the jail's system calls allowed without CAP_SYS_ADMIN "
    "(a worker holds its capabilities in its own user namespace); made by `sandboxd "
    "seccomp-profile`"
)


class ProfileError(ValueError):
    """The base is not a seccomp profile this tool understands."""


def derive(base: dict[str, Any]) -> dict[str, Any]:
    """`base` with every rule about a JAIL_SYSCALLS entry removed (so no conditional allow and
    no errno rule is left to conflict) and one unconditional allow rule for all of them."""
    if not isinstance(base, dict) or not isinstance(base.get("defaultAction"), str):
        raise ProfileError("not a seccomp profile: no string 'defaultAction' at the top level")
    rules = base.get("syscalls", [])
    if not isinstance(rules, list):
        raise ProfileError("not a seccomp profile: 'syscalls' is not a list")
    jail = set(JAIL_SYSCALLS)
    kept: list[dict[str, Any]] = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict) or not isinstance(rule.get("action"), str):
            raise ProfileError(f"syscalls[{index}] is not a rule with a string 'action'")
        names = _names(rule, index)
        others = [name for name in names if name not in jail]
        if len(others) == len(names):
            kept.append(copy.deepcopy(rule))
        elif others:
            trimmed = {k: copy.deepcopy(v) for k, v in rule.items() if k != "name"}
            trimmed["names"] = others
            kept.append(trimmed)
    kept.append({"names": list(JAIL_SYSCALLS), "action": "SCMP_ACT_ALLOW", "comment": COMMENT})
    profile = {k: copy.deepcopy(v) for k, v in base.items() if k != "syscalls"}
    profile["syscalls"] = kept
    return profile


def _names(rule: dict[str, Any], index: int) -> list[str]:
    if "names" in rule:
        names = rule["names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProfileError(f"syscalls[{index}].names is not a list of strings")
        return names
    if isinstance(rule.get("name"), str):  # the older single-name form
        return [rule["name"]]
    raise ProfileError(f"syscalls[{index}] names no system call")


def derive_file(base_path: str) -> str:
    """The derived profile of the JSON file at `base_path`, as JSON text."""
    try:
        with open(base_path, "rb") as f:
            base = json.load(f)
    except OSError as e:
        raise ProfileError(f"cannot read {base_path}: {e.strerror}") from e
    except ValueError as e:
        raise ProfileError(f"{base_path} is not JSON: {e}") from e
    return json.dumps(derive(base), indent=2) + "\n"
