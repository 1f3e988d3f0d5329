"""The soak's programs: ordinary ones with their exact expected output, hostile ones with their
exact expected verdict. Every case carries fresh random input, so an answer that belongs to
another execution (or is stale) cannot pass its check.

Hostile limits are short (300-400 ms of wall time, 100 ms of CPU) so that 600 of them fit in a
CI run on two shared cores; the verdicts are the ones tests/jail/test_resources.py asserts for
the same programs under longer limits.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sandboxd_client import ExecuteResult, Limits, Mode, Runtime, Verdict

MiB = 1024 * 1024
PY, JS = Runtime.PYTHON, Runtime.JAVASCRIPT
PREFIX = {PY: "py", JS: "js"}

ORDINARY_LIMITS = Limits(wall_time_ms=20_000)  # generous: the machine is loaded
SHORT_WALL = Limits(wall_time_ms=500)
FORK_LIMITS = Limits(wall_time_ms=400, max_processes=16)
CPU_LIMITS = Limits(cpu_time_ms=100, wall_time_ms=10_000)
MEMORY_LIMITS = Limits(memory_bytes=64 * MiB, wall_time_ms=10_000)
OUTPUT_CAP_BYTES = 64 * 1024
OUTPUT_LIMITS = Limits(max_output_bytes=OUTPUT_CAP_BYTES, wall_time_ms=10_000)


@dataclass(frozen=True)
class Case:
    """One execution to send, and what must come back."""

    kind: str
    hostile: bool
    runtime: Runtime
    code: str
    verdict: Verdict
    limits: Limits = ORDINARY_LIMITS
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    mode: Mode = Mode.SCRIPT
    event: bytes = b""
    stdout: bytes | None = None  # exact, when set
    stdout_truncated: bool = False
    stderr_contains: bytes = b""
    result_json: object = None  # HANDLER mode: the decoded result, when set
    exit_code: int | None = None
    signal: int | None = None
    blocked_syscall: str = ""
    token: str = ""  # a background process's unique argument: none may survive


def check(case: Case, got: ExecuteResult) -> list[str]:
    """Every way `got` differs from what `case` must produce (empty: it passed)."""
    problems: list[str] = []
    if got.verdict is not case.verdict:
        problems.append(f"verdict {got.verdict.value}, expected {case.verdict.value}")
    if (got.exit_code, got.signal) != (case.exit_code, case.signal):
        problems.append(
            f"exit {got.exit_code} signal {got.signal}, expected {case.exit_code} {case.signal}"
        )
    if case.stdout is not None and got.stdout != case.stdout:
        problems.append(f"stdout {got.stdout[:200]!r}, expected {case.stdout[:200]!r}")
    if got.stdout_truncated is not case.stdout_truncated:
        problems.append(f"stdout_truncated {got.stdout_truncated}")
    if case.stderr_contains and case.stderr_contains not in got.stderr:
        problems.append(f"stderr {got.stderr[-300:]!r} lacks {case.stderr_contains!r}")
    if case.result_json is not None:
        try:
            value = json.loads(got.result)
        except ValueError:
            value = f"<not JSON: {got.result[:100]!r}>"
        if value != case.result_json:
            problems.append(f"result {value!r}, expected {case.result_json!r}")
    if got.blocked_syscall != case.blocked_syscall:
        problems.append(f"blocked_syscall {got.blocked_syscall!r}")
    if problems and got.stderr and "stderr" not in " ".join(problems):
        problems.append(f"(stderr: {got.stderr[-300:]!r})")
    return problems


def _word(rng: random.Random, n: int = 12) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


# ---------------------------------------------------------------------------------- ordinary


def py_stdin_echo(rng: random.Random) -> Case:
    data = "\n".join(_word(rng, rng.randint(1, 40)) for _ in range(rng.randint(1, 50))) + "\n"
    code = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper()[::-1])\n"
    expected = "".join(line.upper()[::-1] + "\n" for line in data.splitlines())
    return Case("py-stdin", False, PY, code, Verdict.OK, stdin=data.encode(),
                stdout=expected.encode(), exit_code=0)  # fmt: skip


def py_args_env(rng: random.Random) -> Case:
    args = tuple(_word(rng, rng.randint(1, 10)) for _ in range(rng.randint(0, 6)))
    env = {"SOAK_" + _word(rng, 4).upper(): _word(rng, 16)}
    code = "import json, os, sys\nprint(json.dumps([sys.argv[1:], {k: v for k, v in os.environ.items() if k.startswith('SOAK_')}]))\n"
    expected = json.dumps([list(args), env]) + "\n"
    return Case("py-args-env", False, PY, code, Verdict.OK, args=args, env=env,
                stdout=expected.encode(), exit_code=0)  # fmt: skip


def py_files(rng: random.Random) -> Case:
    files = {f"data/{_word(rng, 6)}.bin": rng.randbytes(rng.randint(0, 50_000)) for _ in range(3)}
    code = textwrap.dedent(
        """
        import hashlib, os
        for root, _, names in sorted(os.walk("data")):
            for name in sorted(names):
                path = os.path.join(root, name)
                print(path, hashlib.sha256(open(path, "rb").read()).hexdigest())
        with open("/tmp/out", "wb") as f:  # the scratch tmpfs is writable
            f.write(b"x" * 4096)
        """
    )
    expected = "".join(
        f"{path} {hashlib.sha256(files[path]).hexdigest()}\n" for path in sorted(files)
    )
    return Case("py-files", False, PY, code, Verdict.OK, files=files,
                stdout=expected.encode(), exit_code=0)  # fmt: skip


def py_handler(rng: random.Random) -> Case:
    n, word = rng.randint(-(10**9), 10**9), _word(rng)
    code = "def handler(event, context):\n    return {'n': event['n'] * 2, 'w': event['w'][::-1], 'mb': context.memory_limit_in_mb}\n"
    event = json.dumps({"n": n, "w": word}).encode()
    return Case("py-handler", False, PY, code, Verdict.OK, mode=Mode.HANDLER, event=event,
                result_json={"n": n * 2, "w": word[::-1], "mb": 256}, exit_code=0)  # fmt: skip


def py_subprocess(rng: random.Random) -> Case:
    word = _word(rng)
    code = "import subprocess, sys\nout = subprocess.run(['/bin/echo', sys.argv[1]], capture_output=True, check=True).stdout\nsys.stdout.buffer.write(out * 2)\n"
    return Case("py-subprocess", False, PY, code, Verdict.OK, args=(word,),
                stdout=f"{word}\n{word}\n".encode(), exit_code=0)  # fmt: skip


def py_raises(rng: random.Random) -> Case:
    word = _word(rng)
    code = f"import sys\nprint('before', flush=True)\nraise ValueError({word!r})\n"
    return Case("py-raises", False, PY, code, Verdict.RUNTIME_ERROR, stdout=b"before\n",
                stderr_contains=f"ValueError: {word}".encode(), exit_code=1)  # fmt: skip


def js_stdin_echo(rng: random.Random) -> Case:
    data = rng.randbytes(rng.randint(0, 100_000))
    code = "const fs = require('fs');\nconst b = fs.readFileSync(0);\nprocess.stdout.write(require('crypto').createHash('sha256').update(b).digest('hex') + ' ' + b.length + '\\n');\n"
    expected = f"{hashlib.sha256(data).hexdigest()} {len(data)}\n".encode()
    return Case("js-stdin", False, JS, code, Verdict.OK, stdin=data, stdout=expected,
                exit_code=0)  # fmt: skip


def js_args_env(rng: random.Random) -> Case:
    args = tuple(_word(rng, rng.randint(1, 10)) for _ in range(rng.randint(0, 6)))
    value = _word(rng, 16)
    code = "console.log(JSON.stringify([process.argv.slice(2), process.env.SOAK_VALUE]));\n"
    expected = json.dumps([list(args), value], separators=(",", ":")) + "\n"
    return Case("js-args-env", False, JS, code, Verdict.OK, args=args,
                env={"SOAK_VALUE": value}, stdout=expected.encode(), exit_code=0)  # fmt: skip


def js_files(rng: random.Random) -> Case:
    content = rng.randbytes(rng.randint(1, 30_000))
    code = "const fs = require('fs');\nconst b = fs.readFileSync('in/data.bin');\nfs.writeFileSync('/tmp/copy', b);\nconsole.log(require('crypto').createHash('sha256').update(fs.readFileSync('/tmp/copy')).digest('hex'));\n"
    return Case("js-files", False, JS, code, Verdict.OK, files={"in/data.bin": content},
                stdout=f"{hashlib.sha256(content).hexdigest()}\n".encode(), exit_code=0)  # fmt: skip


def js_handler(rng: random.Random) -> Case:
    n, word = rng.randint(-(10**6), 10**6), _word(rng)
    code = "exports.handler = async (event, context) => ({ n: event.n + 1, w: event.w.toUpperCase(), id: typeof context.executionId });\n"
    event = json.dumps({"n": n, "w": word}).encode()
    return Case("js-handler", False, JS, code, Verdict.OK, mode=Mode.HANDLER, event=event,
                result_json={"n": n + 1, "w": word.upper(), "id": "string"}, exit_code=0)  # fmt: skip


def js_child_process(rng: random.Random) -> Case:
    word = _word(rng)
    code = "const cp = require('child_process');\nprocess.stdout.write(cp.execFileSync('/bin/echo', [process.argv[2]]));\n"
    return Case("js-child", False, JS, code, Verdict.OK, args=(word,),
                stdout=f"{word}\n".encode(), exit_code=0)  # fmt: skip


def js_throws(rng: random.Random) -> Case:
    word = _word(rng)
    code = f"console.log('before');\nthrow new Error({word!r});\n"
    return Case("js-throws", False, JS, code, Verdict.RUNTIME_ERROR, stdout=b"before\n",
                stderr_contains=f"Error: {word}".encode(), exit_code=1)  # fmt: skip


# ----------------------------------------------------------------------------------- hostile

PY_FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)
JS_SPAWN_STORM = textwrap.dedent(
    """
    const cp = require('child_process');
    setInterval(() => {
      for (let i = 0; i < 20; i++) {
        try { cp.spawn('/usr/bin/sleep', ['30'], { stdio: 'ignore' }).on('error', () => {}); } catch (e) {}
      }
    }, 5);
    """
)
PY_IGNORES_SIGTERM = textwrap.dedent(
    """
    import signal, time
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP})
    print('ready', flush=True)
    while True:
        time.sleep(1)
    """
)
JS_IGNORES_SIGTERM = (
    "for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => {});\n"
    "console.log('ready'); setInterval(() => {}, 1000);\n"
)
PY_FLOOD = "import os\nwhile True:\n    os.write(1, b'0123456789abcdef' * 4096)\n"
JS_FLOOD = "const s = '0123456789abcdef'.repeat(4096);\nfunction go() { while (process.stdout.write(s)) {} process.stdout.once('drain', go); }\ngo();\n"
FLOOD_OUTPUT = (b"0123456789abcdef" * (OUTPUT_CAP_BYTES // 16 + 1))[:OUTPUT_CAP_BYTES]
PY_LEAVER = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:  # double fork: reparented to the worker's init
            os.execv("/usr/bin/sleep", ["/usr/bin/sleep", sys.argv[1]])
        os._exit(0)
    os.wait()
    def running():
        for d in os.listdir("/proc"):
            try:
                if d.isdigit() and sys.argv[1] in open(f"/proc/{d}/cmdline").read():
                    return True
            except OSError:
                pass
        return False
    while not running():
        time.sleep(0.005)
    print("daemon running", flush=True)
    """
)
JS_LEAVER = textwrap.dedent(
    """
    const cp = require('child_process');
    const fs = require('fs');
    cp.spawn('/usr/bin/sleep', [process.argv[2]], { detached: true, stdio: 'ignore' }).unref();
    const running = () => fs.readdirSync('/proc').some((d) => {
      try { return /^\\d+$/.test(d) && fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(process.argv[2]); }
      catch (e) { return false; }
    });
    const poll = setInterval(() => { if (running()) { clearInterval(poll); console.log('daemon running'); } }, 5);
    """
)
PY_PTRACE = "import ctypes\nprint('before', flush=True)\nctypes.CDLL(None).syscall(101, 0, 0, 0, 0)\nprint('after')\n"


def _killed(
    kind: str, runtime: Runtime, code: str, verdict: Verdict, limits: Limits, **kw: object
) -> Case:
    return Case(kind, True, runtime, code, verdict, limits=limits, signal=signal.SIGKILL, **kw)  # type: ignore[arg-type]


def fork_bomb(rng: random.Random) -> Case:
    if rng.random() < 0.5:
        return _killed("py-fork-bomb", PY, PY_FORK_BOMB, Verdict.TIMEOUT, FORK_LIMITS, stdout=b"")
    return _killed("js-spawn-storm", JS, JS_SPAWN_STORM, Verdict.TIMEOUT, FORK_LIMITS, stdout=b"")


def balloon(rng: random.Random) -> Case:
    if rng.random() < 0.5:
        code = "b = []\nwhile True: b.append(bytearray(16 << 20))\n"
        return _killed("py-balloon", PY, code, Verdict.MEMORY_LIMIT, MEMORY_LIMITS, stdout=b"")
    code = "const b = []; while (true) b.push(Buffer.alloc(16 << 20, 1));\n"
    return _killed("js-balloon", JS, code, Verdict.MEMORY_LIMIT, MEMORY_LIMITS, stdout=b"")


def flood(rng: random.Random) -> Case:
    runtime, code = (PY, PY_FLOOD) if rng.random() < 0.5 else (JS, JS_FLOOD)
    return _killed(f"{PREFIX[runtime]}-flood", runtime, code, Verdict.OUTPUT_LIMIT,
                   OUTPUT_LIMITS, stdout=FLOOD_OUTPUT, stdout_truncated=True)  # fmt: skip


def infinite_loop(rng: random.Random) -> Case:
    if rng.random() < 0.5:
        return _killed("py-loop", PY, "while True: pass\n", Verdict.CPU_TIME_LIMIT, CPU_LIMITS)
    return _killed("js-loop", JS, "while (true) {}\n", Verdict.CPU_TIME_LIMIT, CPU_LIMITS)


def ignores_sigterm(rng: random.Random) -> Case:
    runtime, code = (PY, PY_IGNORES_SIGTERM) if rng.random() < 0.5 else (JS, JS_IGNORES_SIGTERM)
    # stdout is not checked: on a loaded machine the deadline may come before 'ready' is out
    return _killed(f"{PREFIX[runtime]}-no-sigterm", runtime, code, Verdict.TIMEOUT, SHORT_WALL)


def leaves_background_process(rng: random.Random) -> Case:
    token = f"{3000 + rng.random():.12f}"  # `sleep TOKEN`: unique on the host, findable
    runtime, code = (PY, PY_LEAVER) if rng.random() < 0.5 else (JS, JS_LEAVER)
    return Case(f"{PREFIX[runtime]}-leaver", True, runtime, code, Verdict.OK, args=(token,),
                stdout=b"daemon running\n", exit_code=0, token=token)  # fmt: skip


def blocked_syscall(rng: random.Random) -> Case:
    return _killed("py-ptrace", PY, PY_PTRACE, Verdict.SYSCALL_BLOCKED, ORDINARY_LIMITS,
                   stdout=b"before\n", blocked_syscall="ptrace")  # fmt: skip


Maker = Callable[[random.Random], Case]
# Python workers are ~5x cheaper to make than Node's; the mix leans Python but every kind of
# both runtimes runs hundreds of times in a CI run.
ORDINARY: tuple[tuple[Maker, int], ...] = (
    (py_stdin_echo, 3), (py_args_env, 3), (py_files, 3), (py_handler, 3), (py_subprocess, 2),
    (py_raises, 2), (js_stdin_echo, 2), (js_args_env, 2), (js_files, 2), (js_handler, 2),
    (js_child_process, 1), (js_throws, 1),
)  # fmt: skip
HOSTILE: tuple[tuple[Maker, int], ...] = (
    (fork_bomb, 2), (balloon, 2), (flood, 2), (infinite_loop, 2), (ignores_sigterm, 2),
    (leaves_background_process, 2), (blocked_syscall, 1),
)  # fmt: skip
HOSTILE_SHARE = 0.3


def mix(count: int, seed: int) -> list[Case]:
    """`count` cases, exactly round(30%) hostile, shuffled, reproducible from `seed`."""
    rng = random.Random(seed)
    hostile = round(count * HOSTILE_SHARE)
    makers = [_pick(rng, HOSTILE) for _ in range(hostile)]
    makers += [_pick(rng, ORDINARY) for _ in range(count - hostile)]
    rng.shuffle(makers)
    return [make(rng) for make in makers]


def _pick(rng: random.Random, table: tuple[tuple[Maker, int], ...]) -> Maker:
    return rng.choices([m for m, _ in table], weights=[w for _, w in table])[0]
