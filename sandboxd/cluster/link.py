"""The daemon's connection to Redis (`--redis-url`): the client, its Lua scripts, and whether
Redis is reachable right now.

Every Redis call of the daemon goes through `RedisLink.call`, which remembers whether the last
call reached Redis and logs each transition once ("redis unavailable" as a warning, "redis
available again"), never once per request. A call that cannot reach Redis raises
`RedisDown` (a subclass of errors.Unavailable, so a request that needs Redis is UNAVAILABLE);
callers that can do without Redis (synchronous quotas) catch it and fall back.

The scripts live in scripts/*.lua, one per atomic step. redis-py's `Script` sends
EVALSHA and loads the script again after a Redis restart (NOSCRIPT). The key layout assumes a
single Redis (or a primary with replicas): scripts build some key names themselves, which
Redis Cluster would refuse."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.commands.core import Script

from ..errors import Unavailable

log = logging.getLogger("sandboxd.redis")

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
SOCKET_TIMEOUT_S = 5.0  # a blocking read (XREADGROUP BLOCK) asks for less than this
CONNECT_TIMEOUT_S = 2.0

T = TypeVar("T")


class RedisDown(Unavailable):
    pass


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def load_script(client: redis.Redis, *names: str) -> Script:
    """One script made of scripts/NAME.lua files, concatenated in order (shared local
    functions first)."""
    source = "\n".join((SCRIPTS_DIR / f"{name}.lua").read_text() for name in names)
    return client.register_script(source)


class RedisLink:
    def __init__(self, url: str, prefix: str = "sandboxd:", password: str | None = None) -> None:
        """`password`: used when the URL has none (--redis-password-file and
        SANDBOXD_REDIS_PASSWORD keep it out of the URL, which the process list shows)."""
        self.url = url
        self.where = redacted(url)
        self.prefix = prefix
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            password=password,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            health_check_interval=10,
        )
        self._lock = threading.Lock()
        self._up: bool | None = None  # None: not tried yet
        self._listeners: list[Callable[[bool], None]] = []

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def script(self, *names: str) -> Script:
        return load_script(self.client, *names)

    @property
    def up(self) -> bool:
        return bool(self._up)

    def on_transition(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(up)` after Redis became reachable (True) or unreachable (False)."""
        self._listeners.append(listener)

    def call(self, fn: Callable[[], T], what: str = "") -> T:
        """`fn()` (which uses `self.client`); RedisDown when Redis cannot be reached."""
        try:
            result = fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as e:
            self._mark(False, e)
            raise RedisDown(
                f"Redis at {self.where} is unavailable ({type(e).__name__}); "
                + (what or "retry later")
            ) from None
        except redis.ResponseError as e:
            if str(e).startswith(("LOADING", "MASTERDOWN", "READONLY")):
                self._mark(False, e)
                raise RedisDown(f"Redis at {self.where} is not ready ({e}); {what}") from None
            raise
        self._mark(True, None)
        return result

    def ping(self) -> bool:
        try:
            self.call(self.client.ping)
        except RedisDown:
            return False
        return True

    def _mark(self, up: bool, error: BaseException | None) -> None:
        with self._lock:
            if self._up is up:
                return
            was = self._up
            self._up = up
            listeners = list(self._listeners)
        if up:
            log.info(
                "redis available" if was is None else "redis available again",
                extra={"fields": {"redis": self.where}},
            )
        else:
            log.warning(
                "redis unavailable: synchronous executions use node-local quotas, "
                "Submit/GetExecution/CancelExecution are UNAVAILABLE until it is back",
                extra={"fields": {"redis": self.where, "error": repr(error)}},
            )
        for listener in listeners:
            listener(up)

    def close(self) -> None:
        self.client.close()


def url_problem(url: str) -> str | None:
    """Why redis-py cannot use `url` (a port that is not a number, an unknown option), or
    None. Parses only: the client connects at its first command."""
    try:
        redis.ConnectionPool.from_url(url)
    except (ValueError, TypeError) as e:
        return str(e)
    return None
