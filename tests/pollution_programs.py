"""Programs that pollute everything a shared runtime would carry over, and the checks that
the next execution sees a pristine machine (used by tests/pool and, through gRPC, tests/e2e)."""

from __future__ import annotations

from sandboxd_pool import Runtime

PY = Runtime.PYTHON
JS = Runtime.JAVASCRIPT

POLLUTE = {
    PY: r"""
import builtins, json, os, sys, types
print("A-ran", flush=True)
builtins.POLLUTED = 1
builtins.print = lambda *a, **k: sys.__stdout__.write("EVIL\n")
builtins.open = lambda *a, **k: None
json.dumps = lambda *a, **k: "EVIL"
os.environ["POLLUTED"] = "1"
os.putenv("POLLUTED_PUTENV", "1")
sys.modules["polluter_marker"] = types.ModuleType("polluter_marker")
sys.modules["base64"] = types.ModuleType("base64")
sys.path.insert(0, "/tmp")
for d in ("/tmp", "/work", "/dev/shm"):
    with os.fdopen(os.open(f"{d}/polluted.txt", os.O_CREAT | os.O_WRONLY, 0o666), "w") as f:
        f.write("A was here")
for shadow in ("/work/json.py", "/tmp/base64.py", "/work/hashlib.py"):
    with os.fdopen(os.open(shadow, os.O_CREAT | os.O_WRONLY, 0o666), "w") as f:
        f.write("EVIL = True\n")
os.makedirs("/work/node_modules/leftpad", exist_ok=True)
with os.fdopen(os.open("/work/node_modules/leftpad/index.js", os.O_CREAT | os.O_WRONLY, 0o666), "w") as f:
    f.write("module.exports = 'EVIL';")
for target in ("/usr/lib/sitecustomize.py", "/etc/profile.d/evil.sh", "/opt/sandboxd/python_boot.py"):
    try:
        with os.fdopen(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666), "w") as f:
            f.write("EVIL = True\n")
        sys.__stdout__.write(f"WROTE {target}\n")
    except OSError:
        pass
sys.setrecursionlimit(50)
os.umask(0o777)
""",
    JS: r"""
const fs = require('fs');
const Module = require('module');
console.log('A-ran');
for (const d of ['/tmp', '/work', '/dev/shm']) fs.writeFileSync(d + '/polluted.txt', 'A was here');
fs.mkdirSync('/work/node_modules/leftpad', { recursive: true });
fs.writeFileSync('/work/node_modules/leftpad/index.js', "module.exports = 'EVIL';");
fs.writeFileSync('/work/json.py', 'EVIL = True\n');
for (const target of ['/usr/lib/node_modules/evil.js', '/opt/sandboxd/node_boot.js', '/etc/evil']) {
  try { fs.writeFileSync(target, 'EVIL'); process.stdout.write(`WROTE ${target}\n`); } catch (e) {}
}
console.log = () => process.stdout.write('EVIL\n');
console.error = () => {};
Object.prototype.polluted = 1;
Array.prototype.push = function () { return 'EVIL'; };
String.prototype.toUpperCase = function () { return 'EVIL'; };
globalThis.XMLHttpRequest = null;
globalThis.fetch = () => 'EVIL';
globalThis.POLLUTED = 1;
JSON.stringify = () => 'EVIL';
Math.random = () => 4;
process.env.POLLUTED = '1';
process.umask(0o777);
require.cache['/work/helper.js'] = { id: '/work/helper.js', filename: '/work/helper.js',
  loaded: true, exports: 'EVIL', children: [], paths: [] };
Module.prototype.require = function () { return 'EVIL'; };
""",
}

CHECK = {
    PY: r"""
import builtins, json, os, sys, base64
r = {}
r["print"] = type(print).__name__
r["open"] = type(open).__name__
r["builtins_polluted"] = hasattr(builtins, "POLLUTED")
r["json_dumps"] = json.dumps({"a": 1})
r["json_from"] = json.__file__.startswith("/work")
r["base64"] = base64.b64encode(b"hi").decode()
r["env"] = dict(os.environ)
r["marker_module"] = "polluter_marker" in sys.modules
r["sys_path_tmp"] = "/tmp" in sys.path
r["recursion_limit_ok"] = sys.getrecursionlimit() >= 1000
old = os.umask(0o022); r["umask"] = oct(old)
r["work"] = sorted(os.listdir("/work"))
r["tmp"] = sorted(os.listdir("/tmp"))
r["shm"] = sorted(os.listdir("/dev/shm"))
r["helper"] = __import__("helper").VALUE
print(json.dumps(r))
""",
    JS: r"""
const fs = require('fs');
const r = {};
r.protoPolluted = ({}).polluted === undefined ? null : ({}).polluted;
const a = []; r.push = a.push(1);
r.upper = 'abc'.toUpperCase();
r.hasXhr = 'XMLHttpRequest' in globalThis;
r.fetch = typeof fetch === 'function' ? fetch.name : typeof fetch;
r.globalPolluted = 'POLLUTED' in globalThis;
r.random = Math.random() < 1;
r.env = process.env;
r.umask = process.umask(0o022).toString(8);
try { require('leftpad'); r.leftpad = 'FOUND'; } catch (e) { r.leftpad = e.code; }
r.helper = require('./helper.js');
r.work = fs.readdirSync('/work').sort();
r.tmp = fs.readdirSync('/tmp').sort();
r.shm = fs.readdirSync('/dev/shm').sort();
r.stringify = JSON.stringify({ a: 1 });
console.log(JSON.stringify(r));
""",
}

HELPER = {
    PY: {"helper.py": b"VALUE = 'GOOD'\n"},
    JS: {"helper.js": b"module.exports = 'GOOD';\n"},
}
CLEAN_ENV = {"ONLY_MINE": "1"}

EXPECTED = {
    PY: {
        "print": "builtin_function_or_method",
        "open": "builtin_function_or_method",
        "builtins_polluted": False,
        "json_dumps": '{"a": 1}',
        "json_from": False,
        "base64": "aGk=",
        "env": CLEAN_ENV,
        "marker_module": False,
        "sys_path_tmp": False,
        "recursion_limit_ok": True,
        "umask": "0o22",
        "work": ["helper.py", "main.py", "out"],
        "tmp": [],
        "shm": [],
        "helper": "GOOD",
    },
    JS: {
        "protoPolluted": None,
        "push": 1,
        "upper": "ABC",
        "hasXhr": False,
        "fetch": "fetch",
        "globalPolluted": False,
        "random": True,
        "env": CLEAN_ENV,
        "umask": "22",
        "leftpad": "MODULE_NOT_FOUND",
        "helper": "GOOD",
        "work": ["helper.js", "main.js", "out"],
        "tmp": [],
        "shm": [],
        "stringify": '{"a":1}',
    },
}
