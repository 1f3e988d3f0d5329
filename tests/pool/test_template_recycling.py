"""Python workers fork from a warm template, so each shares what the template held when it was
forked: the hash seed (hash("abc") was the same in every execution, unlike fresh processes), the
stack-canary seed AT_RANDOM and the address layout. A template is replaced after
template_max_forks children (or template_max_age_s seconds): the sharing is bounded."""

from __future__ import annotations

import collections

from helpers import run

from sandboxd_pool import Limits, Pool, PoolConfig, Runtime, Verdict

# The hash seed, the AT_RANDOM bytes (auxv type 25) and where libc's printf is mapped.
SECRETS = """\
import ctypes, struct
words = open("/proc/self/auxv", "rb").read()
auxv = dict(struct.iter_unpack("QQ", words))
at_random = ctypes.string_at(auxv[25], 16).hex()
printf = ctypes.cast(ctypes.CDLL(None).printf, ctypes.c_void_p).value
print(hash("abc"), at_random, printf)
"""


def _secrets(pool: Pool, n: int) -> list[tuple[str, ...]]:
    seen = []
    for _ in range(n):
        outcome = run(pool, Runtime.PYTHON, SECRETS, limits=Limits(wall_time_ms=10_000))
        assert outcome.verdict is Verdict.OK, outcome
        seen.append(tuple(outcome.stdout.split()))
    return seen


def test_a_template_is_shared_by_at_most_max_forks_executions() -> None:
    config = PoolConfig(
        warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,), template_max_forks=3
    )
    with Pool(config) as pool:
        seen = _secrets(pool, 12)
    for field, name in enumerate(("hash seed", "AT_RANDOM", "libc address")):
        counts = collections.Counter(s[field] for s in seen)
        # Each value is shared by the children of one template: at most 3 of the 12 ...
        assert max(counts.values()) <= 3, (name, counts)
        # ... and there were several templates, each one's children really sharing it (so the
        # bound above is not met vacuously by values that differ anyway).
        assert len(counts) >= 4, (name, counts)
        assert max(counts.values()) >= 2, (name, counts)


def test_without_recycling_the_children_share_the_template_secrets() -> None:
    """The positive control of the test above: one template, so one hash seed for all."""
    config = PoolConfig(
        warm_workers_per_runtime=1, runtimes=(Runtime.PYTHON,), template_max_forks=1000
    )
    with Pool(config) as pool:
        seen = _secrets(pool, 5)
    assert len({s[0] for s in seen}) == 1, seen


def test_the_defaults_bound_the_sharing() -> None:
    config = PoolConfig()
    assert config.template_max_forks == 250
    assert config.template_max_age_s == 300.0
