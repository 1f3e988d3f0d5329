"""Timing an execution from outside the engine: its methods wrapped in the measuring process.

Nothing here changes the engine's code: `install` replaces, in this process only, a few
methods of sandboxd_pool (and of the daemon's servicer) by wrappers that note
`time.monotonic()` (CLOCK_MONOTONIC, the clock the engine and the sandboxed programs read) at
entry and/or return while a recording is armed, then call the original. The engine's
internal names change as it is worked on: a hook whose method is gone makes `install` raise
HookMissing naming every missing method, never a profile with a stage silently left out.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class HookMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Hook:
    """`target` is "module:Class.method"; `before`/`after` name the timestamps it notes at
    entry and return (None: not noted)."""

    target: str
    before: str | None
    after: str | None


# The embedded path, in the order a call goes through it (docs/benchmarks.md, "profile").
ENGINE_HOOKS = (
    Hook("sandboxd_pool.pool:Pool.execute", "call", "returned"),
    Hook("sandboxd_pool.pool:Pool._take_worker", None, "taken"),
    Hook("sandboxd_pool.worker:Worker._apply_limits", "limits_start", "limits_done"),
    Hook("sandboxd_pool.worker:Worker._send_frame", None, "frame_sent"),
    Hook("sandboxd_pool.worker:Worker._supervise", None, "exit_seen"),
    Hook("sandboxd_pool.worker:Worker._outcome", None, "outcome_built"),
)
# The daemon's servicer around the engine call (the request's decoding and the response's
# encoding are timed by bench.profile.daemon, which wraps gRPC's (de)serializers).
SERVICER_HOOKS = (Hook("sandboxd.api.servicer:SandboxServicer.Execute", "handler", "handler_done"),)


class Recorder:
    """The timestamps of the one execution being recorded (calls are made one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, float] | None = None
        self.execution_id = ""

    def arm(self, **marks: float) -> None:
        with self._lock:
            self._current = dict(marks)
            self.execution_id = ""

    def disarm(self) -> dict[str, float]:
        with self._lock:
            marks, self._current = self._current or {}, None
            return marks

    def mark(self, key: str, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        with self._lock:
            if self._current is not None:
                self._current.setdefault(key, now)  # the first time on this execution's path

    @property
    def armed(self) -> bool:
        return self._current is not None


def resolve(target: str) -> tuple[Any, str]:
    """(the class, the method's name) of "module:Class.method"; HookMissing if it is gone."""
    module_name, _, path = target.partition(":")
    owner_name, _, method = path.rpartition(".")
    try:
        owner: Any = importlib.import_module(module_name)
        for part in owner_name.split("."):
            owner = getattr(owner, part)
    except (ImportError, AttributeError) as exc:
        raise HookMissing(f"{module_name}.{owner_name}: {exc}") from exc
    if not callable(getattr(owner, method, None)):
        raise HookMissing(f"{module_name}.{owner_name}.{method}")
    return owner, method


def _wrapped(original: Callable[..., Any], hook: Hook, recorder: Recorder) -> Callable[..., Any]:
    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if hook.before:
            recorder.mark(hook.before)
        result = original(*args, **kwargs)
        if hook.after:
            recorder.mark(hook.after)
        execution_id = getattr(result, "execution_id", None)
        if recorder.armed and isinstance(execution_id, str) and execution_id:
            recorder.execution_id = execution_id
        return result

    timed.__bench_hook__ = hook  # type: ignore[attr-defined]
    return timed


def install(hooks: Iterable[Hook], recorder: Recorder) -> None:
    """Wrap every hook's method (all or none: HookMissing lists every method that is gone)."""
    hooks = list(hooks)
    resolved = []
    missing = []
    for hook in hooks:
        try:
            resolved.append((hook, *resolve(hook.target)))
        except HookMissing as exc:
            missing.append(str(exc))
    if missing:
        raise HookMissing(
            "cannot profile: the engine no longer has "
            + "; ".join(missing)
            + " (bench/profile/hooks.py names the method each stage is timed by: update it "
            "to the engine's current names)"
        )
    for hook, owner, method in resolved:
        setattr(owner, method, _wrapped(getattr(owner, method), hook, recorder))


def hook_of(key: str, hooks: Iterable[Hook]) -> str:
    """Which hook notes timestamp `key`, for error messages."""
    for hook in hooks:
        if key in (hook.before, hook.after):
            where = "entry" if key == hook.before else "return"
            return f"{hook.target.replace(':', '.')} ({where})"
    return key
