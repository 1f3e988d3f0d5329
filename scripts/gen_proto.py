"""Generate the committed protobuf/gRPC stubs of `sandboxd_client` from proto/ (docs/development.md).

    python scripts/gen_proto.py            regenerate client/sandboxd_client/proto/
    python scripts/gen_proto.py --check    exit 1 if the committed stubs differ (used by a test)

protoc's gRPC plugin writes `from sandboxd.v1 import sandbox_pb2`, an absolute import that
would collide with the daemon's own `sandboxd` package; it is rewritten to a relative import.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO = "sandboxd/v1/sandbox.proto"
OUT_DIR = ROOT / "client" / "sandboxd_client" / "proto"
FILES = ("sandbox_pb2.py", "sandbox_pb2.pyi", "sandbox_pb2_grpc.py")


def generate() -> dict[str, str]:
    """The stubs as {file name: text}, generated from proto/ into a temporary directory."""
    from grpc_tools import protoc  # a development dependency (requirements-dev.txt)

    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_DIR}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(PROTO_DIR / PROTO),
            ]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed with status {rc}")
        out = {}
        for name in FILES:
            text = (pathlib.Path(tmp) / "sandboxd" / "v1" / name).read_text()
            text = text.replace(
                "from sandboxd.v1 import sandbox_pb2 as", "from . import sandbox_pb2 as"
            )
            out[name] = text
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stubs = generate()
    if args.check:
        stale = [
            n
            for n, t in stubs.items()
            if not (OUT_DIR / n).is_file() or (OUT_DIR / n).read_text() != t
        ]
        if stale:
            print(f"stale stubs (run scripts/gen_proto.py): {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in stubs.items():
        (OUT_DIR / name).write_text(text)
    print(f"wrote {', '.join(stubs)} to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
