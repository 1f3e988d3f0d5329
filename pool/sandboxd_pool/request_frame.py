"""The one request frame a worker reads on its control socket (see _in_worker/python_boot.py).

u32 big-endian header length | header JSON | code bytes | file bytes (in header order)
"""

from __future__ import annotations

import json
import marshal

from .jail.policy import WORK_DIR
from .types import ExecutionRequest, Runtime

MAIN_FILE = {Runtime.PYTHON: "main.py", Runtime.JAVASCRIPT: "main.js"}


def encode(request: ExecutionRequest) -> list[bytes]:
    """The frame as a list of buffers (no copy of large files)."""
    code = request.code.encode("utf-8")
    files = [(path, data) for path, data in request.files.items()]
    fields = {
        "workdir": WORK_DIR,
        "main": MAIN_FILE[request.runtime],
        "args": list(request.args),
        "env": dict(request.env),
        "code_size": len(code),
        "files": [[path, len(data)] for path, data in files],
    }
    if request.runtime is Runtime.PYTHON:
        header = marshal.dumps(fields, 4)
    else:
        header = json.dumps(fields).encode()
    return [len(header).to_bytes(4, "big"), header, code, *(data for _, data in files)]
