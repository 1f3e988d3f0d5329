"""`python -m bench environments`: an environment's warm workers against a bare interpreter
with the same packages installed, in the same run, on the same machine.

The environments are tests/e2e/environments.toml's (`data`: numpy, pandas, matplotlib;
`integrations`: fast-xml-parser, lodash, axios, date-fns), built by `sandboxd environments
build` into the test cache (tests/e2e/environments.py). Rows, each timed from the call to its
result (the pool: `Pool.execute` with a warm worker ready; bare: a fresh `python` / `node`
process per run, started with the packages on its path and ended):
  pandas   `import numpy, pandas` and the sum of a 1,000-row DataFrame
  plot     numpy, pandas and matplotlib: a 100-point line plot saved as a PNG
  node     `require` of the integrations set and parsing a small XML document
The bare Python keeps matplotlib's font cache between runs (built once before timing), as a
machine that ran it before would. The pool and the bare runs alternate, one of each per round.
Then the PSS of one warm worker of each environment beside its template (Python) or alone
(Node), and the bare runtime's warm worker and template for comparison."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bench.common import output
from bench.common.machine import machine_info
from bench.common.output import log
from bench.common.stats import LatencyStats
from bench.pool.memory import tree_pids

SECTION = "environments"
PANDAS = (
    "import numpy, pandas\n"
    "df = pandas.DataFrame({'a': numpy.arange(1000), 'b': numpy.arange(1000) * 2})\n"
    "print(int(df.sum().sum()))\n"
)
PLOT = (
    "import os\nimport numpy as np, pandas as pd, matplotlib\nmatplotlib.use('Agg')\n"
    "import matplotlib.pyplot as plt\n"
    "os.makedirs('out', exist_ok=True)\n"
    "s = pd.Series(np.random.rand(100)).cumsum()\n"
    "fig, ax = plt.subplots(figsize=(4, 3), dpi=100)\nax.plot(s.index, s.values)\n"
    "fig.savefig('out/plot.png')\nprint(os.path.getsize('out/plot.png') > 0)\n"
)
NODE = (
    "const { XMLParser } = require('fast-xml-parser'); const _ = require('lodash');\n"
    "require('axios'); require('date-fns');\n"
    "const xml = '<orders>' + _.range(50).map((i) => `<order id=\"${i}\"><n>${i}</n></order>`)"
    ".join('') + '</orders>';\n"
    "const doc = new XMLParser({ ignoreAttributes: false }).parse(xml);\n"
    "console.log(_.sumBy(doc.orders.order, 'n'));\n"
)
EXPECTED = {"pandas": b"1498500\n", "plot": b"True\n", "node": b"1225\n"}
# (row, runtime, environment, code); targets: (p50 at most, at least this many times faster)
ROWS = (
    ("pandas", "python", "data", PANDAS),
    ("plot", "python", "data", PLOT),
    ("node", "javascript", "integrations", NODE),
)
TARGETS = {"pandas": (10.0, 30.0), "plot": (100.0, 8.0), "node": (None, 5.0)}


@dataclasses.dataclass
class Row:
    name: str
    pool: LatencyStats | None = None
    bare: LatencyStats | None = None
    failures: int = 0

    @property
    def speedup(self) -> float | None:
        if self.pool is None or self.bare is None or not self.pool.p50_ms:
            return None
        return self.bare.p50_ms / self.pool.p50_ms


@dataclasses.dataclass
class Report:
    machine: dict[str, str]
    iterations: int
    rows: list[Row]
    pss_mib: dict[str, float]
    store_sizes_mib: dict[str, float]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n", "--iterations", type=int, help="runs per row (default 60; --quick 10)"
    )
    output.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sandboxd.environments import Store, Toolchain, configured, load_declarations
    from sandboxd_pool import ExecutionRequest, Pool, PoolConfig, Runtime
    from tests.e2e import environments as test_environments

    iterations = args.iterations or (10 if args.quick else 60)
    log("building (or finding) the environments ...")
    store = test_environments.build()
    toolchain = Toolchain.of()
    engine_environments = configured(test_environments.ENVIRONMENTS_FILE, store, toolchain)
    declarations = load_declarations(test_environments.ENVIRONMENTS_FILE)
    paths = {e.name: e.path for e in engine_environments}
    sizes = {}
    for declaration in declarations.values():
        build = Store(store).find(declaration, toolchain.abi(declaration.runtime))
        assert build is not None
        sizes[declaration.name] = build.size_bytes / 2**20
    info = machine_info([])
    info["python"] = toolchain.python_path
    info["node"] = toolchain.node_path
    config = PoolConfig(
        warm_workers_per_runtime=1,
        environments=tuple(dataclasses.replace(e, warm_workers=1) for e in engine_environments),
    )
    rows = [Row(name) for name, *_ in ROWS]
    with tempfile.TemporaryDirectory(prefix="sandboxd-bench-env-") as tmp, Pool(config) as pool:
        if not pool.wait_until_ready(120):
            raise SystemExit(f"the pool did not warm up: {pool.environments_health()}")
        bare = BareRunner(tmp, paths, toolchain.python_path, toolchain.node_path)
        for row, (name, runtime, environment, code) in zip(rows, ROWS, strict=True):
            log(f"{name}: {iterations} runs each, pool and bare alternating ...")
            request = ExecutionRequest(runtime=Runtime(runtime), code=code, environment=environment)

            def in_pool(request: ExecutionRequest = request, name: str = name) -> bool:
                outcome = pool.execute(request)
                return outcome.stdout == EXPECTED[name] and not outcome.cold_start

            def in_bare(runtime: str = runtime, code: str = code, name: str = name) -> bool:
                return bare.run(runtime, code) == EXPECTED[name]

            assert in_bare(), f"{name}: the bare run does not give {EXPECTED[name]!r}"
            pool_ns: list[int] = []
            bare_ns: list[int] = []
            for _ in range(iterations):
                pool.wait_until_ready(10)
                row.failures += _time(in_pool, pool_ns)
                row.failures += _time(in_bare, bare_ns)
            row.pool, row.bare = LatencyStats.from_ns(pool_ns), LatencyStats.from_ns(bare_ns)
            log(f"  pool p50 {row.pool.p50_ms if row.pool else 0:.1f} ms, bare p50 "
                f"{row.bare.p50_ms if row.bare else 0:.1f} ms")  # fmt: skip
        pool.wait_until_ready(10)
        time.sleep(1.0)
        pss = worker_and_template_pss(pool)
    report = Report(info, iterations, rows, pss, sizes)
    output.publish(args, SECTION, render(report), report)
    return 0 if all(r.failures == 0 for r in rows) else 1


def _time(call: Callable[[], bool], samples: list[int]) -> int:
    start = time.perf_counter_ns()
    good = call()
    elapsed = time.perf_counter_ns() - start
    if good:
        samples.append(elapsed)
        return 0
    return 1


class BareRunner:
    """A fresh interpreter per run, with the environment's packages on its path (what a
    machine with them installed does), in a scratch working directory."""

    def __init__(self, tmp: str, paths: dict[str, str], python: str, node: str) -> None:
        self.work = os.path.join(tmp, "work")
        os.mkdir(self.work)
        self.python, self.node = python, node
        self.mplconfig = os.path.join(tmp, "mplconfig")  # kept between runs, like a home's
        self.python_env = {
            "PATH": "/usr/bin:/bin",
            "HOME": tmp,
            "PYTHONPATH": paths["data"],
            "MPLCONFIGDIR": self.mplconfig,
            "LANG": "C.UTF-8",
        }
        # node resolves require() from the working directory of `node -e`: its node_modules
        self.node_modules = os.path.join(paths["integrations"], "node_modules")
        os.symlink(self.node_modules, os.path.join(self.work, "node_modules"))

    def run(self, runtime: str, code: str) -> bytes:
        argv = [self.python, "-c", code] if runtime == "python" else [self.node, "-e", code]
        env = self.python_env if runtime == "python" else {"PATH": "/usr/bin:/bin"}
        shutil.rmtree(os.path.join(self.work, "out"), ignore_errors=True)
        done = subprocess.run(argv, cwd=self.work, env=env, capture_output=True, check=False)
        return done.stdout if done.returncode == 0 else b""


def worker_and_template_pss(pool: object) -> dict[str, float]:
    """PSS (MiB) of one warm worker of each environment and of the bare runtimes (the worker's
    whole tree: its init and the interpreter), and of the Python templates (told apart by what
    they map: the data template maps numpy's library from /opt/environment)."""
    from sandboxd_pool import Pool

    assert isinstance(pool, Pool)
    result: dict[str, float] = {}
    for environment in ("", "data", "integrations"):
        for runtime, pids in pool.worker_pids(environment).items():
            if pids:
                label = f"{runtime.value}{'/' + environment if environment else ''} worker"
                result[label] = sum(_pss(p) for p in tree_pids(pids[0])) / 2**20
    zygote = psutil.Process(pool.zygote_pid)
    for child in zygote.children():
        try:
            cmdline = " ".join(child.cmdline())
            if "python_template.py" not in cmdline:
                continue
            maps = Path(f"/proc/{child.pid}/maps").read_text()
        except (psutil.Error, OSError):
            continue
        label = "python/data template" if "/opt/environment/" in maps else "python template"
        result[label] = _pss(child.pid) / 2**20
    return result


def _pss(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_full_info().pss)
    except psutil.Error:
        return 0


def render(report: Report) -> str:
    m = report.machine
    lines = [
        "## Environments: warm workers vs a bare interpreter with the same packages",
        "",
        f"`python -m bench environments -n {report.iterations}`, {m['date']} on {m['host']} "
        f"({m['nproc']} CPUs, {m['cpu']}; load average at start {m['loadavg at start']}; "
        f"commit {m['commit']}). Python {m['python']}, Node {m['node']}. Environments from "
        "tests/e2e/environments.toml: data "
        f"{report.store_sizes_mib.get('data', 0):.0f} MiB, integrations "
        f"{report.store_sizes_mib.get('integrations', 0):.0f} MiB built. Pool: `Pool.execute` "
        "with a warm worker of the environment ready; bare: a fresh process per run with the "
        "packages on its path. Alternating, one of each per round.",
        "",
        "| row | pool p50 | pool p99 | bare p50 | bare p99 | faster | target | failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in report.rows:
        p50_max, speedup_min = TARGETS[row.name]
        target = []
        if p50_max is not None:
            target.append(f"p50 <= {p50_max:g} ms")
        target.append(f">= {speedup_min:g}x")
        met = (
            row.pool is not None
            and row.speedup is not None
            and (p50_max is None or row.pool.p50_ms <= p50_max)
            and row.speedup >= speedup_min
        )
        lines.append(
            f"| {row.name} | {_ms(row.pool, 'p50')} | {_ms(row.pool, 'p99')} | "
            f"{_ms(row.bare, 'p50')} | {_ms(row.bare, 'p99')} | "
            f"{f'{row.speedup:.1f}x' if row.speedup else '-'} | "
            f"{', '.join(target)}: {'met' if met else 'NOT met'} | {row.failures} |"
        )
    lines += [
        "",
        "PSS of one warm worker (its init and interpreter) and of the templates (MiB):",
        "",
    ]
    lines += ["| process | PSS |", "| --- | ---: |"]
    lines += [f"| {name} | {mib:.1f} |" for name, mib in sorted(report.pss_mib.items())]
    return "\n".join(lines) + "\n"


def _ms(stats: LatencyStats | None, which: str) -> str:
    if stats is None:
        return "-"
    return f"{getattr(stats, f'{which}_ms'):.1f} ms"
