"""The zygote: a small single-threaded root process that makes jailed workers and reaps them.

It is exec'd fresh by the pool (so it never inherits the pool's threads), compiles the seccomp
programs once, then loops over four kinds of event:

    requests from the pool     spawn a worker: clone into new namespaces, map its uid, put it
                               in its cgroup, release it; hand the pool its fds
                               (subuid mode: the map is written by newuidmap/newgidmap, run
                               without waiting and reaped like the workers)
    worker setup sockets       the child's seccomp listener fd arrives (or its setup error)
    seccomp listeners          a worker made a blocked syscall: record the name, kill it
    SIGCHLD                    reap: read wait status, rusage and cgroup facts, remove the
                               cgroup, report "exited" to the pool

EOF on the pool socket (the pool closed or died) kills and reaps every worker, then exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import marshal
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .. import zygote_protocol as proto
from ..jail import cgroups, mode, mounts, namespaces, seccomp
from ..jail.cgroups import CgroupSetup, WorkerCgroup
from ..jail.enter import TemplateRoot, boot_environment, enter_and_exec, layer_patches
from ..jail.fds import close_all_but
from ..jail.init import EXIT_PREFIX
from ..jail.policy import BOOT_MOUNT, SANDBOX_UID, JailPlan
from ..zygote_protocol import HANDED_NAMES
from .seccomp_policy import SeccompProgram, build_program


@dataclass
class Template:
    """A running Python template (see _in_worker/python_template.py)."""

    pid: int
    sock: socket.socket
    started_at: float  # monotonic seconds
    environment: str = ""
    forks: int = 0

    def kill(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)


@dataclass
class Child:
    pid: int
    runtime: str
    slot: int
    pidfd: int
    setup: socket.socket | None  # zygote end of the setup socket; None once closed
    cgroup: WorkerCgroup | None
    listener: int = -1
    blocked_syscall: str | None = None
    boot_error: str = ""
    spawn_id: int = 0
    reported_spawned: bool = False
    program_pid: int = 0  # host pid of the program, the child of the worker's init
    program_status: int | None = None  # its raw wait status, as the init reported it
    pool_fds: list[int] = field(default_factory=list)
    handed: tuple[str, ...] = ()  # the names of the init's descriptors at the end of pool_fds
    map_helpers: dict[int, int] = field(default_factory=dict)  # subuid: helper pid -> stderr fd


class Zygote:
    TEMPLATE_START_TIMEOUT_S = 20.0
    TEMPLATE_REPLY_TIMEOUT_S = 10.0

    def __init__(self, plan: JailPlan, pool: socket.socket) -> None:
        self.plan = plan
        self.pool = pool
        self.programs: dict[str, SeccompProgram] = {
            name: build_program(name, memory_cgroup=plan.cgroup_version != 0)
            for name in plan.runtimes
        }
        keys = [(name, "") for name in plan.runtimes]
        keys += [(e.runtime, name) for name, e in plan.environments.items()]
        self.patches = {(rt, env): layer_patches(plan.layers(rt, env)) for rt, env in keys}
        self.cgroups = (
            CgroupSetup(version=plan.cgroup_version, parents=plan.cgroup_parent)
            if plan.cgroup_version
            else None
        )
        # v2: a worker is created inside its cgroup (clone3 CLONE_INTO_CGROUP) if the kernel and
        # the seccomp policy around us allow it; else it moves itself in (cgroup.procs).
        self.clone_into_error = self.cgroups.probe_clone_into() if self.cgroups else "no cgroup"
        self.children: dict[int, Child] = {}
        self.map_helpers: dict[int, Child] = {}  # subuid mode: newuidmap/newgidmap pid -> child
        self.free_slots = list(range(plan.uid_slots - 1, -1, -1))
        self.seq = 0
        # Per environment ("" for the bare runtime): the Python template children fork from,
        # once started, and its replacement while that boots.
        self.templates: dict[str, Template] = {}
        self.next_templates: dict[str, Template] = {}
        self.removals: list[WorkerCgroup] = []
        self.running = True
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        swept = self.cgroups.sweep() if self.cgroups else []
        engine = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proto.send(
            self.pool,
            proto.Hello(
                pid=os.getpid(),
                swept=tuple(swept),
                engine=engine,
                clone_into_error=self.clone_into_error,
            ),
        )
        while self.running or self.children:
            self.poll_once()
        while self.removals:
            self.remove_one_cgroup()
        os._exit(0)

    def poll_once(self) -> None:
        poller = select.poll()
        if self.running:
            poller.register(self.pool.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        owners: dict[int, tuple[str, Child]] = {}
        booting = {t.sock.fileno(): env for env, t in self.next_templates.items()}
        for fd in booting:
            poller.register(fd, select.POLLIN)
        for child in self.children.values():
            if child.setup is not None:
                poller.register(child.setup.fileno(), select.POLLIN)
                owners[child.setup.fileno()] = ("setup", child)
            if child.listener >= 0:
                poller.register(child.listener, select.POLLIN)
                owners[child.listener] = ("listener", child)
        # Idle work (removing used cgroups, ~1-3 ms each) waits until nothing else is pending.
        timeout = None if self.running else 100
        events = poller.poll(0 if self.removals else timeout)
        if not events and self.removals:
            self.remove_one_cgroup()
            return
        # Exits first: a finished execution's report must not wait behind a spawn.
        if any(fd == self.wake_r for fd, _ in events):
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)
            self.reap()
        for fd, mask in sorted(events, key=lambda e: e[0] == self.pool.fileno()):
            if fd == self.pool.fileno():
                self.on_pool_message()
            elif fd in booting and booting[fd] in self.next_templates:
                self.on_next_template_ready(booting[fd])
            elif fd in owners:
                kind, child = owners[fd]
                if self.children.get(child.pid) is not child:
                    continue  # reaped above: its fds are closed (and the number may be reused)
                if kind == "setup" and child.setup is not None and child.setup.fileno() == fd:
                    self.on_setup_message(child)
                elif kind == "listener" and child.listener == fd:
                    self.on_notification(child, mask)
        self.reap()

    def remove_one_cgroup(self) -> None:
        cgroup = self.removals.pop()
        if not cgroup.remove():
            print(f"sandboxd zygote: cgroup {cgroup.paths} not removed", file=sys.stderr)

    # -- pool requests ----------------------------------------------------------------------

    def on_pool_message(self) -> None:
        got = proto.receive(self.pool)
        if got is None:
            self.shutdown()
            return
        message, fds = got
        for fd in fds:
            os.close(fd)
        if isinstance(message, proto.Spawn):
            try:
                self.spawn(message.id, message.runtime, message.environment)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                proto.send(self.pool, proto.SpawnFailed(id=message.id, error=error))
        elif isinstance(message, proto.Shutdown):
            self.shutdown()

    def shutdown(self) -> None:
        self.running = False
        self.stop_template()
        for child in self.children.values():
            self.kill(child)

    # -- spawning -----------------------------------------------------------------------------

    def spawn(self, spawn_id: int, runtime_name: str, env: str = "") -> None:
        if runtime_name not in self.plan.runtimes:
            raise RuntimeError(f"unknown runtime {runtime_name!r}")
        if env and env not in self.plan.environments:
            raise RuntimeError(f"unknown environment {env!r}")
        if not self.free_slots:
            raise RuntimeError("no free uid slot")
        slot = self.free_slots.pop()
        self.seq += 1
        cgroup = self.cgroups.worker(f"z{os.getpid()}-{self.seq}") if self.cgroups else None
        opened: list[int] = []
        try:
            if cgroup:
                try:
                    cgroup.create()
                except FileNotFoundError:
                    assert self.cgroups is not None
                    self.cgroups.ensure_parents()
                    cgroup.create()
                cgroup.set_limits(self.plan.boot_memory_bytes, self.plan.boot_pids)
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
            stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
            ctl_pool, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            setup_z, setup_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            exit_r, exit_w = os.pipe2(os.O_CLOEXEC)  # the init's report, to the pool
            opened = [stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w, exit_r, exit_w]
            into = cgroup.open_dir() if cgroup and not self.clone_into_error else -1
            entry_fds = cgroup.open_for_entry() if cgroup and into < 0 else []
            child_fds = (
                stdin_r,
                stdout_w,
                stderr_w,
                ctl_child.fileno(),
                setup_c.fileno(),
                exit_w,
            )
            try:
                if runtime_name == "python" and self.plan.python_template:
                    uid = self.plan.uid_base + slot
                    pid = self.template_spawn(env, uid, child_fds, entry_fds, into)
                else:
                    pid = self.exec_spawn(
                        runtime_name,
                        env,
                        self.plan.outside_ids(slot)[0],
                        child_fds,
                        entry_fds,
                        into,
                    )
            finally:
                for fd in (*entry_fds, into):
                    if fd >= 0:
                        os.close(fd)
            for fd in (stdin_r, stdout_w, stderr_w, exit_w):
                os.close(fd)
            ctl_child.close()
            setup_c.close()
            pidfd = os.pidfd_open(pid)
            child = Child(
                pid=pid,
                runtime=runtime_name,
                slot=slot,
                pidfd=pidfd,
                setup=setup_z,
                cgroup=cgroup,
                spawn_id=spawn_id,
                pool_fds=[stdin_w, stdout_r, stderr_r, ctl_pool.detach(), exit_r],
            )
            self.children[pid] = child
            setup_z.send(b"go")
        except BaseException:
            self.free_slots.append(slot)
            for fd in opened:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if cgroup and not any(c.cgroup is cgroup for c in self.children.values()):
                with contextlib.suppress(OSError):
                    cgroup.remove()
            raise

    def exec_spawn(
        self,
        runtime_name: str,
        env: str,
        uid: int,
        fds: tuple[int, ...],
        entry_fds: list[int],
        into: int,
    ) -> int:
        flags = (
            namespaces.SUBUID_WORKER_CLONE_FLAGS
            if self.plan.subuid
            else namespaces.WORKER_CLONE_FLAGS
        )
        if into >= 0:
            pid = cgroups.clone_into(flags, into)
        else:
            pid = namespaces.clone_into_namespaces(flags)
        if pid == 0:
            forget_zygote_signals()
            # Before it waits for "go", nothing of the zygote's: otherwise it would hold, until
            # its exec, the zygote's ends of its own setup socket and of the pool's socket, and
            # a zygote killed in that window left a child waiting for "go" forever (no EOF; its
            # parent-death signal not yet set) and a pool that never saw the zygote go.
            close_all_but((0, 1, 2, *fds, *entry_fds))
            enter_and_exec(
                self.plan,
                self.plan.runtimes[runtime_name],
                env,
                self.patches[runtime_name, env],
                self.programs[runtime_name].bpf,
                uid,
                tuple(entry_fds),
                (fds[0], fds[1], fds[2], fds[3]),
                fds[4],
                fds[5],
            )
            os._exit(127)  # not reached
        return pid

    # -- the Python template -------------------------------------------------------------------

    def template_spawn(
        self, env: str, uid: int, fds: tuple[int, ...], entry_fds: list[int], into: int
    ) -> int:
        """Fork a worker from the Python template of environment `env` ("" for the bare
        runtime), starting that template first if it is not running. `into` (>= 0): the
        worker cgroup's directory, which the template creates the worker in; else the worker
        moves itself in through `entry_fds`."""
        current = self.templates.get(env)
        if current is not None and self.template_worn_out(current):
            # Never more children than the bound: switch now, waiting for the replacement if
            # it is still booting (it was started a quarter of the way earlier).
            booting = self.next_templates.pop(env, None)
            self.stop_template(env)
            if booting is not None:
                with contextlib.suppress(RuntimeError):
                    self.templates[env] = self.finish_template_start(booting)
        if env not in self.templates:
            self.templates[env] = self.finish_template_start(self.start_template(env))
        template = self.templates[env]
        try:
            socket.send_fds(
                template.sock,
                [marshal.dumps({"uid": uid, "into": into >= 0})],
                [*fds, *(entry_fds if into < 0 else [into])],
            )
            reply = template.sock.recv(4096)
        except OSError as e:
            self.stop_template(env)
            raise RuntimeError(f"python template: {e}") from e
        if not reply:
            self.stop_template(env)
            raise RuntimeError("python template exited")
        answer = marshal.loads(reply)
        if "pid" not in answer:
            raise RuntimeError(f"python template could not fork: {answer.get('error')}")
        template.forks += 1
        self.maybe_recycle_template(env)
        return int(answer["pid"])

    def template_worn_out(self, template: Template) -> bool:
        """Every child of a template shares what the template held at its fork (the hash seed,
        the stack-canary seed, the address layout): a template has at most
        `template_max_forks` children and lives at most `template_max_age_s` seconds."""
        return (
            template.forks >= self.plan.template_max_forks
            or time.monotonic() - template.started_at >= self.plan.template_max_age_s
        )

    def maybe_recycle_template(self, env: str) -> None:
        """Start the replacement in the background three quarters of the way through the
        current template's life, so the switch seldom waits for it."""
        template = self.templates.get(env)
        if template is None or env in self.next_templates:
            return
        limit = self.plan.template_max_forks
        soon = template.forks >= limit - max(1, limit // 4)
        age_s = time.monotonic() - template.started_at
        if soon or age_s >= self.plan.template_max_age_s * 0.75:
            try:
                self.next_templates[env] = self.start_template(env)
            except Exception as e:
                print(f"sandboxd zygote: replacing the python template: {e}", file=sys.stderr)

    def on_next_template_ready(self, env: str) -> None:
        booting = self.next_templates.pop(env)
        try:
            ready = self.finish_template_start(booting)
        except RuntimeError as e:
            print(f"sandboxd zygote: {e}; keeping the current template", file=sys.stderr)
            return
        self.stop_template(env)
        self.templates[env] = ready

    def start_template(self, env: str) -> Template:
        """Clone the template: real root in its own mount namespace holding the jail's root.
        Returns once its configuration is sent; finish_template_start waits for it."""
        runtime = self.plan.runtimes["python"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = namespaces.clone_into_namespaces(0)
        if pid == 0:
            forget_zygote_signals()
            report_fd = theirs.fileno()
            try:
                namespaces.set_parent_death_signal()
                namespaces.unshare(namespaces.CLONE_NEWNS)
                mounts.build_root(
                    layers=self.plan.layers("python", env),
                    masked_dirs=runtime.masked_dirs,
                    symlinks=self.plan.symlinks,
                    etc_files=self.plan.etc_files,
                    patches=self.patches["python", env],
                    stage="keep",
                )
                # The dynamic loader resolves $ORIGIN (a relocated interpreter's RUNPATH) by
                # reading /proc/self/exe. This proc (the host's PID namespace) is the trusted
                # template's own: each child detaches it with the template's whole tree.
                mounts.mount_fresh_proc("/proc")
                # A scratch of the template's own (an environment's preload may write caches:
                # matplotlib's font list); each child detaches it with the template's tree.
                mounts.mount(
                    "tmpfs", "/tmp", "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV, "size=64m"
                )
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(theirs.fileno(), 3)
                report_fd = 3
                os.closerange(4, 1 << 20)
                argv = [
                    runtime.argv[0],
                    "-I",
                    "-S",
                    "-B",
                    f"{BOOT_MOUNT}/python_template.py",
                ]
                runtime.exec(argv)
            except BaseException as e:
                with contextlib.suppress(OSError):
                    os.write(report_fd, f"{type(e).__name__}: {e}".encode())
            finally:
                os._exit(127)
        theirs.close()
        config = {
            "bpf": self.programs["python"].bpf,
            "rlimits": dataclasses.asdict(self.plan.rlimits),
            "scratch_bytes": self.plan.scratch_bytes,
            "cgroup_version": self.plan.cgroup_version,
            "root": TemplateRoot.of(
                self.plan, "python", env, frozenset(self.patches["python", env])
            ).to_marshal(),
            "environment": boot_environment(self.plan, env),
            "egress_proxy": self.plan.egress_proxy,
        }
        with contextlib.suppress(OSError):  # if it died, its reason is queued for us
            ours.send(marshal.dumps(config))
        return Template(pid=pid, sock=ours, started_at=time.monotonic(), environment=env)

    def finish_template_start(self, template: Template) -> Template:
        """Wait for the template's b"ready" (it is readable already when called from poll)."""
        template.sock.settimeout(self.TEMPLATE_START_TIMEOUT_S)
        try:
            reply = template.sock.recv(4096)
            if reply != b"ready":
                raise OSError(reply.decode(errors="replace") or "it exited before it was ready")
        except OSError as e:
            template.kill()
            raise RuntimeError(f"python template failed to start: {e}") from e
        template.sock.settimeout(self.TEMPLATE_REPLY_TIMEOUT_S)
        return template

    def stop_template(self, env: str | None = None) -> None:
        """Stop the templates of `env` (the running one and its replacement); all if None."""
        for templates in (self.templates, self.next_templates):
            for key in [k for k in templates if env is None or k == env]:
                templates.pop(key).kill()

    def on_setup_message(self, child: Child) -> None:
        assert child.setup is not None
        try:
            data, fds, _, _ = socket.recv_fds(child.setup, 4096, 1 + len(HANDED_NAMES))
        except OSError:
            data, fds = b"", []
        if data == b"map":
            uid, gid = self.plan.outside_ids(child.slot)
            try:
                if self.plan.subuid:
                    helpers = namespaces.start_id_map_helpers(
                        child.pid, SANDBOX_UID, uid, gid, (mode.NEWUIDMAP, mode.NEWGIDMAP)
                    )
                    for helper, stderr in helpers:
                        child.map_helpers[helper] = stderr
                        self.map_helpers[helper] = child
                else:
                    namespaces.write_id_maps(child.pid, SANDBOX_UID, uid)
                    child.setup.send(b"mapped")
            except OSError as e:
                child.boot_error = f"writing the uid map: {e}"
                self.kill(child)
            return
        words = data.split()
        if words[:1] == [b"ok"] and fds and len(fds) == len(words):
            child.listener = fds[0]
            # For the pool, named: the egress proxy's socket, the scratch fs context (subuid).
            child.pool_fds += fds[1:]
            child.handed = tuple(w.decode() for w in words[1:])
            child.program_pid = program_of(child.pid)
            self.report_spawned(child)
            return
        for fd in fds:
            os.close(fd)
        if data.startswith(EXIT_PREFIX):
            child.program_status = int(data[len(EXIT_PREFIX) :])
            return
        if data:
            child.boot_error = data.decode(errors="replace").removeprefix("err ")
        # EOF: exec happened (setup socket is close-on-exec) or the child died.
        child.setup.close()
        child.setup = None
        if not child.reported_spawned:
            self.report_spawned(child)

    def report_spawned(self, child: Child) -> None:
        child.reported_spawned = True
        message = proto.Spawned(
            id=child.spawn_id,
            pid=child.pid,
            slot=child.slot,
            runtime=child.runtime,
            cgroup=dict(child.cgroup.paths) if child.cgroup else {},
            program_pid=child.program_pid,
            handed=child.handed,
        )
        fds = [child.pidfd, *child.pool_fds]
        self.tell_pool(message, fds)
        for fd in child.pool_fds:
            os.close(fd)
        child.pool_fds = []

    # -- seccomp ----------------------------------------------------------------------------

    def on_notification(self, child: Child, mask: int) -> None:
        if mask & (select.POLLHUP | select.POLLERR):
            os.close(child.listener)
            child.listener = -1
            return
        notification = seccomp.receive_notification(child.listener)
        if notification is None:
            return
        if child.blocked_syscall is None:
            names = self.programs[child.runtime].notify_names
            child.blocked_syscall = names.get(notification.nr, f"syscall_{notification.nr}")
        self.kill(child)

    # -- reaping ----------------------------------------------------------------------------

    def kill(self, child: Child) -> None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.map_helpers:
                self.on_map_helper_exit(self.map_helpers.pop(pid), pid, status)
                continue
            dead = next((t for t in self.templates.values() if t.pid == pid), None)
            if dead is not None:
                print(f"sandboxd zygote: python template exited ({status})", file=sys.stderr)
                self.stop_template(dead.environment)
                continue
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self.finish(child, status, rusage)

    def on_map_helper_exit(self, child: Child, helper: int, status: int) -> None:
        """Subuid mode: newuidmap or newgidmap is done. Both succeeded: release the child."""
        stderr = child.map_helpers.pop(helper, -1)
        if stderr < 0:
            return  # the child was reaped first: its fds are closed
        try:
            said = os.read(stderr, 4096).decode(errors="replace").strip()
        except OSError:
            said = ""
        finally:
            os.close(stderr)
        if self.children.get(child.pid) is not child:
            return
        if os.waitstatus_to_exitcode(status) != 0:
            if not child.boot_error:
                name = "newuidmap/newgidmap"
                child.boot_error = f"{name} failed ({os.waitstatus_to_exitcode(status)}): {said}"
            self.kill(child)
        elif not child.map_helpers and not child.boot_error and child.setup is not None:
            try:
                child.setup.send(b"mapped")
            except OSError:
                self.kill(child)

    def finish(self, child: Child, status: int, rusage: Any) -> None:
        facts = None
        if child.cgroup:
            child.cgroup.kill_all()
            facts = child.cgroup.facts(largest_process_bytes=rusage.ru_maxrss * 1024)
        if child.setup is not None:
            child.setup.setblocking(False)
            with contextlib.suppress(OSError):
                data = child.setup.recv(4096)
                if data.startswith(EXIT_PREFIX):
                    child.program_status = int(data[len(EXIT_PREFIX) :])
                elif data.startswith(b"err ") and not child.boot_error:
                    child.boot_error = data[4:].decode(errors="replace")
            child.setup.close()
        for helper, stderr in child.map_helpers.items():
            self.map_helpers.pop(helper, None)  # reaped later as a stranger
            os.close(stderr)
        child.map_helpers.clear()
        for fd in (child.listener, child.pidfd, *child.pool_fds):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.running:
            self.tell_pool(
                proto.Exited(
                    pid=child.pid,
                    status=status if child.program_status is None else child.program_status,
                    init_lost=child.program_status is None
                    and child.reported_spawned
                    and os.WIFEXITED(status),
                    rusage=proto.Rusage(
                        utime_us=int(rusage.ru_utime * 1e6),
                        stime_us=int(rusage.ru_stime * 1e6),
                        maxrss_kb=rusage.ru_maxrss,
                    ),
                    facts=facts,
                    blocked_syscall=child.blocked_syscall,
                    boot_error=child.boot_error,
                    reported_spawned=child.reported_spawned,
                    spawn_id=child.spawn_id,
                )
            )
        # The PID namespace is gone, so the uid slot is free and the cgroup empty; the cgroup
        # is removed when the zygote is idle (or at exit), off the executions' path.
        if child.cgroup:
            self.removals.append(child.cgroup)
        self.free_slots.append(child.slot)

    def tell_pool(self, message: proto.Message, fds: list[int] | None = None) -> None:
        """Send to the pool; if it is gone, stop (the EOF handler kills what is left)."""
        try:
            proto.send(self.pool, message, fds)
        except OSError:
            self.shutdown()


def forget_zygote_signals() -> None:
    """In a process cloned from the zygote: drop the zygote's signal handling. Its handlers
    would write each signal's number to the zygote's wake-up fd, whose number the child reuses
    for its own descriptors (a SIGCHLD from the worker's program once wrote b"\\x11" on the
    worker's setup socket)."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def program_of(init_pid: int) -> int:
    """The host pid of a worker's program: its init's only child when the init reports ready."""
    try:
        with open(f"/proc/{init_pid}/task/{init_pid}/children") as f:
            children = f.read().split()
    except OSError:
        return 0
    return int(children[0]) if len(children) == 1 else 0


def main() -> None:
    plan = JailPlan.from_json(sys.stdin.read())
    pool = socket.socket(fileno=int(sys.argv[1]))  # the pool's end: the fd number is argv[1]
    pool.set_inheritable(False)  # never handed to the helpers the zygote runs (newuidmap)
    started = time.monotonic()
    zygote = Zygote(plan, pool)
    print(
        f"sandboxd zygote {os.getpid()}: ready in {(time.monotonic() - started) * 1000:.0f} ms",
        file=sys.stderr,
    )
    zygote.run()
