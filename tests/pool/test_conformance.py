"""What runs inside a worker behaves like `python3 main.py` / `node main.js` on a normal
machine: stdin, args, env, files, output bytes, exit codes, errors, the standard library.

Workers run the code as /work/main.py (as __main__, sys.argv = ['main.py', *args]) or
/work/main.js (node semantics), cwd /work, uid 1000, env exactly the request's env.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid

import pytest
from helpers import run

from sandboxd_pool import Limits, Outcome, Pool, PoolConfig, Runtime, Verdict

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT
BOTH = pytest.mark.parametrize("runtime", [PY, JS], ids=["python", "javascript"])

MiB = 1024 * 1024

# Raw bytes that are not UTF-8 (lone continuation, overlong, 0xff/0xfe, truncated sequence)
# and NULs, around every byte value.
BINARY = bytes(range(256)) + b"\x00\x00\xff\xfe\x80\xc0\xaf\xed\xa0\x80\xe2\x82" + b"\x00end\xc3"

ECHO = {
    PY: "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n",
    JS: "const fs = require('fs');\nprocess.stdout.write(fs.readFileSync(0));\n",
}


def ok(outcome: Outcome) -> Outcome:
    assert outcome.verdict is Verdict.OK, outcome
    assert outcome.exit_code == 0, outcome
    assert outcome.signal is None, outcome
    return outcome


def report(outcome: Outcome) -> dict:  # type: ignore[type-arg]
    ok(outcome)
    return json.loads(outcome.stdout)  # type: ignore[no-any-return]


# -- the basics ---------------------------------------------------------------------------


@BOTH
def test_hello(pool: Pool, runtime: Runtime) -> None:
    code = {PY: "print('hello')", JS: "console.log('hello')"}[runtime]
    out = ok(run(pool, runtime, code))
    assert out.stdout == b"hello\n"
    assert out.stderr == b""
    assert not out.stdout_truncated and not out.stderr_truncated
    assert out.blocked_syscall is None
    assert out.execution_id


@BOTH
def test_stdin_echo_is_binary_exact(pool: Pool, runtime: Runtime) -> None:
    out = ok(run(pool, runtime, ECHO[runtime], stdin=BINARY))
    assert out.stdout == BINARY
    assert out.stderr == b""


@BOTH
def test_empty_stdin_is_eof(pool: Pool, runtime: Runtime) -> None:
    out = ok(run(pool, runtime, ECHO[runtime]))
    assert out.stdout == b""


@BOTH
def test_stdin_larger_than_a_pipe_buffer(pool: Pool, runtime: Runtime) -> None:
    data = os.urandom(3 * MiB)
    code = {
        PY: "import sys, hashlib\nprint(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        JS: "const c = require('crypto'), fs = require('fs');\n"
        "console.log(c.createHash('sha256').update(fs.readFileSync(0)).digest('hex'));",
    }[runtime]
    out = ok(run(pool, runtime, code, stdin=data))
    assert out.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


ARGS = ("one", "two words", "ünïcødé ✓", "", "--flag=x", "'quoted' \"too\"", "$HOME")
ENV = {"GREETING": "hi there", "UNICODE": "é ✓", "EMPTY": "", "WITH_EQUALS": "a=b=c"}


def test_python_args_env_and_identity(pool: Pool) -> None:
    code = (
        "import json, os, sys, subprocess\n"
        "child = subprocess.run(['/usr/bin/env'], capture_output=True).stdout.decode()\n"
        "print(json.dumps({'argv': sys.argv, 'env': dict(os.environ), 'child_env': child,\n"
        "  'name': __name__, 'file': __file__, 'cwd': os.getcwd(), 'uid': os.getuid(),\n"
        "  'gid': os.getgid()}))\n"
    )
    got = report(run(pool, PY, code, args=ARGS, env=ENV))
    assert got["argv"] == ["main.py", *ARGS]
    assert got["env"] == ENV
    assert sorted(got["child_env"].splitlines()) == sorted(f"{k}={v}" for k, v in ENV.items())
    assert got["name"] == "__main__"
    assert got["file"] == "/work/main.py"
    assert got["cwd"] == "/work"
    assert got["uid"] == 1000
    assert got["gid"] == 1000


def test_javascript_args_env_and_identity(pool: Pool) -> None:
    code = (
        "const cp = require('child_process');\n"
        "const child = cp.execFileSync('/usr/bin/env').toString();\n"
        "console.log(JSON.stringify({argv: process.argv, env: process.env, childEnv: child,\n"
        "  filename: __filename, isMain: require.main === module, cwd: process.cwd(),\n"
        "  uid: process.getuid(), gid: process.getgid()}));\n"
    )
    got = report(run(pool, JS, code, args=ARGS, env=ENV))
    assert os.path.basename(got["argv"][0]).startswith("node")
    assert got["argv"][1:] == ["/work/main.js", *ARGS]
    assert got["env"] == ENV
    assert sorted(got["childEnv"].splitlines()) == sorted(f"{k}={v}" for k, v in ENV.items())
    assert got["filename"] == "/work/main.js"
    assert got["isMain"] is True
    assert got["cwd"] == "/work"
    assert got["uid"] == 1000
    assert got["gid"] == 1000


@BOTH
def test_empty_env_is_empty(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "import os, json\nprint(json.dumps(dict(os.environ)))",
        JS: "console.log(JSON.stringify(process.env))",
    }[runtime]
    assert report(run(pool, runtime, code)) == {}


ENVIRON_PROBE = {
    PY: (
        "import json, os, subprocess\n"
        "def read(p):\n"
        "    try:\n        return open(p, 'rb').read().decode('latin-1')\n"
        "    except PermissionError:\n        return 'EACCES'\n"
        "print(json.dumps({'env': dict(os.environ),\n"
        "  'proc_self': read('/proc/self/environ'),\n"
        "  'proc_1': read('/proc/1/environ'),\n"
        "  'child': subprocess.run(['/usr/bin/env'], capture_output=True).stdout.decode()}))\n"
    ),
    JS: (
        "const fs = require('fs'), cp = require('child_process');\n"
        "console.log(JSON.stringify({env: process.env,\n"
        "  proc_self: fs.readFileSync('/proc/self/environ', 'latin1'),\n"
        "  proc_1: (() => { try { return fs.readFileSync('/proc/1/environ', 'latin1'); }\n"
        "    catch (e) { return e.code; } })(),\n"
        "  child: cp.execFileSync('/usr/bin/env').toString()}));\n"
    ),
}

# What the jail itself starts the interpreter with (not from the host): may show in
# /proc/self/environ, which is the exec-time environment block.
JAIL_BOOT_ENV = {"PATH", "HOME", "LANG", "PYTHONUTF8"}


def test_no_host_environment_variable_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = f"host-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("SANDBOXD_HOST_CANARY", canary)
    monkeypatch.setenv("NODE_OPTIONS", f"--title={canary}")
    monkeypatch.setenv("PYTHONSTARTUP", f"/tmp/{canary}.py")
    host_pairs = {f"{k}={v}" for k, v in os.environ.items() if k not in {"PATH", "LANG"}}
    with Pool(PoolConfig(warm_workers_per_runtime=1)) as private:
        for runtime in (PY, JS):
            out = ok(run(private, runtime, ENVIRON_PROBE[runtime], env={"MINE": "1"}))
            assert canary.encode() not in out.stdout + out.stderr, runtime
            got = json.loads(out.stdout)
            assert got["env"] == {"MINE": "1"}, runtime
            assert got["child"] == "MINE=1\n", runtime
            # PID 1 is the worker's init, which the program cannot read at all.
            assert got["proc_1"] == "EACCES", runtime
            for block in (got["proc_self"],):
                entries = [e for e in block.split("\0") if e]
                assert {e.split("=", 1)[0] for e in entries} <= JAIL_BOOT_ENV | {"MINE"}, runtime
                assert not host_pairs & set(entries), runtime
                assert "HOME=/work" in entries or not any(e.startswith("HOME=") for e in entries)


# -- files --------------------------------------------------------------------------------

FILES = {
    "data.txt": b"plain text\n",
    "sub/dir/nested.bin": BINARY,
    "deep/a/b/c/d/e.json": b'{"answer": 42}',
    "pkg/__init__.py": b"",
    "pkg/mod.py": b"VALUE = 'from pkg.mod'\n",
    "lib/helper.js": b"module.exports = { value: 'from lib/helper' };\n",
    "name with spaces.txt": "ünïcødé\n".encode(),
}


def test_python_files_are_delivered_into_cwd(pool: Pool) -> None:
    code = (
        "import hashlib, json, os\n"
        "import pkg.mod\n"
        "found = sorted(os.path.relpath(os.path.join(d, f), '.')\n"
        "               for d, _, fs in os.walk('.') for f in fs)\n"
        "print(json.dumps({'found': found,\n"
        "  'digests': {p: hashlib.sha256(open(p, 'rb').read()).hexdigest() for p in found\n"
        "              if p != 'main.py'},\n"
        "  'module': pkg.mod.VALUE,\n"
        "  'answer': json.load(open('deep/a/b/c/d/e.json'))['answer']}))\n"
    )
    got = report(run(pool, PY, code, files=FILES))
    assert set(got["found"]) - {"main.py"} - {p for p in got["found"] if "__pycache__" in p} == (
        set(FILES)
    )
    assert got["digests"] == {p: hashlib.sha256(d).hexdigest() for p, d in FILES.items()}
    assert got["module"] == "from pkg.mod"
    assert got["answer"] == 42


def test_javascript_files_are_delivered_into_cwd(pool: Pool) -> None:
    code = (
        "const fs = require('fs'), path = require('path'), crypto = require('crypto');\n"
        "function walk(d) { return fs.readdirSync(d, {withFileTypes: true}).flatMap(e =>\n"
        "  e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]); }\n"
        "const found = walk('.').sort();\n"
        "const digests = {};\n"
        "for (const p of found) if (p !== 'main.js')\n"
        "  digests[p] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');\n"
        "console.log(JSON.stringify({found, digests, helper: require('./lib/helper').value,\n"
        "  answer: require('./deep/a/b/c/d/e.json').answer}));\n"
    )
    got = report(run(pool, JS, code, files=FILES))
    assert set(got["found"]) == {*FILES, "main.js"}
    assert got["digests"] == {p: hashlib.sha256(d).hexdigest() for p, d in FILES.items()}
    assert got["helper"] == "from lib/helper"
    assert got["answer"] == 42


# -- output -------------------------------------------------------------------------------


def _records() -> tuple[bytes, dict]:  # type: ignore[type-arg]
    items = [
        {"id": i, "name": f"item-{i}-é", "tags": ["x"] * (i % 7), "price": i * 0.25}
        for i in range(14_000)
    ]
    data = json.dumps(items, ensure_ascii=False).encode()
    assert len(data) >= MiB
    expected = {
        "count": len(items),
        "total": sum(it["price"] for it in items),
        "items": [
            {"id": it["id"], "NAME": it["name"].upper(), "n": len(it["tags"])} for it in items
        ],
    }
    return data, expected


JSON_TRANSFORM = {
    PY: (
        "import json, sys\n"
        "items = json.load(sys.stdin)\n"
        "json.dump({'count': len(items), 'total': sum(i['price'] for i in items),\n"
        "  'items': [{'id': i['id'], 'NAME': i['name'].upper(), 'n': len(i['tags'])}\n"
        "            for i in items]}, sys.stdout)\n"
    ),
    JS: (
        "const items = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "process.stdout.write(JSON.stringify({count: items.length,\n"
        "  total: items.reduce((s, i) => s + i.price, 0),\n"
        "  items: items.map(i => ({id: i.id, NAME: i.name.toUpperCase(), n: i.tags.length}))}));\n"
    ),
}


@BOTH
def test_json_transform_of_1_mib(pool: Pool, runtime: Runtime) -> None:
    data, expected = _records()
    out = ok(
        run(
            pool,
            runtime,
            JSON_TRANSFORM[runtime],
            stdin=data,
            limits=Limits(max_output_bytes=8 * MiB),
        )
    )
    assert not out.stdout_truncated
    assert json.loads(out.stdout) == expected


UNICODE_TEXT = "héllo wörld — 日本語 — Ελληνικά — emoji 🎉🐍 — zero-width \u200b —  RTL \u05e9\u05dc\u05d5\u05dd"


@BOTH
def test_unicode_output(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: f"import sys\nprint({UNICODE_TEXT!r})\nprint({UNICODE_TEXT!r}, file=sys.stderr)",
        JS: f"console.log({json.dumps(UNICODE_TEXT)});\nconsole.error({json.dumps(UNICODE_TEXT)});",
    }[runtime]
    out = ok(run(pool, runtime, code))
    assert out.stdout == (UNICODE_TEXT + "\n").encode()
    assert out.stderr == (UNICODE_TEXT + "\n").encode()


@BOTH
def test_unicode_output_without_any_locale_in_env(pool: Pool, runtime: Runtime) -> None:
    code = {PY: "print('日本語 ✓')", JS: "console.log('日本語 ✓')"}[runtime]
    out = ok(run(pool, runtime, code, env={"LANG": "C", "LC_ALL": "C"}))
    assert out.stdout == "日本語 ✓\n".encode()


@BOTH
def test_invalid_utf8_on_stdout_is_kept_byte_exact(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: f"import sys\nsys.stdout.buffer.write({BINARY!r})\nsys.stderr.buffer.write({BINARY[::-1]!r})",
        JS: f"process.stdout.write(Buffer.from({json.dumps(BINARY.hex())}, 'hex'));\n"
        f"process.stderr.write(Buffer.from({json.dumps(BINARY[::-1].hex())}, 'hex'));",
    }[runtime]
    out = ok(run(pool, runtime, code))
    assert out.stdout == BINARY
    assert out.stderr == BINARY[::-1]


@BOTH
def test_stdout_and_stderr_are_kept_apart(pool: Pool, runtime: Runtime) -> None:
    code = {
        PY: "import sys\nfor i in range(200):\n"
        "    print(f'out {i}', flush=True)\n    print(f'err {i}', file=sys.stderr, flush=True)\n",
        JS: "for (let i = 0; i < 200; i++) { console.log(`out ${i}`); console.error(`err ${i}`); }",
    }[runtime]
    out = ok(run(pool, runtime, code))
    assert out.stdout == b"".join(b"out %d\n" % i for i in range(200))
    assert out.stderr == b"".join(b"err %d\n" % i for i in range(200))


@BOTH
def test_output_without_trailing_newline_and_unflushed_at_exit(
    pool: Pool, runtime: Runtime
) -> None:
    code = {
        PY: "import sys\nsys.stdout.write('no newline')\nsys.stderr.write('err no newline')",
        JS: "process.stdout.write('no newline'); process.stderr.write('err no newline');",
    }[runtime]
    out = ok(run(pool, runtime, code))
    assert out.stdout == b"no newline"
    assert out.stderr == b"err no newline"


# -- exit codes and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        (PY, "import sys\nprint('before')\nsys.exit(3)\nprint('after')"),
        (PY, "import os, sys\nprint('before', flush=True)\nos._exit(3)"),
        (PY, "print('before')\nraise SystemExit(3)"),
        (JS, "console.log('before');\nprocess.exit(3);\nconsole.log('after');"),
        (JS, "console.log('before');\nprocess.exitCode = 3;"),
    ],
    ids=["sys.exit", "os._exit", "SystemExit", "process.exit", "process.exitCode"],
)
def test_exit_code_3_is_runtime_error(pool: Pool, runtime: Runtime, code: str) -> None:
    out = run(pool, runtime, code)
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 3
    assert out.signal is None
    assert out.stdout == b"before\n"


@BOTH
def test_explicit_exit_zero_is_ok(pool: Pool, runtime: Runtime) -> None:
    code = {PY: "import sys\nprint('x')\nsys.exit(0)", JS: "console.log('x'); process.exit(0);"}
    assert ok(run(pool, runtime, code[runtime])).stdout == b"x\n"


def test_python_sys_exit_with_a_message(pool: Pool) -> None:
    out = run(pool, PY, "import sys\nsys.exit('fatal: bad input')")
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 1
    assert out.stderr == b"fatal: bad input\n"


def test_python_uncaught_exception(pool: Pool) -> None:
    code = (
        "def inner():\n    raise ValueError('boom-123')\n\ndef outer():\n    inner()\n\nouter()\n"
    )
    out = run(pool, PY, code)
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 1
    err = out.stderr.decode()
    assert err.startswith("Traceback (most recent call last):\n"), err
    assert 'File "/work/main.py", line 7, in <module>' in err
    assert 'File "/work/main.py", line 5, in outer' in err
    assert 'File "/work/main.py", line 2, in inner' in err
    assert err.rstrip().endswith("ValueError: boom-123")
    assert "python_boot" not in err
    assert "/opt/sandboxd" not in err
    assert out.stdout == b""


def test_python_syntax_error_names_main_py(pool: Pool) -> None:
    out = run(pool, PY, "print('ok')\ndef broken(:\n")
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 1
    err = out.stderr.decode()
    assert 'File "/work/main.py", line 2' in err
    assert "SyntaxError" in err
    assert "python_boot" not in err
    assert "/opt/sandboxd" not in err


def test_python_exception_in_a_thread_and_atexit(pool: Pool) -> None:
    code = (
        "import atexit, threading\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "def work():\n    raise KeyError('in-thread')\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "print('main done')\n"
    )
    out = ok(run(pool, PY, code))
    assert out.stdout == b"main done\natexit ran\n"
    assert b"KeyError: 'in-thread'" in out.stderr
    assert b'File "/work/main.py", line 4, in work' in out.stderr


def test_javascript_uncaught_exception(pool: Pool) -> None:
    code = (
        "function inner() {\n  throw new Error('boom-123');\n}\n"
        "function outer() {\n  inner();\n}\nouter();\n"
    )
    out = run(pool, JS, code)
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 1
    err = out.stderr.decode()
    assert err.startswith("/work/main.js:2\n"), err
    assert "Error: boom-123" in err
    assert "at inner (/work/main.js:2:9)" in err
    assert "at outer (/work/main.js:5:3)" in err
    assert "(/work/main.js:7:1)" in err
    # The user's frames are what matter; the bootstrap is the sandbox's business.
    assert "node_boot" not in err, err
    assert "/opt/sandboxd" not in err, err


def test_javascript_unhandled_rejection(pool: Pool) -> None:
    code = "async function f() {\n  throw new TypeError('rejected-456');\n}\nf();\n"
    out = run(pool, JS, code)
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 1
    err = out.stderr.decode()
    assert "TypeError: rejected-456" in err
    assert "/work/main.js:2" in err
    assert "node_boot" not in err


def test_javascript_syntax_error_names_main_js(pool: Pool) -> None:
    out = run(pool, JS, "console.log('ok');\nconst x = ;\n")
    assert out.verdict is Verdict.RUNTIME_ERROR, out
    assert out.exit_code == 1
    err = out.stderr.decode()
    assert err.startswith("/work/main.js:2\nconst x = ;\n"), err
    assert "SyntaxError: Unexpected token ';'" in err
    assert "node_boot" not in err, err
    assert out.stdout == b""


# -- Python: the standard library works ----------------------------------------------------


def test_python_standard_library(pool: Pool) -> None:
    code = r"""
import datetime, hashlib, json, multiprocessing, os, subprocess, sys, threading, zlib
from zoneinfo import ZoneInfo

def square(x):
    return x * x

if __name__ == '__main__':
    out = {}
    results = []
    lock = threading.Lock()
    def work(n):
        with lock:
            results.append(n * 2)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    out['threads'] = sorted(results)
    out['echo'] = subprocess.run(['/bin/echo', 'x'], capture_output=True).stdout.decode()
    out['python_child'] = subprocess.run(
        [sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout
    with multiprocessing.Pool(2) as p:
        out['mp'] = p.map(square, range(10))
    paris = ZoneInfo('Europe/Paris')
    out['winter'] = datetime.datetime(2024, 1, 15, 12, tzinfo=paris).utcoffset().total_seconds()
    out['summer'] = datetime.datetime(2024, 7, 15, 12, tzinfo=paris).utcoffset().total_seconds()
    blob = b'sandboxd ' * 1000
    out['zlib'] = zlib.decompress(zlib.compress(blob, 9)) == blob and len(zlib.compress(blob)) < 200
    out['sha256'] = hashlib.sha256(b'abc').hexdigest()
    out['md5'] = hashlib.md5(b'abc').hexdigest()
    import sqlite3
    db = sqlite3.connect(':memory:')
    db.execute('create table t (x integer)')
    db.executemany('insert into t values (?)', [(i,) for i in range(10)])
    out['sqlite'] = db.execute('select sum(x) from t').fetchone()[0]
    out['fork'] = (lambda pid: os.waitpid(pid, 0)[1])(os.fork() or os._exit(7))
    print(json.dumps(out))
"""
    got = report(run(pool, PY, code))
    assert got["threads"] == [n * 2 for n in range(8)]
    assert got["echo"] == "x\n"
    assert got["python_child"] == "42\n"
    assert got["mp"] == [x * x for x in range(10)]
    assert got["winter"] == 3600
    assert got["summer"] == 7200
    assert got["zlib"] is True
    assert got["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert got["md5"] == "900150983cd24fb0d6963f7d28e17f72"
    assert got["sqlite"] == 45
    assert os.waitstatus_to_exitcode(got["fork"]) == 7


def test_python_name_is_main_and_main_module(pool: Pool) -> None:
    code = (
        "import sys\n"
        "assert __name__ == '__main__'\n"
        "print(__name__, sys.modules['__main__'].__file__, sys.modules['__main__'] is\n"
        "      sys.modules[__name__], sys.argv[0])\n"
    )
    assert ok(run(pool, PY, code)).stdout == b"__main__ /work/main.py True main.py\n"


def test_python_can_import_its_own_modules_and_tempfiles(pool: Pool) -> None:
    code = (
        "import tempfile, os\n"
        "import helper\n"
        "with tempfile.NamedTemporaryFile('w', delete=False) as f:\n"
        "    f.write('t')\n"
        "print(helper.X, open(f.name).read(), os.path.dirname(f.name))\n"
    )
    out = ok(run(pool, PY, code, files={"helper.py": b"X = 'helped'\n"}))
    assert out.stdout == b"helped t /tmp\n"


# -- JavaScript: node semantics -----------------------------------------------------------

NODE_BUILTINS = [
    "assert",
    "buffer",
    "child_process",
    "crypto",
    "dns",
    "events",
    "fs",
    "http",
    "https",
    "net",
    "os",
    "path",
    "perf_hooks",
    "querystring",
    "readline",
    "stream",
    "string_decoder",
    "timers",
    "url",
    "util",
    "v8",
    "vm",
    "worker_threads",
    "zlib",
]


def test_javascript_require_of_builtins(pool: Pool) -> None:
    code = (
        f"const names = {json.dumps(NODE_BUILTINS)};\n"
        "const out = {};\n"
        "for (const n of names) { out[n] = typeof require(n); out['node:' + n] =\n"
        "  require('node:' + n) === require(n); }\n"
        "console.log(JSON.stringify(out));\n"
    )
    got = report(run(pool, JS, code))
    for name in NODE_BUILTINS:
        assert got[name] in ("object", "function"), name
        assert got[f"node:{name}"] is True, name


def test_javascript_timers_and_promises_finish_before_exit(pool: Pool) -> None:
    code = (
        "setTimeout(() => console.log('timeout 50'), 50);\n"
        "setTimeout(() => console.log('timeout 10'), 10);\n"
        "setImmediate(() => console.log('immediate'));\n"
        "Promise.resolve().then(() => console.log('microtask'));\n"
        "process.nextTick(() => console.log('tick'));\n"
        "process.on('exit', (code) => console.log('exit', code));\n"
        "console.log('sync');\n"
    )
    out = ok(run(pool, JS, code))
    lines = out.stdout.decode().splitlines()
    assert lines[:3] == ["sync", "tick", "microtask"], lines
    # setImmediate against a 10 ms timer is a race in node itself (it depends on how long the
    # first turn of the loop takes); the two timers keep their order, 'exit' comes last.
    assert sorted(lines[3:5]) == ["immediate", "timeout 10"], lines
    assert lines[5:] == ["timeout 50", "exit 0"], lines
    assert out.usage.wall_time_us >= 50_000


def test_javascript_async_await(pool: Pool) -> None:
    code = (
        "const sleep = (ms) => new Promise((r) => setTimeout(r, ms));\n"
        "async function main() {\n"
        "  const results = await Promise.all([1, 2, 3].map(async (n) => {\n"
        "    await sleep(10 * n); return n * n; }));\n"
        "  await sleep(20);\n"
        "  console.log(JSON.stringify(results));\n"
        "}\n"
        "main().then(() => console.log('done'));\n"
    )
    assert ok(run(pool, JS, code)).stdout == b"[1,4,9]\ndone\n"


def test_javascript_child_process_crypto_zlib_and_workers(pool: Pool) -> None:
    code = (
        "const cp = require('child_process'), crypto = require('crypto'), zlib = require('zlib');\n"
        "const { Worker } = require('worker_threads');\n"
        "const out = {};\n"
        "out.execSync = cp.execSync('echo x').toString();\n"
        "out.spawnSync = cp.spawnSync('/bin/echo', ['y']).stdout.toString();\n"
        "out.sha256 = crypto.createHash('sha256').update('abc').digest('hex');\n"
        "out.hmac = crypto.createHmac('sha256', 'k').update('abc').digest('hex');\n"
        "out.random = crypto.randomBytes(16).length;\n"
        "out.uuid = typeof crypto.randomUUID();\n"
        "const blob = Buffer.from('sandboxd '.repeat(1000));\n"
        "out.zlib = zlib.gunzipSync(zlib.gzipSync(blob)).equals(blob);\n"
        "cp.exec('echo async', (err, stdout) => {\n"
        "  out.exec = stdout;\n"
        "  const w = new Worker(\"require('worker_threads').parentPort.postMessage(6 * 7)\",\n"
        "                       { eval: true });\n"
        "  w.on('message', (m) => { out.worker = m; console.log(JSON.stringify(out)); });\n"
        "});\n"
    )
    got = report(run(pool, JS, code))
    assert got["execSync"] == "x\n"
    assert got["spawnSync"] == "y\n"
    assert got["exec"] == "async\n"
    assert got["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert got["hmac"] == hmac.new(b"k", b"abc", "sha256").hexdigest()
    assert got["random"] == 16
    assert got["uuid"] == "string"
    assert got["zlib"] is True
    assert got["worker"] == 42


def test_javascript_stdin_via_events(pool: Pool) -> None:
    code = (
        "const chunks = [];\n"
        "process.stdin.on('data', (c) => chunks.push(c));\n"
        "process.stdin.on('end', () => {\n"
        "  const all = Buffer.concat(chunks);\n"
        "  process.stdout.write(all);\n"
        "  process.stderr.write(`bytes=${all.length}`);\n"
        "});\n"
    )
    data = BINARY * 2000  # larger than one pipe buffer: several 'data' events
    out = ok(run(pool, JS, code, stdin=data))
    assert out.stdout == data
    assert out.stderr == f"bytes={len(data)}".encode()


def test_javascript_readline_over_stdin(pool: Pool) -> None:
    code = (
        "const rl = require('readline').createInterface({ input: process.stdin });\n"
        "let n = 0; rl.on('line', (l) => { n += Number(l); });\n"
        "rl.on('close', () => console.log(n));\n"
    )
    stdin = "".join(f"{i}\n" for i in range(1000)).encode()
    assert ok(run(pool, JS, code, stdin=stdin)).stdout == b"499500\n"
