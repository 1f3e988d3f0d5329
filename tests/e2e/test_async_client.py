"""The asyncio client against the real daemon: execute, invoke, stream, typed errors."""

from __future__ import annotations

import asyncio

import pytest

from sandboxd_client import AsyncClient, ExecuteResult, InvalidRequest, Output, Started, Verdict

from .daemon import Daemon


def test_async_client(zero_daemon: Daemon) -> None:
    async def main() -> None:
        async with AsyncClient(zero_daemon.address) as c:
            results = await asyncio.gather(
                *(c.execute("python", f"print({i} * 2)") for i in range(4)),
                c.execute("javascript", "console.log('js')"),
            )
            assert [r.stdout for r in results] == [b"0\n", b"2\n", b"4\n", b"6\n", b"js\n"]
            r = await c.invoke("def handler(e, c):\n    return e + 1\n", 41)
            assert r.verdict is Verdict.OK and r.result_value() == 42
            events = [e async for e in c.stream("python", "print('a', flush=True)")]
            assert isinstance(events[0], Started)
            assert events[1] == Output("stdout", b"a\n")
            assert isinstance(events[-1], ExecuteResult) and events[-1].verdict is Verdict.OK
            with pytest.raises(InvalidRequest) as info:
                await c.execute("python", "print(1)", env={"A=B": "1"})
            assert [v.field for v in info.value.violations] == ["env['A=B']"]

    asyncio.run(main())
