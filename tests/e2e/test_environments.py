"""Environments through the real daemon, with real packages from the registries
(tests/e2e/environments.toml, built once and cached: environments.py): `data` (numpy, pandas,
matplotlib) and `integrations` (fast-xml-parser, lodash, axios, date-fns).

Tenants: alpha and beta may use both environments, gamma none. Every entry point: Execute,
ExecuteStream (files before the final response), Submit (files kept with the result), HANDLER
mode, the sync and async clients, `sandboxd run --env --out`."""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sandboxd_client import (
    AsyncClient,
    Client,
    ExecuteResult,
    ExecutionState,
    InvalidRequest,
    Limits,
    OutputFile,
    PermissionDenied,
    Started,
    Verdict,
)

from . import environments
from .daemon import Daemon, spawn, start, tenants_file

WALL = Limits(wall_time_ms=30_000, cpu_time_ms=30_000, memory_bytes=1024 * 1024 * 1024)


class Env:
    def __init__(self, daemon: Daemon, keys: dict[str, str]) -> None:
        self.daemon = daemon
        self.keys = keys

    def client(self, tenant: str) -> Client:
        return Client(self.daemon.address, api_key=self.keys[tenant])


@pytest.fixture(scope="module")
def store() -> str:
    return environments.build()


@pytest.fixture(scope="module")
def env(store: str) -> Iterator[Env]:
    with tempfile.TemporaryDirectory(prefix="sandboxd-envs-") as tmp:
        path = os.path.join(tmp, "tenants.toml")
        both = ["data", "integrations"]
        keys = tenants_file(
            path,
            {"alpha": {"environments": both}, "beta": {"environments": both}, "gamma": {}},
        )
        daemon = start(
            [
                "--tenants", path,
                "--environments", environments.ENVIRONMENTS_FILE,
                "--environments-store", store,
            ],
            warm=1,
        )  # fmt: skip
        yield Env(daemon, keys)
        assert daemon.stop() == 0, "".join(daemon.raw_stderr[-20:])


def ok(result: ExecuteResult) -> ExecuteResult:
    assert result.verdict is Verdict.OK, (result.verdict, result.stderr.decode()[-3000:])
    return result


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR, after checking the signature and the chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert crc == zlib.crc32(kind + body)
    width, height = struct.unpack(">II", body[:8])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


# -- the data environment ------------------------------------------------------------------------

PLOT = textwrap.dedent(
    """
    import os, sys, json
    import numpy as np, pandas as pd, matplotlib.pyplot as plt
    preloaded = all(m in sys.modules for m in ("numpy", "pandas", "matplotlib.pyplot"))
    df = pd.DataFrame({"x": np.arange(100), "y": np.arange(100) ** 2})
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=50)
    ax.plot(df["x"], df["y"])
    fig.savefig("out/chart.png")
    os.makedirs("out/tables")
    df.describe().to_csv("out/tables/describe.csv")
    print(json.dumps({"sum": int(df["y"].sum()), "preloaded": preloaded,
                      "backend": plt.get_backend(), "tz": str(pd.Timestamp("2024-06-01 12:00",
                      tz="Europe/Paris").tz_convert("UTC"))}))
    """
)


def test_data_returns_a_png_of_the_expected_size_and_a_csv(env: Env) -> None:
    with env.client("alpha") as c:
        r = ok(c.execute("python", PLOT, environment="data", limits=WALL))
    summary = json.loads(r.stdout)
    assert summary == {
        "sum": sum(i * i for i in range(100)),
        "preloaded": True,
        "backend": "Agg",  # MPLBACKEND from the engine: no GUI toolkit is probed
        "tz": "2024-06-01 10:00:00+00:00",  # pandas' time zones work in the jail
    }
    assert [f.path for f in r.files] == ["chart.png", "tables/describe.csv"]
    assert png_size(r.files[0].data) == (320, 240)  # 6.4 x 4.8 inches at 50 dpi
    assert r.files[1].data.splitlines()[0] == b",x,y"
    assert not r.files_truncated
    assert b"Fontconfig" not in r.stderr and b"Matplotlib" not in r.stderr


def test_numpy_and_random_draws_differ_between_executions(env: Env) -> None:
    code = (
        "import random, numpy as np\n"
        "print(np.random.rand(), np.random.randint(1 << 30), random.random())\n"
    )
    with env.client("alpha") as c:
        draws = [ok(c.execute("python", code, environment="data")).stdout for _ in range(4)]
    assert len(set(draws)) == 4, draws
    numpy_draws = [d.split()[0] for d in draws]
    assert len(set(numpy_draws)) == 4, numpy_draws


def test_a_monkeypatched_dataframe_does_not_reach_the_next_tenant(env: Env) -> None:
    patch = textwrap.dedent(
        """
        import pandas, numpy
        pandas.DataFrame = lambda *a, **k: "owned"
        pandas.core.frame.DataFrame.sum = lambda self, *a, **k: 666
        numpy.random.seed(1)
        print(pandas.DataFrame({"a": [1]}))
        """
    )
    check = textwrap.dedent(
        """
        import pandas
        print(type(pandas.DataFrame({"a": [1, 2]})).__name__, pandas.DataFrame({"a": [1, 2]}).sum()["a"])
        """
    )
    with env.client("alpha") as a, env.client("beta") as b:
        for _ in range(3):  # more executions than the environment's warm workers
            assert ok(a.execute("python", patch, environment="data")).stdout == b"owned\n"
            assert ok(b.execute("python", check, environment="data")).stdout == b"DataFrame 3\n"


def test_a_python_program_cannot_write_into_the_environment(env: Env) -> None:
    code = textwrap.dedent(
        """
        import errno, os, pandas
        for path in (pandas.__file__, "/opt/environment/evil.py", "/opt/environment/pandas/x"):
            try:
                with open(path, "a") as f:
                    f.write("import os; os.system('id')")
                print(path, "written")
            except OSError as e:
                print(path, errno.errorcode[e.errno])
        try:
            os.chmod(pandas.__file__, 0o777)
        except OSError as e:
            print("chmod", errno.errorcode[e.errno])
        print(pandas.__file__)
        """
    )
    with env.client("alpha") as c:
        out = ok(c.execute("python", code, environment="data")).stdout.decode().splitlines()
    init = "/opt/environment/pandas/__init__.py"
    assert out == [
        f"{init} EROFS",
        "/opt/environment/evil.py EROFS",
        "/opt/environment/pandas/x EROFS",
        "chmod EROFS",
        init,
    ]


# -- the integrations environment ---------------------------------------------------------------


def orders_xml(count: int, seed: int) -> tuple[bytes, dict[str, object]]:
    """An XML export of about 5 MiB and what a correct parse of it sums to."""
    rng = random.Random(seed)
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<export><orders>']
    by_country: dict[str, int] = {}
    total_cents = 0
    for i in range(count):
        country = rng.choice(["DE", "FR", "US", "JP", "BR"])
        cents = rng.randrange(100, 10_000_000)
        by_country[country] = by_country.get(country, 0) + 1
        total_cents += cents
        day = 1 + i % 28
        parts.append(
            f'<order id="o{i}"><country>{country}</country><amountCents>{cents}</amountCents>'
            f"<placed>2024-02-{day:02d}T10:00:00Z</placed><note>order &amp; note {i} "
            f"{'x' * rng.randrange(40, 80)}</note></order>"
        )
    parts.append("</orders></export>\n")
    expected = {
        "orders": count,
        "byCountry": dict(sorted(by_country.items())),
        "totalCents": total_cents,
        "firstPlaced": "2024-02-01",
    }
    return "".join(parts).encode(), expected


XML_TO_JSON = textwrap.dedent(
    """
    const fs = require('fs');
    const { XMLParser } = require('fast-xml-parser');
    const _ = require('lodash');
    const { format, parseISO } = require('date-fns');
    const doc = new XMLParser({ ignoreAttributes: false }).parse(fs.readFileSync(0));
    const orders = doc.export.orders.order;
    fs.writeFileSync('out/orders.json', JSON.stringify(orders.map((o) => ({
      id: o['@_id'], country: o.country, cents: o.amountCents }))));
    console.log(JSON.stringify({
      orders: orders.length,
      byCountry: _.fromPairs(_.sortBy(_.toPairs(_.countBy(orders, 'country')), 0)),
      totalCents: _.sumBy(orders, 'amountCents'),
      firstPlaced: format(parseISO(orders[0].placed), 'yyyy-MM-dd'),
    }));
    """
)


def test_integrations_parses_a_5_mib_xml_document_to_json(env: Env) -> None:
    xml, expected = orders_xml(26_000, seed=14)
    assert 5 * 1024 * 1024 <= len(xml) < 6 * 1024 * 1024
    with env.client("alpha") as c:
        r = ok(c.execute("javascript", XML_TO_JSON, stdin=xml, environment="integrations"))
    assert json.loads(r.stdout) == expected
    assert [f.path for f in r.files] == ["orders.json"]
    orders = json.loads(r.files[0].data)
    assert len(orders) == 26_000 and orders[7]["id"] == "o7"


def test_a_monkeypatched_lodash_does_not_reach_the_next_tenant(env: Env) -> None:
    patch = (
        "const _ = require('lodash'); _.map = () => ['owned'];"
        " Array.prototype.map = () => ['owned'];"
        " console.log(JSON.stringify(_.map([1, 2], (x) => x * 2)));"
    )
    check = "const _ = require('lodash'); console.log(JSON.stringify(_.map([1, 2], (x) => x * 2)));"
    with env.client("alpha") as a, env.client("beta") as b:
        for _ in range(3):
            r = a.execute("javascript", patch, environment="integrations")
            assert ok(r).stdout == b'["owned"]\n'
            r = b.execute("javascript", check, environment="integrations")
            assert ok(r).stdout == b"[2,4]\n"


def test_a_javascript_program_cannot_write_into_the_environment(env: Env) -> None:
    code = textwrap.dedent(
        """
        const fs = require('fs');
        for (const p of [require.resolve('lodash'), '/node_modules/evil.js']) {
          try { fs.writeFileSync(p, 'x'); console.log(p, 'written'); }
          catch (e) { console.log(p, e.code); }
        }
        """
    )
    with env.client("alpha") as c:
        out = ok(c.execute("javascript", code, environment="integrations")).stdout
    assert out == b"/node_modules/lodash/lodash.js EROFS\n/node_modules/evil.js EROFS\n"


# -- every entry point ---------------------------------------------------------------------------


def test_handler_mode_in_both_environments(env: Env) -> None:
    py = (
        "import pandas as pd\n"
        "def handler(event, context):\n"
        "    return {'mean': float(pd.Series(event['values']).mean())}\n"
    )
    js = (
        "const _ = require('lodash');\n"
        "exports.handler = async (event) => ({ chunks: _.chunk(event.values, 2) });\n"
    )
    with env.client("beta") as c:
        r = ok(c.invoke(py, {"values": [1, 2, 3, 6]}, environment="data"))
        assert r.result_value() == {"mean": 3.0}
        r = ok(
            c.invoke(js, {"values": [1, 2, 3]}, runtime="javascript", environment="integrations")
        )
        assert r.result_value() == {"chunks": [[1, 2], [3]]}


def test_execute_stream_delivers_the_files_before_the_final_response(env: Env) -> None:
    code = (
        "import os\nprint('start', flush=True)\n"
        "open('out/a.txt', 'w').write('A')\nos.makedirs('out/d')\n"
        "open('out/d/b.bin', 'wb').write(bytes(range(256)))\n"
    )
    with env.client("alpha") as c:
        events = list(c.stream("python", code, environment="data"))
    assert isinstance(events[0], Started)
    files = [e for e in events if isinstance(e, OutputFile)]
    assert files == [OutputFile("a.txt", b"A"), OutputFile("d/b.bin", bytes(range(256)))]
    final = events[-1]
    assert isinstance(final, ExecuteResult) and final.verdict is Verdict.OK
    assert final.files == () and not final.files_truncated
    first_file = events.index(files[0])
    assert all(not isinstance(e, ExecuteResult) for e in events[:first_file])


def test_submit_keeps_the_files_with_the_result(env: Env) -> None:
    code = "open('out/r.txt', 'w').write('async'); import numpy; print(numpy.__version__)"
    with env.client("alpha") as c:
        execution_id = c.submit("python", code, environment="data")
        execution = c.wait(execution_id, timeout_s=120)
        assert execution.state is ExecutionState.DONE and execution.result is not None
        assert ok(execution.result).stdout == b"2.2.6\n"
        assert execution.result.files == (OutputFile("r.txt", b"async"),)
        again = c.get_execution(execution_id)  # kept: the same files on a second read
        assert again.result is not None and again.result.files == execution.result.files


def test_the_async_client_names_an_environment(env: Env) -> None:
    async def run() -> ExecuteResult:
        async with AsyncClient(env.daemon.address, api_key=env.keys["beta"]) as c:
            return await c.execute(
                "javascript",
                "const { format } = require('date-fns');\n"
                "console.log(format(new Date(0), 'yyyy'));\n"
                "require('fs').writeFileSync('out/x', 'y');",
                environment="integrations",
            )

    r = ok(asyncio.run(run()))
    assert r.stdout == b"1970\n" and r.files == (OutputFile("x", b"y"),)


def test_a_tenant_cannot_use_an_environment_it_was_not_given(env: Env) -> None:
    with env.client("gamma") as c:
        for call in (
            lambda: c.execute("python", "import numpy", environment="data"),
            lambda: list(c.stream("python", "import numpy", environment="data")),
            lambda: c.submit("python", "import numpy", environment="data"),
        ):
            with pytest.raises(PermissionDenied) as info:
                call()
            assert info.value.message == (
                "tenant 'gamma' may not use environment 'data' (allowed: none)"
            )
        # without an environment it runs, and the packages are not there
        r = ok(c.execute("python", "import importlib.util as u; print(u.find_spec('numpy'))"))
        assert r.stdout == b"None\n"


def test_unknown_environment_and_wrong_runtime_are_invalid(env: Env) -> None:
    with env.client("alpha") as c:
        with pytest.raises(InvalidRequest) as info:
            c.execute("python", "1", environment="nope")
        assert info.value.message.endswith(
            "unknown environment 'nope' (there are: data, integrations)"
        )
        assert [v.field for v in info.value.violations] == ["environment"]
        with pytest.raises(InvalidRequest) as info:
            c.submit("javascript", "1", environment="data")
        assert "environment data is for python, not javascript" in info.value.message


def test_each_environment_has_a_health_service(env: Env) -> None:
    with grpc.insecure_channel(env.daemon.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        for name in (
            "sandboxd.v1.Sandbox/python/data",
            "sandboxd.v1.Sandbox/javascript/integrations",
        ):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def test_sandboxd_run_with_env_and_out(env: Env, tmp_path: Path) -> None:
    program = tmp_path / "plot.py"
    program.write_text(PLOT)
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable, "-m", "sandboxd", "run", str(program), "--env", "data",
            "--out", str(out), "--target", env.daemon.address, "--key", env.keys["beta"],
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["preloaded"] is True
    assert png_size((out / "chart.png").read_bytes()) == (320, 240)
    assert (out / "tables" / "describe.csv").read_bytes().startswith(b",x,y")


# -- the operator's side -------------------------------------------------------------------------


def test_the_daemon_refuses_to_start_when_an_environment_is_not_built(tmp_path: Path) -> None:
    declarations = tmp_path / "environments.toml"
    declarations.write_text(
        '[environments.fresh]\nruntime = "python"\npackages = ["six==1.16.0"]\n'
    )
    store = tmp_path / "store"
    daemon = spawn(
        [
            "--listen", "127.0.0.1:0",
            "--environments", str(declarations), "--environments-store", str(store),
        ]
    )  # fmt: skip
    assert daemon.proc.wait(60) == 2
    assert daemon._reader is not None
    daemon._reader.join(10)
    assert "".join(daemon.raw_stderr) == (
        f"sandboxd serve: error: environment fresh is not built in {store}: run `sandboxd "
        f"environments build --environments {declarations} --environments-store {store}`\n"
    )


def test_environments_list_shows_each_build_with_its_lock(store: str) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "sandboxd", "environments", "list",
            "--environments", environments.ENVIRONMENTS_FILE, "--environments-store", store,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    heads = [line.split("\t") for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert [(h[0], h[1], h[2]) for h in heads] == [
        ("data", "python", "built"),
        ("integrations", "javascript", "built"),
    ]
    lock = [line.strip() for line in done.stdout.splitlines() if line.startswith(" ")]
    assert "pandas==2.2.3" in lock and "lodash@4.17.21" in lock and "strnum@2.5.1" in lock
    for head in heads:
        assert os.path.isdir(head[3])
        assert os.stat(head[3]).st_mode & 0o222 == 0  # read-only
