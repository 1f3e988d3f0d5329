"""`sandboxd seccomp-profile`: print the container seccomp profile the daemon needs.

The logic is in sandboxd.container_seccomp; see docs/operations.md "Running in a container"."""

from __future__ import annotations

import argparse
import os
import sys

from ..container_seccomp import JAIL_SYSCALLS, ProfileError, derive_file
from .parser import Subparsers

__all__ = ["register"]

PODMAN_DEFAULT = "/usr/share/containers/seccomp.json"


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "seccomp-profile",
        help="print a container seccomp profile: your runtime's default plus the jail",
        description="Read the container runtime's default seccomp profile and print it with "
        f"exactly these system calls allowed unconditionally: {', '.join(JAIL_SYSCALLS)} "
        "(the defaults allow some only to containers holding CAP_SYS_ADMIN). Run the "
        "container with `--security-opt seccomp=FILE` (podman, docker) or install it as a "
        "Kubernetes `Localhost` profile. Exit 2 if the base cannot be read.",
    )
    parser.add_argument(
        "--base",
        default=PODMAN_DEFAULT,
        help=f"the runtime's default profile (default {PODMAN_DEFAULT}, podman's and "
        "CRI-O's; docker's and containerd's is moby's profiles/seccomp/default.json)",
    )
    parser.add_argument("--output", "-o", help="write here instead of standard output")
    parser.set_defaults(handler=_seccomp_profile)


def _seccomp_profile(args: argparse.Namespace) -> int:
    try:
        text = derive_file(args.base)
    except ProfileError as e:
        print(f"sandboxd seccomp-profile: error: {e}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    tmp = f"{args.output}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.output)
    return 0
