"""Hostile programs against the resource limits (SECURITY.md, "Threat model": no execution exceeds its limits by
more than the stated slack; it cannot exhaust CPU, memory, pids, disk or output, nor outlive its
execution; the daemon survives anything the code does).

Every program runs under a wall-clock limit so none can hang the suite, and after every test the
pool must still serve a hello in both runtimes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from helpers import SANDBOX_PIDS, run
from hostile_programs import FORK_LIMITS, PY_FORK_BOMB

from sandboxd_pool import Limits, Outcome, Pool, Runtime, Verdict

# ---------------------------------------------------------------------------- stated slack
# The promise (docs/api.md "Verdicts", "Limits and their slack"): past its limit, an execution runs
# at most this much more, plus the delay with which the host schedules the supervisor.
CPU_SLACK_US = 300_000  # CPU time may pass cpu_time_ms by this much before the kill lands
WALL_SLACK_US = 250_000  # wall time may pass wall_time_ms by this much before the kill lands
CPU_QUOTA_SLACK_US = 150_000  # one or two 100 ms CFS periods of burst over the core quota
# Between a limit and its kill, two steps wait for the host's scheduler (the supervisor noticing,
# the zygote reaping): each may be as late as the worst wake-up the sampler saw meanwhile.
SCHEDULING_STEPS = 2
# -----------------------------------------------------------------------------------------


class SchedulingNoise:
    """How late this host wakes a sleeping thread of this process (the pool's supervisor
    threads live here too), measured while an execution runs: 1 ms sleeps, the worst overshoot.
    On an idle machine a fraction of a millisecond; on a loaded one what the load costs."""

    TICK_S = 0.001

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> SchedulingNoise:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            time.sleep(self.TICK_S)
            self.worst_s = max(self.worst_s, time.monotonic() - start - self.TICK_S)

    def wall_margin_us(self) -> int:
        return int(SCHEDULING_STEPS * self.worst_s * 1e6)

    def cpu_margin_us(self) -> int:
        # meanwhile the program may burn every core
        return self.wall_margin_us() * (os.cpu_count() or 1)


MiB = 1024 * 1024
RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)
HELLO = {Runtime.PYTHON: "print('hello')", Runtime.JAVASCRIPT: "console.log('hello')"}


@pytest.fixture(autouse=True)
def pool_still_serves(pool: Pool) -> Iterator[None]:
    yield
    for runtime, code in HELLO.items():
        outcome = run(pool, runtime, code, limits=Limits(wall_time_ms=10_000))
        assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"hello\n"), (
            runtime,
            outcome,
        )


def _killed(outcome: Outcome, verdict: Verdict) -> None:
    assert outcome.verdict is verdict, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code is None
    assert outcome.signal == signal.SIGKILL


def _ok(outcome: Outcome) -> dict:
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code == 0
    return json.loads(outcome.stdout)


# ------------------------------------------------------------------------------- processes

JS_SPAWN_STORM = textwrap.dedent(
    """
    const fs = require('fs');
    const cp = require('child_process');
    const LIMIT = Number(process.argv[2]);
    function tasks() {
      let n = 0;
      for (const d of fs.readdirSync('/proc')) {
        if (!/^\\d+$/.test(d)) continue;
        try { n += fs.readdirSync(`/proc/${d}/task`).length; } catch (e) {}
      }
      return n;
    }
    let spawned = 0, failed = 0, peak = 0;
    const storm = setInterval(() => {
      for (let i = 0; i < 20; i++) {
        try {
          const c = cp.spawn('/usr/bin/sleep', ['30'], { stdio: 'ignore' });
          c.on('error', () => { failed++; });
          if (c.pid) spawned++;
        } catch (e) { failed++; }
      }
      const n = tasks();
      peak = Math.max(peak, n);
      if (n > LIMIT) console.log('OVER', n);
    }, 10);
    setTimeout(() => console.log(JSON.stringify({ spawned, failed, peak })), 1200);
    """
)


def test_python_fork_bomb(pool: Pool) -> None:
    with SchedulingNoise() as noise:
        outcome = run(pool, Runtime.PYTHON, PY_FORK_BOMB, args=("32",), limits=FORK_LIMITS)
    _killed(outcome, Verdict.TIMEOUT)
    assert b"OVER" not in outcome.stdout, outcome.stdout
    words = outcome.stdout.decode().split()
    assert words[0] == "peak" and words[2] == "failed", outcome.stdout
    peak, failed = int(words[1]), int(words[3])
    assert 16 <= peak <= 32  # the bomb filled the pids limit and never passed it
    assert failed > 0
    assert FORK_LIMITS.wall_time_ms * 1000 <= outcome.usage.wall_time_us
    allowed_us = FORK_LIMITS.wall_time_ms * 1000 + WALL_SLACK_US + noise.wall_margin_us()
    assert outcome.usage.wall_time_us <= allowed_us, (outcome.usage, noise.worst_s)


def test_javascript_spawn_storm(pool: Pool) -> None:
    outcome = run(pool, Runtime.JAVASCRIPT, JS_SPAWN_STORM, args=("32",), limits=FORK_LIMITS)
    _killed(outcome, Verdict.TIMEOUT)
    assert b"OVER" not in outcome.stdout, outcome.stdout
    seen = json.loads(outcome.stdout)
    assert seen["peak"] <= 32
    assert seen["spawned"] < 32
    assert seen["failed"] > 0


def test_python_thread_storm_is_bounded_by_the_pids_limit(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import json, threading, time
        gate = threading.Event()
        started, error = [], None
        for i in range(500):
            t = threading.Thread(target=gate.wait)
            try:
                t.start()
            except RuntimeError as e:
                error = str(e)
                break
            started.append(t)
        status = open("/proc/self/status").read()
        threads = int(status.split("Threads:")[1].split()[0])
        gate.set()
        for t in started:
            t.join()
        print(json.dumps({"started": len(started), "error": error, "threads": threads}))
        """
    )
    limits = Limits(max_processes=64, wall_time_ms=5_000)
    seen = _ok(run(pool, Runtime.PYTHON, code, limits=limits))
    assert seen["error"] == "can't start new thread"
    assert seen["threads"] <= 64
    assert 32 <= seen["started"] < 64


def test_javascript_worker_threads_storm_is_bounded_by_the_pids_limit(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        const fs = require('fs');
        const { Worker } = require('worker_threads');
        const threads = () => Number(fs.readFileSync('/proc/self/status', 'utf8').match(/Threads:\\s+(\\d+)/)[1]);
        let online = 0, failed = 0, peak = threads();
        const workers = [];
        for (let i = 0; i < 100; i++) {
          try {
            const w = new Worker('setTimeout(() => {}, 600)', { eval: true });
            w.on('online', () => { online++; peak = Math.max(peak, threads()); });
            w.on('error', () => { failed++; });
            workers.push(w);
          } catch (e) { failed++; }
        }
        setTimeout(() => {
          peak = Math.max(peak, threads());
          console.log(JSON.stringify({ online, failed, peak }));
          process.exit(0);
        }, 1000);
        """
    )
    limits = Limits(max_processes=24, memory_bytes=512 * MiB, wall_time_ms=5_000)
    seen = _ok(run(pool, Runtime.JAVASCRIPT, code, limits=limits))
    assert seen["peak"] <= 24
    assert seen["online"] < 24
    assert seen["failed"] > 0


# ---------------------------------------------------------------------------------- memory

MEMORY_LIMITS = Limits(memory_bytes=64 * MiB, wall_time_ms=5_000)
BALLOONS = {
    "py-bytearrays": (Runtime.PYTHON, "b = []\nwhile True: b.append(bytearray(16 << 20))"),
    "js-buffers": (Runtime.JAVASCRIPT, "const b = []; while (true) b.push(Buffer.alloc(16 << 20, 1));"),
    "js-heap": (Runtime.JAVASCRIPT, "const a = []; while (true) a.push(new Array(1e6).fill(1.5));"),
    "py-children": (
        Runtime.PYTHON,
        textwrap.dedent(
            """
            import os, time
            kids = []
            for i in range(4):  # four processes of 30 MiB each: the limit is the worker's, not one process's
                pid = os.fork()
                if pid == 0:
                    b = bytearray(30 << 20)
                    time.sleep(1)
                    os._exit(0)
                kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            """
        ),
    ),
    "py-dev-shm": (
        Runtime.PYTHON,
        textwrap.dedent(
            """
            with open("/dev/shm/balloon", "wb") as f:  # tmpfs pages count against memory too
                for i in range(200):
                    f.write(b"x" * (1 << 20))
                    f.flush()
            print("wrote 200 MiB")
            """
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("balloon", sorted(BALLOONS))
def test_memory_balloon(pool: Pool, balloon: str) -> None:
    runtime, code = BALLOONS[balloon]
    limits = MEMORY_LIMITS
    if balloon == "py-dev-shm":
        limits = Limits(memory_bytes=64 * MiB, tmpfs_bytes=512 * MiB, wall_time_ms=5_000)
    outcome = run(pool, runtime, code, limits=limits)
    assert outcome.verdict is Verdict.MEMORY_LIMIT, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.usage.peak_memory_bytes <= limits.memory_bytes
    assert outcome.usage.peak_memory_bytes >= limits.memory_bytes // 2
    if balloon == "py-children":
        # a child is OOM-killed; the parent, under the limit, reaps its children and exits 0:
        # the verdict still comes from the cgroup's OOM count, not from the exit status
        assert outcome.exit_code == 0
    else:
        assert b"wrote" not in outcome.stdout
        assert outcome.signal == signal.SIGKILL


# ------------------------------------------------------------------------------------- CPU

CPU_LIMITS = Limits(cpu_time_ms=500, wall_time_ms=5_000)
BURNERS = {
    "py-loop": (Runtime.PYTHON, "while True: pass"),
    "js-loop": (Runtime.JAVASCRIPT, "while (true) {}"),
    "py-two-children": (
        Runtime.PYTHON,
        "import os\nfor i in range(2):\n    if os.fork() == 0:\n        break\nwhile True: pass",
    ),
    "js-worker-threads": (
        Runtime.JAVASCRIPT,
        "const { Worker } = require('worker_threads');\n"
        "for (let i = 0; i < 2; i++) new Worker('while (true) {}', { eval: true });\n"
        "while (true) {}",
    ),
}


@pytest.mark.parametrize("burner", sorted(BURNERS))
def test_cpu_time_limit(pool: Pool, burner: str) -> None:
    runtime, code = BURNERS[burner]
    with SchedulingNoise() as noise:
        outcome = run(pool, runtime, code, limits=CPU_LIMITS)
    _killed(outcome, Verdict.CPU_TIME_LIMIT)
    limit_us = CPU_LIMITS.cpu_time_ms * 1000
    allowed_us = limit_us + CPU_SLACK_US + noise.cpu_margin_us()
    assert limit_us <= outcome.usage.cpu_time_us <= allowed_us, (outcome.usage, noise.worst_s)


def test_cpu_quota_caps_a_worker_at_its_cores(pool: Pool) -> None:
    """Two processes burning for a second of wall time get at most cpu_cores_per_worker cores."""
    cores = pool.config.cpu_cores_per_worker
    code = textwrap.dedent(
        """
        import os, time
        def burn(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
        kids = []
        for i in range(2):
            pid = os.fork()
            if pid == 0:
                burn(1.0)
                os._exit(0)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        """
    )
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(wall_time_ms=5_000))
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert cores > 0
    allowed_us = outcome.usage.wall_time_us * cores + CPU_QUOTA_SLACK_US
    assert outcome.usage.cpu_time_us <= allowed_us, (
        f"{outcome.usage.cpu_time_us} us of CPU in {outcome.usage.wall_time_us} us of wall "
        f"time: more than {cores} core(s)"
    )


# ------------------------------------------------------------------------------- wall time

SLEEPERS = {
    "py-sleep": (Runtime.PYTHON, "import time\nprint('ready', flush=True)\ntime.sleep(10)"),
    "js-timer": (Runtime.JAVASCRIPT, "console.log('ready'); setTimeout(() => {}, 10000);"),
    "py-ignores-sigterm": (
        Runtime.PYTHON,
        textwrap.dedent(
            """
            import signal, time
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(s, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
            print('ready', flush=True)
            while True:
                time.sleep(1)
            """
        ),
    ),
    "js-ignores-sigterm": (
        Runtime.JAVASCRIPT,
        "for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => {});\n"
        "console.log('ready'); setInterval(() => {}, 1000);",
    ),
    "py-blocked-read": (
        Runtime.PYTHON,
        "import os\nr, w = os.pipe()\nprint('ready', flush=True)\nos.read(r, 1)",
    ),
}


@pytest.mark.parametrize("sleeper", sorted(SLEEPERS))
def test_wall_time_limit(pool: Pool, sleeper: str) -> None:
    runtime, code = SLEEPERS[sleeper]
    wall_ms = 300 if "sigterm" not in sleeper else 500
    with SchedulingNoise() as noise:
        outcome = run(pool, runtime, code, limits=Limits(wall_time_ms=wall_ms))
    _killed(outcome, Verdict.TIMEOUT)
    assert outcome.stdout == b"ready\n"
    limit_us = wall_ms * 1000
    allowed_us = limit_us + WALL_SLACK_US + noise.wall_margin_us()
    assert limit_us <= outcome.usage.wall_time_us <= allowed_us, (outcome.usage, noise.worst_s)


# ---------------------------------------------------------------------------------- output

OUTPUT_CAP = 100_000


def _numbered(count: int) -> bytes:
    return b"".join(b"%08d\n" % i for i in range(count))


PY_FLOOD = textwrap.dedent(
    """
    import os, sys
    fd = int(sys.argv[1])
    i = 0
    while True:
        os.write(fd, b"".join(b"%08d\\n" % n for n in range(i, i + 1000)))
        i += 1000
    """
)

JS_FLOOD = textwrap.dedent(
    """
    const stream = process.argv[2] === '1' ? process.stdout : process.stderr;
    let i = 0;
    function chunk() {
      let s = '';
      for (let n = i; n < i + 1000; n++) s += String(n).padStart(8, '0') + '\\n';
      i += 1000;
      return s;
    }
    function go() { while (stream.write(chunk())) {} stream.once('drain', go); }
    go();
    """
)


@RUNTIMES
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood(pool: Pool, runtime: Runtime, stream: str) -> None:
    code = PY_FLOOD if runtime is Runtime.PYTHON else JS_FLOOD
    fd = "1" if stream == "stdout" else "2"
    limits = Limits(max_output_bytes=OUTPUT_CAP, wall_time_ms=5_000)
    outcome = run(pool, runtime, code, args=(fd,), limits=limits)
    _killed(outcome, Verdict.OUTPUT_LIMIT)
    expected = _numbered(OUTPUT_CAP // 9 + 1)[:OUTPUT_CAP]
    flooded = outcome.stdout if stream == "stdout" else outcome.stderr
    quiet = outcome.stderr if stream == "stdout" else outcome.stdout
    assert len(flooded) == OUTPUT_CAP
    assert flooded == expected  # exactly the first max_output_bytes, in order
    assert outcome.stdout_truncated is (stream == "stdout")
    assert outcome.stderr_truncated is (stream == "stderr")
    assert quiet == b""


@RUNTIMES
def test_output_exactly_at_the_cap_is_not_truncated(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = "import sys\nsys.stdout.buffer.write(b'x' * int(sys.argv[1]))"
    else:
        code = "process.stdout.write('x'.repeat(Number(process.argv[2])))"
    limits = Limits(max_output_bytes=OUTPUT_CAP, wall_time_ms=5_000)
    outcome = run(pool, runtime, code, args=(str(OUTPUT_CAP),), limits=limits)
    assert outcome.verdict is Verdict.OK, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.stdout == b"x" * OUTPUT_CAP
    assert outcome.stdout_truncated is False


# ---------------------------------------------------------------------------------- tmpfs

TMPFS_LIMITS = Limits(tmpfs_bytes=2 * MiB, wall_time_ms=5_000)


@RUNTIMES
def test_tmpfs_fill_hits_enospc(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import os
            written = 0
            fd = os.open("/tmp/fill", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    written += os.write(fd, b"x" * 65536)
            finally:
                print(written, flush=True)
            """
        )
        message = b"OSError: [Errno 28] No space left on device"
    else:
        code = textwrap.dedent(
            """
            const fs = require('fs');
            const fd = fs.openSync('/tmp/fill', 'w');
            const block = Buffer.alloc(65536, 120);
            let written = 0;
            try {
              while (true) written += fs.writeSync(fd, block);
            } finally {
              console.log(written);
            }
            """
        )
        message = b"Error: ENOSPC: no space left on device, write"
    outcome = run(pool, runtime, code, limits=TMPFS_LIMITS)
    assert outcome.verdict is Verdict.RUNTIME_ERROR, (outcome.verdict, outcome.stderr[-2000:])
    assert outcome.exit_code == 1
    assert message in outcome.stderr, outcome.stderr[-2000:]
    written = int(outcome.stdout)
    assert MiB <= written <= TMPFS_LIMITS.tmpfs_bytes


def test_work_tmp_and_dev_shm_share_one_cap(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import errno, json
        out = {}
        for path, mib in (("/work/a", 0.75), ("/tmp/b", 0.75), ("/dev/shm/c", 0.75)):
            try:
                with open(path, "wb") as f:
                    f.write(b"x" * int(mib * (1 << 20)))
                out[path] = "OK"
            except OSError as e:
                out[path] = errno.errorcode[e.errno]
        print(json.dumps(out))
        """
    )
    seen = _ok(run(pool, Runtime.PYTHON, code, limits=TMPFS_LIMITS))
    assert seen == {"/work/a": "OK", "/tmp/b": "OK", "/dev/shm/c": "ENOSPC"}


# -------------------------------------------------------------------------- file descriptors


@RUNTIMES
def test_fd_exhaustion_fails_cleanly(pool: Pool, runtime: Runtime) -> None:
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import errno, json, os, resource
            fds = []
            try:
                while True:
                    fds.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as e:
                err = errno.errorcode[e.errno]
            for fd in fds:
                os.close(fd)
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            print(json.dumps({"error": err, "opened": len(fds), "nofile": soft}))
            """
        )
    else:
        code = textwrap.dedent(
            """
            const fs = require('fs');
            const fds = [];
            let error;
            try { while (true) fds.push(fs.openSync('/dev/null', 'r')); } catch (e) { error = e.code; }
            for (const fd of fds) fs.closeSync(fd);
            const nofile = Number(fs.readFileSync('/proc/self/limits', 'utf8').match(/Max open files\\s+(\\d+)/)[1]);
            console.log(JSON.stringify({ error, opened: fds.length, nofile }));
            """
        )
    seen = _ok(run(pool, runtime, code, limits=Limits(wall_time_ms=5_000)))
    assert seen["error"] == "EMFILE"
    assert 0 < seen["nofile"] <= 4096
    assert seen["nofile"] - 64 <= seen["opened"] < seen["nofile"]


# -------------------------------------------------------------------- outliving the execution


def _host_processes_with(token: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if token in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


@RUNTIMES
def test_background_process_dies_with_the_execution(pool: Pool, runtime: Runtime) -> None:
    """Double-forked daemons (one a `sleep` with a unique argument, one that would write a marker
    into /tmp later) are running when the program exits; none survives its execution."""
    token = f"{30 + random.random():.9f}"  # a unique `sleep` argument to find it on the host
    if runtime is Runtime.PYTHON:
        code = textwrap.dedent(
            """
            import os, sys, time
            def daemon(argv):
                if os.fork() == 0:
                    os.setsid()
                    if os.fork() == 0:  # double fork: reparented to the worker's init
                        os.execv(argv[0], argv)
                    os._exit(0)
                os.wait()
            daemon(["/usr/bin/sleep", sys.argv[1]])
            daemon(["/bin/sh", "-c", "sleep 0.3; echo I outlived my execution > /tmp/marker; sleep 30"])
            """
        )
    else:
        code = textwrap.dedent(
            """
            const cp = require('child_process');
            for (const argv of [['/usr/bin/sleep', process.argv[2]],
                                ['/bin/sh', '-c', 'sleep 0.3; echo I outlived my execution > /tmp/marker; sleep 30']]) {
              cp.spawn(argv[0], argv.slice(1), { detached: true, stdio: 'ignore' }).unref();
            }
            """
        )
    # the program waits until its daemon is really running, then exits at once
    wait_for_daemon = {
        Runtime.PYTHON: textwrap.dedent(
            """
            def running(token):
                for d in os.listdir("/proc"):
                    try:
                        if d.isdigit() and token in open(f"/proc/{d}/cmdline").read():
                            return True
                    except OSError:
                        pass
                return False
            while not running(sys.argv[1]):
                time.sleep(0.01)
            print("daemon running", flush=True)
            """
        ),
        Runtime.JAVASCRIPT: textwrap.dedent(
            """
            const fs = require('fs');
            const running = (token) => fs.readdirSync('/proc').some((d) => {
              try { return /^\\d+$/.test(d) && fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(token); }
              catch (e) { return false; }
            });
            const poll = setInterval(() => {
              if (running(process.argv[2])) { clearInterval(poll); console.log('daemon running'); }
            }, 10);
            """
        ),
    }[runtime]
    outcome = run(
        pool, runtime, code + wait_for_daemon, args=(token,), limits=Limits(wall_time_ms=5_000)
    )
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"daemon running\n"), outcome
    # The outcome is answered as soon as the program has exited; by then the worker has been
    # killed (SIGKILL to its init, which takes its whole PID namespace), and the kernel finishes
    # the teardown within moments.
    deadline = time.monotonic() + 2
    while _host_processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _host_processes_with(token) == []
    time.sleep(0.5)  # past the moment the other daemon would have written its marker
    assert _host_processes_with(token) == []
    # and the next executions (any runtime) see neither the marker nor any stranger
    probes = {
        Runtime.PYTHON: "import os, json\nprint(json.dumps([os.path.exists('/tmp/marker'), "
        "sorted(d for d in os.listdir('/proc') if d.isdigit())]))",
        Runtime.JAVASCRIPT: "const fs = require('fs');\nconsole.log(JSON.stringify([fs.existsSync('/tmp/marker'), "
        "fs.readdirSync('/proc').filter((d) => /^\\d+$/.test(d)).sort()]));",
    }
    for next_runtime, probe in probes.items():
        for _ in range(2):  # both warm workers of the runtime
            pids = sorted(str(p) for p in SANDBOX_PIDS[next_runtime])
            assert _ok(run(pool, next_runtime, probe)) == [False, pids]
