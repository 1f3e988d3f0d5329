"""`sandboxd serve` with the profile's hooks installed: `python -m bench.profile.daemon
--stages FILE serve ARGS...` runs the daemon's own `main(["serve", ...])` in this process
after wrapping (here only, hooks.py) the pool's and the servicer's methods and the Sandbox
service's request decoder and response encoder.

Each Execute appends one JSON line to FILE: {"execution_id": ..., "marks": {key: monotonic
seconds}}, from "received" (its ExecuteRequest decoded) to "encoded" (its ExecuteResponse
encoded, the last thing before gRPC sends it). Only Execute calls are recorded, one at a
time (the profile calls sequentially). A missing method makes it exit 3 naming it, before
anything listens.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.profile.hooks import ENGINE_HOOKS, SERVICER_HOOKS, HookMissing, Recorder, install

EXIT_HOOK_MISSING = 3
DECODER = "lenient_deserializer"  # what sandboxd.api.service builds each request decoder with


def _wrap_codecs(recorder: Recorder, write: Callable[[dict[str, Any]], None]) -> None:
    """Time the ExecuteRequest's decoding and the ExecuteResponse's encoding: the first and
    last steps of an Execute that run in Python."""
    import grpc

    from sandboxd.api import service
    from sandboxd_client.proto import sandbox_pb2 as pb

    lenient = getattr(service, DECODER, None)
    if not callable(lenient):
        raise HookMissing(
            "cannot profile: sandboxd.api.service.lenient_deserializer is gone (bench/profile/"
            "daemon.py times the request's decoding through it: update it)"
        )
    handler = grpc.unary_unary_rpc_method_handler

    def deserializer(message_type: Any) -> Callable[[bytes], Any]:
        decode: Callable[[bytes], Any] = lenient(message_type)
        if message_type is not pb.ExecuteRequest:
            return decode

        def timed_decode(data: bytes) -> Any:
            message = decode(data)
            recorder.arm(received=time.monotonic())
            return message

        return timed_decode

    def method_handler(behavior: Any, request_deserializer: Any = None, **kwargs: Any) -> Any:
        encode = kwargs.pop("response_serializer", None)
        if encode is not None:

            def timed_encode(message: Any) -> bytes:
                data: bytes = encode(message)
                if isinstance(message, pb.ExecuteResponse) and recorder.armed:
                    recorder.mark("encoded")
                    execution_id = getattr(message, "execution_id", "") or recorder.execution_id
                    write({"execution_id": execution_id, "marks": recorder.disarm()})
                return data

            kwargs["response_serializer"] = timed_encode
        return handler(behavior, request_deserializer=request_deserializer, **kwargs)

    setattr(service, DECODER, deserializer)
    grpc.unary_unary_rpc_method_handler = method_handler  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "--stages":
        print("usage: python -m bench.profile.daemon --stages FILE serve ARGS...", file=sys.stderr)
        return 2
    path, daemon_args = args[1], args[2:]
    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the daemon's life
    lock = threading.Lock()

    def write(entry: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(entry) + "\n")
            out.flush()

    recorder = Recorder()
    try:
        install([*ENGINE_HOOKS, *SERVICER_HOOKS], recorder)
        _wrap_codecs(recorder, write)
    except HookMissing as exc:
        print(f"bench.profile.daemon: {exc}", file=sys.stderr)
        return EXIT_HOOK_MISSING

    from sandboxd.cli.main import main as sandboxd_main

    try:
        return sandboxd_main(daemon_args)
    finally:
        out.close()


if __name__ == "__main__":
    sys.exit(main())
