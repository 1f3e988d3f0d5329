"""The one request frame a worker reads on its control socket (see _in_worker/python_boot.py).

u32 big-endian header length | header | code bytes | event bytes | file bytes (header order)

The header is marshal for Python, JSON for JavaScript. In HANDLER mode it also carries what
the handler's `context` reports: the execution id, the memory limit and the wall-time limit.
With egress, `egress` tells the bootstrap where the proxy is, the jail's trust bundle and the
pool's CA certificate (never a secret: the proxy adds those outside).
"""

from __future__ import annotations

import json
import marshal

from .egress.trust import JAIL_CA_BUNDLE
from .jail.network import PROXY_HOST, PROXY_PORT
from .jail.policy import WORK_DIR
from .types import ExecutionRequest, Limits, Mode, Runtime

MAIN_FILE = {Runtime.PYTHON: "main.py", Runtime.JAVASCRIPT: "main.js"}


def egress_header(ca_pem: str) -> dict[str, str]:
    return {
        "proxy": f"http://{PROXY_HOST}:{PROXY_PORT}",
        "ca_file": JAIL_CA_BUNDLE,
        "ca_pem": ca_pem,
    }


def encode(
    request: ExecutionRequest,
    *,
    execution_id: str = "",
    limits: Limits | None = None,
    egress_ca_pem: str = "",
) -> list[bytes]:
    """The frame as a list of buffers (no copy of large files). `egress_ca_pem`: the request
    has egress (the pool's CA certificate)."""
    code = request.code.encode("utf-8")
    event = bytes(request.event) if request.mode is Mode.HANDLER else b""
    limits = limits or request.limits
    files = [(path, data) for path, data in request.files.items()]
    fields = {
        "workdir": WORK_DIR,
        "main": MAIN_FILE[request.runtime],
        "args": list(request.args),
        "env": dict(request.env),
        "code_size": len(code),
        "files": [[path, len(data)] for path, data in files],
        "mode": request.mode.value,
        "event_size": len(event),
        "execution_id": execution_id,
        "memory_limit_mb": limits.memory_bytes // (1024 * 1024),
        "wall_time_ms": limits.wall_time_ms,
    }
    if egress_ca_pem:
        fields["egress"] = egress_header(egress_ca_pem)
    if request.runtime is Runtime.PYTHON:
        header = marshal.dumps(fields, 4)
    else:
        header = json.dumps(fields).encode()
    return [len(header).to_bytes(4, "big"), header, code, event, *(data for _, data in files)]
