"""A program starts with the signal state of a login shell, whatever the daemon's parent did.

A disposition of SIG_IGN and the signal mask survive execve. Before the runtimes were given
default dispositions and an empty mask before their exec (jail/signals.py), whatever the
daemon's own parent ignored reached every sandboxed program: CI runs the suite under GNU make,
which leaves signals 32 and 33 ignored, and a program's `os.kill(child, 32)` did nothing
(tests/jail/test_exit_helper.py's glibc-signal-32 case failed only there). A supervisor that
ignores SIGHUP or SIGTERM would likewise have made every program immune to its own.

Each case runs a pool in a child process whose parent state is hostile on purpose: SIGHUP,
SIGUSR1, SIGTERM, 32 and 33 ignored, SIGUSR2 and SIGINT blocked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

PARENT = textwrap.dedent(
    """
    import ctypes, json, signal, sys
    from sandboxd_pool import ExecutionRequest, Limits, Pool, PoolConfig, Runtime

    libc = ctypes.CDLL(None, use_errno=True)
    class Action(ctypes.Structure):
        _fields_ = [("handler", ctypes.c_void_p), ("flags", ctypes.c_ulong),
                    ("restorer", ctypes.c_void_p), ("mask", ctypes.c_uint64)]
    ignore = Action(handler=1)  # SIG_IGN
    for sig in (1, 10, 15, 32, 33):  # raw rt_sigaction: glibc refuses 32 and 33
        assert libc.syscall(13, sig, ctypes.byref(ignore), None, 8) == 0, ctypes.get_errno()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGINT})

    def sig_lines(status):
        pairs = (l.split(":", 1) for l in status.splitlines() if ":" in l)
        return {k: v.strip() for k, v in pairs if k in ("SigIgn", "SigBlk")}
    own = sig_lines(open("/proc/self/status").read())
    cases = {
        "python-status": (Runtime.PYTHON, "print(open('/proc/self/status').read())"),
        "node-status": (Runtime.JAVASCRIPT,
                        "console.log(require('fs').readFileSync('/proc/self/status', 'utf8'))"),
        "python-usr1": (Runtime.PYTHON, "import os, signal\\nos.kill(os.getpid(), signal.SIGUSR1)"
                                        "\\nprint('alive')"),
        "python-32": (Runtime.PYTHON, "import os\\nos.kill(os.getpid(), 32)\\nprint('alive')"),
        "node-hup": (Runtime.JAVASCRIPT, "process.kill(process.pid, 'SIGHUP');\\n"
                                         "setTimeout(() => console.log('alive'), 500);"),
    }
    seen = {"parent": own}
    with Pool(PoolConfig(warm_workers_per_runtime=1)) as pool:
        assert pool.wait_until_ready(60), pool.health()
        for name, (runtime, code) in cases.items():
            o = pool.execute(ExecutionRequest(runtime=runtime, code=code,
                                              limits=Limits(wall_time_ms=10_000)))
            seen[name] = {"verdict": o.verdict.value, "signal": o.signal,
                          "stdout": o.stdout.decode(errors="replace")}
            if name.endswith("-status"):
                seen[name]["sig"] = sig_lines(seen[name].pop("stdout"))
    print(json.dumps(seen))
    """
)

# What Python and Node set for themselves from a clean parent: SIGPIPE and SIGXFSZ ignored.
RUNTIMES_OWN = {"SigIgn": "0000000001001000", "SigBlk": "0000000000000000"}


def test_a_program_does_not_inherit_what_the_daemons_parent_ignored_or_blocked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # The positive control: the parent really ignores 1, 10, 15, 32, 33 and blocks 2 and 12.
    assert int(seen["parent"]["SigIgn"], 16) & 0x180004201 == 0x180004201, seen["parent"]
    assert int(seen["parent"]["SigBlk"], 16) == 0x802, seen["parent"]
    assert seen["python-status"]["sig"] == RUNTIMES_OWN, seen
    assert seen["node-status"]["sig"] == RUNTIMES_OWN, seen
    for name, signum in (
        ("python-usr1", signal.SIGUSR1),
        ("python-32", 32),
        ("node-hup", signal.SIGHUP),
    ):
        assert seen[name] == {"verdict": "KILLED", "signal": signum, "stdout": ""}, (name, seen)
