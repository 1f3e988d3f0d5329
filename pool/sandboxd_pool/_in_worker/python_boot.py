"""Python worker bootstrap: warm up, say ready, read one request, run it as __main__.

Runs inside the jail as `python -I -S -B /opt/sandboxd/python_boot.py`, or is imported by
python_template.py, whose forked children call serve_one_request(). fd 3 is the control
socket: this side writes b"R" when warm, then reads one frame:
    u32 big-endian header length | header (marshal) | code | event | files (header order)
The header is marshal, not JSON, so that booting does not pay for importing json (and re,
enum, ...): the user's program pays for what it imports, as under a bare interpreter.

HANDLER mode (header["mode"] == "handler"): the code runs as a module named `main` (not
__main__), then `handler(event, context)` is called; its return value, as JSON, is written to
the control socket, which is then closed (the close marks the end). Only this mode imports
json. The parent counts a result only if one arrived and the exit status is 0.
Everything the parent decides (verdict, usage) comes from kernel facts, not from here.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import marshal
import os
import sys

MYPY = False
if MYPY:  # for the type checker only: importing typing would cost every boot
    from typing import Any

CONTROL_FD = 3
BOOT_PREFIX = "/opt/sandboxd"  # frames of the bootstrap (and template) are not the user's


def _read_exact(n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(CONTROL_FD, min(n, 1 << 20))
        if not chunk:
            os._exit(0)  # the parent went away before sending a request
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _prefault() -> None:
    """In the worker itself (after its fork): run what a request runs, once, so that the pages
    it writes are copied now rather than while the program waits; and do now what does not
    depend on the request: the environment emptied (the request's alone is set), the output
    folder made in the working directory (the jail's /work, where the worker starts)."""
    namespace: dict[str, Any] = {"__builtins__": __builtins__, "__name__": "__warm__"}
    exec(compile("x = [str(i) for i in range(50)]\nprint", "<warm-up>", "exec"), namespace)
    marshal.loads(marshal.dumps({"workdir": "/work", "env": {}, "files": [], "args": []}))
    os.environ.clear()
    os.mkdir("out")  # files left here come back with the result (files_out.py)
    with open(os.path.join("out", "warm"), "wb") as f:
        f.write(b"")
    os.unlink(os.path.join("out", "warm"))


def _warm_up() -> None:
    compile("print(1)", "<warm-up>", "exec")
    gc.collect()
    gc.freeze()


# Native libraries that start a thread pool at import (OpenBLAS, OpenMP, MKL) would leave the
# template with threads that its children (cloned without glibc's fork handlers) do not have:
# one thread each, which also keeps a program within its own pids limit.
SINGLE_THREADED_NATIVE = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def load_environment(environment: dict[str, Any]) -> None:
    """Before any request: put an environment's packages on sys.path (after the standard
    library) and import its preload list, so a program's `import pandas` costs nothing.
    The process must stay single-threaded (the template clones its workers)."""
    if not environment["path"]:
        return
    sys.path.append(environment["path"])
    os.environ.update(SINGLE_THREADED_NATIVE)
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")  # the template's own tmpfs
    os.environ.setdefault("MPLBACKEND", "Agg")  # no display: never probe for a GUI toolkit
    _seed_matplotlib_cache(environment["path"], os.environ["MPLCONFIGDIR"])
    import importlib

    for name in environment["preload"]:
        importlib.import_module(name)
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        raise RuntimeError(
            f"the preload list {environment['preload']} left {threads} threads running; a "
            "Python template must stay single-threaded"
        )


def _seed_matplotlib_cache(path: str, config_dir: str) -> None:
    """matplotlib's font list, made when the environment was built (`sandboxd environments
    build` writes it under .sandboxd-cache/matplotlib: its own fonts only, the jail has no
    others), copied into its config directory, which must be writable, so that importing it
    neither runs fc-list (which fails in the jail) nor starts a font-scanning timer thread."""
    cache = f"{path}/.sandboxd-cache/matplotlib"
    try:
        names = os.listdir(cache)
    except OSError:
        return
    os.makedirs(config_dir, exist_ok=True)
    for name in names:
        with open(f"{cache}/{name}", "rb") as src, open(f"{config_dir}/{name}", "wb") as dst:
            dst.write(src.read())


# The exit helper: a task made with clone(CLONE_VM) that shares the program's address space and
# nothing else, blocked for good, so that the program's exit does not tear that address space
# down (a page-table walk over every page the program shares with its template: ~0.4 ms for
# the bare runtime here, ~2 ms with pandas imported). The exit is then reported at once; the
# helper dies with the sandbox when the init exits, and its exit does the teardown, after the
# answer. It runs no Python: clone starts it in libc's setcontext on a context (makecontext)
# that calls close_range(0, ~0, 0), so that it holds none of the program's descriptors (the
# pool waits for EOF on the pipes), then links to one that calls pause() with every signal
# blocked (getcontext saved that mask), forever. Exit signal 0: the program's own wait()
# never sees it. It is one of the sandbox's tasks (max_processes counts it). Only where the
# offsets below are known (glibc on x86-64 and aarch64); anywhere else, or if a step fails, there
# is no helper and the exit pays for its teardown as before.
# Its code and stack are the program's memory, so the program can make it run code of its own
# (stop it, rewrite the instruction pause() restarts at, resume it): it must hold no more than a
# child of the program. The pool sets the request's rlimits on the program after the helper was
# cloned (jail/rlimits.limit_running_worker: CPU time, processes, and data without a memory
# cgroup), so once the request is read the helper is given the program's own
# (_limit_exit_helper), or killed. Without that, a helper running the program's code kept the
# boot limits: unlimited CPU time, 1024 processes, RLIMIT_DATA at the ceiling.
_CLONE_VM = 0x00000100
_UCONTEXT_BYTES = 4096  # sizeof(ucontext_t) is under 1 KiB on x86-64 and aarch64
_UC_LINK, _UC_STACK_SP, _UC_STACK_SIZE = 8, 16, 32  # offsets, the same on both
_HELPER_STACK_BYTES = 64 * 1024
_exit_helper_memory: list[object] = []  # kept alive: the helper runs on it
_exit_helper: list[int] = []  # its pid, once cloned


def _start_exit_helper() -> None:
    if os.uname().machine not in ("x86_64", "aarch64"):
        return
    with contextlib.suppress(Exception):  # no helper: only the exit's speed depends on it
        _clone_exit_helper()


def _clone_exit_helper() -> None:
    import ctypes
    import resource  # noqa: F401 - for _limit_exit_helper, loaded while warming up
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "close_range"):
        return
    stacks = [ctypes.create_string_buffer(_HELPER_STACK_BYTES) for _ in range(3)]
    contexts = [ctypes.create_string_buffer(_UCONTEXT_BYTES) for _ in range(2)]
    _exit_helper_memory.extend((stacks, contexts))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        for context, stack in zip(contexts, stacks, strict=False):
            if libc.getcontext(context) != 0:
                return
            address = ctypes.addressof(context)
            ctypes.c_void_p.from_address(address + _UC_STACK_SP).value = ctypes.addressof(stack)
            ctypes.c_size_t.from_address(address + _UC_STACK_SIZE).value = _HELPER_STACK_BYTES
        close_all, wait = (ctypes.addressof(c) for c in contexts)
        ctypes.c_void_p.from_address(close_all + _UC_LINK).value = wait
        ctypes.c_void_p.from_address(wait + _UC_LINK).value = None
        make = libc.makecontext
        make.restype = None
        make(ctypes.c_void_p(close_all), ctypes.cast(libc.close_range, ctypes.c_void_p),
             ctypes.c_int(3), ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(0))  # fmt: skip
        make(ctypes.c_void_p(wait), ctypes.cast(libc.pause, ctypes.c_void_p), ctypes.c_int(0))
        clone = libc.clone
        clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        top = ctypes.addressof(stacks[2]) + _HELPER_STACK_BYTES - 64
        pid = clone(ctypes.cast(libc.setcontext, ctypes.c_void_p), top, _CLONE_VM, close_all)
        if pid > 0:
            _exit_helper.append(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _limit_exit_helper() -> None:
    """Once the request is read (the pool set its limits on this process before sending it):
    the helper gets this process's own limits of those the pool sets per request, as a child
    forked now would; if that fails, it is killed (no helper: only the exit's speed changes)."""
    if not _exit_helper:
        return
    import resource  # both loaded by _clone_exit_helper
    import signal

    pid = _exit_helper[0]
    try:
        for kind in (resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_DATA):
            resource.prlimit(pid, kind, resource.getrlimit(kind))
    except Exception:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _fresh_seeds() -> None:
    """A fork shares the template's random state: reseed what the preload list may hold.
    (The random module reseeds itself after a fork; numpy's global generator does not.)"""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _receive_request() -> tuple[dict[str, Any], bytes, bytes, list[tuple[str, bytes]]]:
    os.write(CONTROL_FD, b"R")
    size = int.from_bytes(_read_exact(4), "big")
    header = marshal.loads(_read_exact(size))
    code = _read_exact(header["code_size"])
    event = _read_exact(header.get("event_size", 0))
    files = [(path, _read_exact(length)) for path, length in header["files"]]
    if header.get("mode") == "handler":
        # Kept for the result, but not handed to the program's own children.
        os.set_inheritable(CONTROL_FD, False)
    else:
        os.close(CONTROL_FD)
    return header, code, event, files


def _write_files(workdir: str, files: list[tuple[str, bytes]]) -> None:
    for rel, data in files:
        path = os.path.join(workdir, rel)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _egress_environment(egress: dict[str, str]) -> dict[str, str]:
    """A request with egress: the proxy in the worker's own namespace for every client that
    reads the variables (urllib.request, requests, httpx, aiohttp with trust_env, pip), the
    sandbox's own loopback left direct, and the jail's trust bundle (the pool's CA in it) for
    those that do not read the system store (requests, httpx)."""
    proxy = egress["proxy"]
    env = {name: proxy for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    env["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"] = egress["ca_file"]
    return env


def _print_exception(e: BaseException) -> None:
    import traceback

    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(BOOT_PREFIX):
        tb = tb.tb_next
    traceback.print_exception(type(e), e, tb)


def _exit_status(e: SystemExit) -> int:
    """The exit status the interpreter gives a SystemExit."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:  # noqa: SIM105 - contextlib would be one more import at boot
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _run(header: dict[str, Any], code: bytes, event: bytes, files: list[tuple[str, bytes]]) -> int:
    workdir = header["workdir"]
    os.chdir(workdir)
    if "egress" in header:
        os.environ.update(_egress_environment(header["egress"]))
    os.environ.update(header["env"])
    _write_files(workdir, files)
    main_path = os.path.join(workdir, header["main"])
    with open(main_path, "wb") as f:
        f.write(code)
    sys.argv = [header["main"], *header["args"]]
    sys.path[0:0] = [workdir]
    handler_mode = header.get("mode") == "handler"
    name = "main" if handler_mode else "__main__"
    main = type(sys)(name)
    main.__file__ = main_path
    main.__dict__["__builtins__"] = __builtins__
    sys.modules[name] = main
    try:
        exec(compile(code, main_path, "exec"), main.__dict__)
        if handler_mode:
            return _call_handler(header, main.__dict__, event)
        status = 0
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        _print_exception(e)
        status = 1
    return status


class _Context:
    """The handler's `context` (Lambda's names)."""

    def __init__(self, header: dict[str, Any], deadline: float) -> None:
        self.execution_id: str = header.get("execution_id", "")
        self.memory_limit_in_mb: int = header.get("memory_limit_mb", 0)
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"<context execution_id={self.execution_id!r}>"


def _call_handler(header: dict[str, Any], namespace: dict[str, Any], event: bytes) -> int:
    """Call handler(event, context) and send its JSON return value. SystemExit and other
    exceptions propagate to _run, which reports them as in script mode."""
    import json
    import time

    # The wall clock started when the parent sent the frame, just before this.
    deadline = time.monotonic() + header.get("wall_time_ms", 0) / 1000
    handler = namespace.get("handler")
    if not callable(handler):
        sys.stderr.write("sandboxd: the code defines no function handler(event, context)\n")
        return 1
    value = handler(json.loads(event or b"null"), _Context(header, deadline))
    try:
        # Strict JSON (no NaN/Infinity), which every client can parse.
        result = json.dumps(value, allow_nan=False).encode("utf-8")
    except Exception as e:
        sys.stderr.write(
            "sandboxd: the handler's return value is not JSON-serialisable: "
            f"{type(e).__name__}: {e}\n"
        )
        return 1
    view = memoryview(result)
    while view:
        view = view[os.write(CONTROL_FD, view) :]
    os.close(CONTROL_FD)
    return 0


def _fast_exit(status: int) -> None:
    """What interpreter shutdown does that a program can observe — wait for non-daemon
    threads, run atexit handlers, flush — then exit without tearing the interpreter down
    (which costs milliseconds and nobody can see)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException as e:
            _print_exception(e)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            status = status or 120  # as the interpreter does when flushing stdout fails
    os._exit(status)


def serve_one_request() -> None:
    """Say ready, run the one request, exit. Never returns."""
    _fresh_seeds()
    _prefault()
    _start_exit_helper()
    request = _receive_request()
    _limit_exit_helper()
    _fast_exit(_run(*request))


if __name__ == "__main__":
    if len(sys.argv) > 1:  # an environment (jail/enter.py boot_environment), as JSON
        import json

        load_environment(json.loads(sys.argv[1]))
    _warm_up()
    serve_one_request()
