"""What the e2e benchmark executes: hello and a ~1 MB JSON round trip, in Python and Node.

The JSON document holds only integers, ASCII strings, booleans and nulls, so that both
runtimes print it back byte-exactly predictable: Python's `json.dump` with its default
separators reproduces the input (which is made with the same defaults), Node's
`JSON.stringify` gives the compact form. Every call's stdout is compared with that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache

from sandboxd_client import Limits

JSON_TARGET_BYTES = 1_000_000
# Outputs are ~1 MB; the default per-stream cap is 1 MiB, so ask for room explicitly.
JSON_LIMITS = Limits(max_output_bytes=4 * 1024 * 1024)

PYTHON_JSON = "import json,sys; d=json.load(sys.stdin); json.dump(d, sys.stdout)"
NODE_JSON = (
    "const d = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    " process.stdout.write(JSON.stringify(d));"
)


@dataclass(frozen=True)
class Scenario:
    key: str  # "python-hello", ...
    title: str
    runtime: str  # "python" or "javascript" (sandboxd_client.Runtime values)
    code: str
    stdin: bytes = b""
    expected_stdout: bytes = b"hello\n"
    limits: Limits | None = field(default=None)


def json_document(target_bytes: int = JSON_TARGET_BYTES) -> list[dict[str, object]]:
    """A deterministic list of records whose default `json.dumps` is just under target_bytes."""
    records: list[dict[str, object]] = []
    size = 2  # "[]"
    i = 0
    while True:
        record: dict[str, object] = {
            "id": i,
            "name": f"item-{i:06d}",
            "tags": ["alpha", "beta", f"t{i % 97}"],
            "active": i % 3 == 0,
            "parent": None if i % 5 else i // 5,
            "score": (i * 7919) % 100_003,
        }
        added = len(json.dumps(record)) + (2 if records else 0)  # ", " between records
        if size + added > target_bytes:
            return records
        records.append(record)
        size += added
        i += 1


@cache
def json_payloads(target_bytes: int = JSON_TARGET_BYTES) -> tuple[bytes, bytes, bytes]:
    """(stdin, Python's expected stdout, Node's expected stdout)."""
    doc = json_document(target_bytes)
    default = json.dumps(doc).encode()
    compact = json.dumps(doc, separators=(",", ":")).encode()
    return default, default, compact


def scenarios(runtimes: list[str], json_bytes: int = JSON_TARGET_BYTES) -> list[Scenario]:
    stdin, py_out, node_out = json_payloads(json_bytes)
    kb = len(stdin) / 1000
    chosen = []
    if "python" in runtimes:
        chosen.append(Scenario("python-hello", "Python hello", "python", "print('hello')"))
    if "javascript" in runtimes:
        chosen.append(Scenario("node-hello", "Node hello", "javascript", "console.log('hello')"))
    if "python" in runtimes:
        chosen.append(
            Scenario(
                "python-json",
                f"Python {kb:.0f} kB JSON stdin -> parse -> stdout",
                "python",
                PYTHON_JSON,
                stdin,
                py_out,
                JSON_LIMITS,
            )
        )
    if "javascript" in runtimes:
        chosen.append(
            Scenario(
                "node-json",
                f"Node {kb:.0f} kB JSON stdin -> parse -> stdout",
                "javascript",
                NODE_JSON,
                stdin,
                node_out,
                JSON_LIMITS,
            )
        )
    return chosen
