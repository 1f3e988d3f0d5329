"""The Python template: a warm `python -I -S` living in the jail's read-only root, that forks
Python workers on the zygote's request, so no worker pays for an interpreter start.

Started by the zygote (real root, in its own mount namespace whose root is the jail's, in no
other namespace) as `python -I -S -B /opt/sandboxd/python_template.py`, with fd 3 a
SOCK_SEQPACKET socket to the zygote. It never runs user code and never sees a request: each
child it clones (CLONE_NEWPID | CLONE_PARENT: PID 1 of its own namespace, child of the zygote)
confines itself (jail/enter.py: enter_forked) and only then reads its one request.

zygote -> template: first a config message {bpf, rlimits, scratch_bytes, cgroup_version, root,
environment, egress_proxy},
then {uid, into} + fds [stdin, stdout, stderr, control, setup, exit pipe, cgroup fds...] per
worker: with `into`, one fd, the worker cgroup's directory, which the child is created in
(CLONE_INTO_CGROUP); else the entry fds through which the child moves itself in.
template -> zygote: b"ready" once warm, then {pid} or {error} per worker.
"""

from __future__ import annotations

import marshal
import os
import socket
import sys

sys.path[0:0] = ["/opt/sandboxd", "/opt/sandboxd-lib"]

MYPY = False
if MYPY:  # the type checker sees the package; the jail sees these dirs on sys.path
    from sandboxd_pool._in_worker import python_boot
    from sandboxd_pool.jail import cgroups, enter, namespaces
    from sandboxd_pool.jail.enter import TemplateRoot
    from sandboxd_pool.jail.policy import RlimitPlan
else:
    import python_boot
    from jail import cgroups, enter, namespaces
    from jail.enter import TemplateRoot
    from jail.policy import RlimitPlan

ZYGOTE_FD = 3


def main() -> None:
    zygote = socket.socket(fileno=ZYGOTE_FD)
    config = marshal.loads(zygote.recv(1 << 20))
    # Imports that workers would otherwise each pay for, done once here.
    bpf = config["bpf"]
    rlimits_plan = RlimitPlan(**config["rlimits"])
    root = TemplateRoot.from_marshal(config["root"])
    try:
        python_boot.load_environment(config["environment"])
    except BaseException as e:  # the zygote reports it as the reason the template failed
        zygote.send(f"{type(e).__name__}: {e}".encode()[:4000])
        os._exit(1)
    python_boot._warm_up()
    zygote.send(b"ready")
    while True:
        data, fds, _flags, _addr = socket.recv_fds(zygote, 1 << 16, 16)
        if not data:
            os._exit(0)
        request = marshal.loads(data)
        stdin, stdout, stderr, control, setup, exit_pipe, *cgroup_fds = fds
        flags = namespaces.CLONE_PARENT | namespaces.CLONE_NEWPID
        try:
            if request.get("into"):
                pid = cgroups.clone_into(flags, cgroup_fds[0])
                cgroup_fds = []  # the child starts in its cgroup: nothing to enter
            else:
                pid = namespaces.clone_into_namespaces(flags)
        except OSError as e:
            for fd in fds:
                os.close(fd)
            zygote.send(marshal.dumps({"error": str(e)}))
            continue
        if pid == 0:
            zygote.detach()  # fd 3 becomes the worker's control socket below
            enter.enter_forked(
                root,
                config["scratch_bytes"],
                rlimits_plan,
                bpf,
                request["uid"],
                tuple(cgroup_fds),
                (stdin, stdout, stderr, control),
                setup,
                exit_pipe,
                config["egress_proxy"],
            )
            python_boot.serve_one_request()
        for fd in fds:
            os.close(fd)
        zygote.send(marshal.dumps({"pid": pid}))


if __name__ == "__main__":
    main()
