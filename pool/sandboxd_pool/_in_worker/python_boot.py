"""Python worker bootstrap: warm up, say ready, read one request, run it as __main__.

Runs inside the jail as `python -I -S /opt/sandboxd/python_boot.py`. fd 3 is the control
socket: this side writes b"R" when warm, then reads one frame:
    u32 big-endian header length | header JSON | code bytes | file bytes (in header order)
Everything the parent decides (verdict, usage) comes from kernel facts, not from here.
"""

import gc
import json
import os
import sys
import traceback
import types

CONTROL_FD = 3


def _read_exact(n):
    chunks = []
    while n:
        chunk = os.read(CONTROL_FD, min(n, 1 << 20))
        if not chunk:
            os._exit(0)  # the parent went away before sending a request
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _warm_up():
    compile("print(1)", "<warm-up>", "exec")
    json.loads(json.dumps({"a": [1, 2.5, "x"]}))
    gc.collect()
    gc.freeze()


def _receive_request():
    os.write(CONTROL_FD, b"R")
    size = int.from_bytes(_read_exact(4), "big")
    header = json.loads(_read_exact(size))
    code = _read_exact(header["code_size"])
    files = [(path, _read_exact(length)) for path, length in header["files"]]
    os.close(CONTROL_FD)
    return header, code, files


def _write_files(workdir, files):
    for rel, data in files:
        path = os.path.join(workdir, rel)
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _run(header, code, files):
    workdir = header["workdir"]
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(header["env"])
    _write_files(workdir, files)
    main_path = os.path.join(workdir, header["main"])
    with open(main_path, "wb") as f:
        f.write(code)
    sys.argv = [header["main"], *header["args"]]
    sys.path[0:0] = [workdir]
    main = types.ModuleType("__main__")
    main.__file__ = main_path
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    try:
        compiled = compile(code, main_path, "exec")
        exec(compiled, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        sys.exit(1)


_warm_up()
_run(*_receive_request())
