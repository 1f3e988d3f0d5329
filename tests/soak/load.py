"""Drive a list of cases through a real daemon from several client threads and check each
answer as it comes back."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from sandboxd_client import NO_RETRY, Client, SandboxdError

from .programs import Case, check

CALL_TIMEOUT_S = 120.0  # "eventually": a call that takes longer is a hang


@dataclass(frozen=True)
class Failure:
    index: int
    kind: str
    problems: tuple[str, ...]


@dataclass
class LoadResult:
    executions: int = 0
    elapsed_s: float = 0.0
    verdicts: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    hostile: int = 0
    failures: list[Failure] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    @property
    def rate_per_s(self) -> float:
        return self.executions / self.elapsed_s if self.elapsed_s else 0.0

    def add(self, other: LoadResult) -> None:
        self.executions += other.executions
        self.elapsed_s += other.elapsed_s
        self.verdicts.update(other.verdicts)
        self.kinds.update(other.kinds)
        self.hostile += other.hostile
        self.failures += other.failures
        self.tokens += other.tokens


def run_load(address: str, cases: list[Case], threads: int) -> LoadResult:
    """Every case once, `threads` at a time; failures are collected, never raised."""
    todo: queue.SimpleQueue[tuple[int, Case]] = queue.SimpleQueue()
    for item in enumerate(cases):
        todo.put(item)
    result = LoadResult()
    lock = threading.Lock()

    def client_thread() -> None:
        with Client(address, retry=NO_RETRY) as client:
            while True:
                try:
                    index, case = todo.get_nowait()
                except queue.Empty:
                    return
                problems = _one(client, case)
                with lock:
                    result.executions += 1
                    result.kinds[case.kind] += 1
                    result.hostile += case.hostile
                    if case.token:
                        result.tokens.append(case.token)
                    if problems:
                        result.failures.append(Failure(index, case.kind, tuple(problems)))
                    else:
                        result.verdicts[case.verdict.value] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=client_thread, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    result.elapsed_s = time.monotonic() - started
    return result


def _one(client: Client, case: Case) -> list[str]:
    try:
        got = client.execute(
            case.runtime,
            case.code,
            stdin=case.stdin,
            args=case.args,
            env=case.env,
            files=case.files,
            limits=case.limits,
            mode=case.mode,
            event=case.event,
            timeout_s=CALL_TIMEOUT_S,
        )
    except SandboxdError as e:
        return [f"call failed: {type(e).__name__}: {e}"]
    return check(case, got)
