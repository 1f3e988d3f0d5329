"""What `python -m bench cluster` runs against: its own redis-server and sandboxd nodes.

- redis:  `redis-server --port <free> --dir <tmp> --appendonly yes --appendfsync always
          --save ""`: durable like the tests' (an accepted job is on disk), no system service
- a node: `python -m sandboxd serve --listen 127.0.0.1:0 --redis-url ... --runtimes python`
          (bench.common.servers spawns it and reads the address from its "listening" line)
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common.servers import ServerFailed, ServerProcess, start_daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProcess:
    proc: subprocess.Popen[bytes]
    port: int
    directory: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        binary = shutil.which("redis-server") or "redis-server"
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.directory.cleanup()


def start_redis() -> RedisProcess:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerFailed("redis-server is not installed (scripts/install-system-deps.sh)")
    directory = tempfile.TemporaryDirectory(prefix="sandboxd-bench-redis-")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            directory.name,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(Path(directory.name) / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    redis = RedisProcess(proc, port, directory)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return redis
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            redis.stop()
            raise ServerFailed(f"redis-server did not start on port {port}")
        time.sleep(0.05)


def start_node(
    redis_url: str, warm_workers: int, max_concurrent: int, python: str, name: str
) -> ServerProcess:
    settings = ("--redis-url", redis_url, "--max-concurrent", str(max_concurrent))
    return start_daemon(warm_workers, python, None, *settings, name=name)
