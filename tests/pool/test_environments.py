"""Environments in the engine: a request names a built package set; its packages are found
without configuration, what the preload list names is loaded before the request, nothing one
execution does to them reaches the next, and they cannot be written.

The packages here are small real ones written by the test (a pip --target layout for Python, a
node_modules tree for JavaScript); the daemon's tests build real registry packages
(tests/e2e/test_environments.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxd_pool import (
    ExecutionRequest,
    InvalidRequest,
    Limits,
    Pool,
    PoolConfig,
    Runtime,
    Verdict,
)
from sandboxd_pool.config import Environment

PY_PACKAGE = """\
import os, random
LOADED_IN = os.getpid()  # the process that imported it: the template, not the worker
SEED_DRAW = random.random()
def greet():
    return "hello from pkgdemo"
"""
JS_PACKAGE = """\
exports.loadedAt = process.hrtime.bigint().toString();
exports.greet = () => 'hello from jsdemo';
"""


@pytest.fixture(scope="module")
def env_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    root = tmp_path_factory.mktemp("environments")
    py = root / "py"
    (py / "pkgdemo").mkdir(parents=True)
    (py / "pkgdemo" / "__init__.py").write_text(PY_PACKAGE)
    js = root / "js"
    (js / "node_modules" / "jsdemo").mkdir(parents=True)
    (js / "node_modules" / "jsdemo" / "index.js").write_text(JS_PACKAGE)
    (js / "node_modules" / "jsdemo" / "package.json").write_text(
        '{"name": "jsdemo", "version": "1.0.0", "main": "index.js"}'
    )
    config = PoolConfig(
        warm_workers_per_runtime=1,
        environments=(
            Environment("pydemo", Runtime.PYTHON, str(py), preload=("pkgdemo",)),
            Environment("jsdemo", Runtime.JAVASCRIPT, str(js), preload=("jsdemo",)),
            Environment("cold", Runtime.PYTHON, str(py), warm_workers=0),
        ),
    )
    with Pool(config) as pool:
        assert pool.wait_until_ready(60), (pool.health(), pool.environments_health())
        yield pool


def run(pool: Pool, runtime: Runtime, code: str, environment: str = "") -> tuple[str, str]:
    outcome = pool.execute(
        ExecutionRequest(
            runtime=runtime, code=code, environment=environment, limits=Limits(wall_time_ms=10_000)
        )
    )
    assert outcome.verdict is Verdict.OK, outcome
    return outcome.stdout.decode(), outcome.stderr.decode()


def test_python_packages_are_found_and_preloaded(env_pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import os, sys
        preloaded = "pkgdemo" in sys.modules
        import pkgdemo
        print(preloaded, pkgdemo.greet(), pkgdemo.LOADED_IN != os.getpid(), pkgdemo.__file__)
        """
    )
    out, _ = run(env_pool, Runtime.PYTHON, code, "pydemo")
    assert out == "True hello from pkgdemo True /opt/environment/pkgdemo/__init__.py\n"


def test_javascript_packages_are_found_by_require_and_import(env_pool: Pool) -> None:
    code = "const d = require('jsdemo');\nconsole.log(d.greet(), require.resolve('jsdemo'));\n"
    out, _ = run(env_pool, Runtime.JAVASCRIPT, code, "jsdemo")
    assert out == "hello from jsdemo /node_modules/jsdemo/index.js\n"
    esm = "import('jsdemo').then((d) => console.log(d.greet()));\n"
    out, _ = run(env_pool, Runtime.JAVASCRIPT, esm, "jsdemo")
    assert out == "hello from jsdemo\n"


def test_the_bare_runtime_does_not_see_an_environment(env_pool: Pool) -> None:
    out, _ = run(
        env_pool,
        Runtime.PYTHON,
        "try:\n    import pkgdemo\nexcept ImportError as e:\n    print(type(e).__name__)\n",
    )
    assert out == "ModuleNotFoundError\n"


@pytest.mark.parametrize(
    ("runtime", "environment", "pollute", "check"),
    [
        (
            Runtime.PYTHON,
            "pydemo",
            "import pkgdemo\npkgdemo.greet = lambda: 'patched'\nprint(pkgdemo.greet())",
            "import pkgdemo\nprint(pkgdemo.greet())",
        ),
        (
            Runtime.JAVASCRIPT,
            "jsdemo",
            "const d = require('jsdemo'); d.greet = () => 'patched'; console.log(d.greet());",
            "console.log(require('jsdemo').greet());",
        ),
    ],
    ids=["py", "js"],
)
def test_a_monkeypatch_does_not_reach_the_next_execution(
    env_pool: Pool, runtime: Runtime, environment: str, pollute: str, check: str
) -> None:
    for _ in range(3):  # more than the warm workers
        assert run(env_pool, runtime, pollute, environment)[0] == "patched\n"
        assert run(env_pool, runtime, check, environment)[0].startswith("hello from")


@pytest.mark.parametrize(
    ("runtime", "environment", "code"),
    [
        (
            Runtime.PYTHON,
            "pydemo",
            "import errno\ntry:\n    open('/opt/environment/pkgdemo/evil.py', 'w')\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])",
        ),
        (
            Runtime.JAVASCRIPT,
            "jsdemo",
            "try { require('fs').writeFileSync('/node_modules/jsdemo/index.js', 'x'); }\n"
            "catch (e) { console.log(e.code); }",
        ),
    ],
    ids=["py", "js"],
)
def test_an_environment_cannot_be_written(
    env_pool: Pool, runtime: Runtime, environment: str, code: str
) -> None:
    assert run(env_pool, runtime, code, environment)[0] == "EROFS\n"


def test_each_execution_reseeds_what_the_template_seeded(env_pool: Pool) -> None:
    """pkgdemo drew from random at import, in the template; every worker forked from it shares
    that draw (the module is the template's), but its own random state is fresh."""
    code = "import pkgdemo, random\nprint(pkgdemo.SEED_DRAW, random.random())"
    draws = [run(env_pool, Runtime.PYTHON, code, "pydemo")[0].split() for _ in range(3)]
    assert len({d[0] for d in draws}) == 1  # the template's import-time draw, shared
    assert len({d[1] for d in draws}) == 3  # each execution's own draws differ


def test_an_environment_without_warm_workers_is_a_cold_start(env_pool: Pool) -> None:
    outcome = env_pool.execute(
        ExecutionRequest(
            runtime=Runtime.PYTHON,
            code="import pkgdemo; print(pkgdemo.greet())",
            environment="cold",
        )
    )
    assert (outcome.verdict, outcome.stdout, outcome.cold_start) == (
        Verdict.OK,
        b"hello from pkgdemo\n",
        True,
    )


def test_unknown_or_mismatched_environments_are_invalid(env_pool: Pool) -> None:
    with pytest.raises(InvalidRequest) as unknown:
        env_pool.execute(ExecutionRequest(runtime=Runtime.PYTHON, code="", environment="nope"))
    assert unknown.value.field == "environment"
    assert "unknown environment 'nope' (there are: cold, jsdemo, pydemo)" in str(unknown.value)
    with pytest.raises(InvalidRequest, match="environment jsdemo is for javascript, not python"):
        env_pool.execute(ExecutionRequest(runtime=Runtime.PYTHON, code="", environment="jsdemo"))


def test_a_preload_that_starts_threads_makes_the_environment_unhealthy(tmp_path: Path) -> None:
    pkg = tmp_path / "threader"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    )
    config = PoolConfig(
        warm_workers_per_runtime=1,
        runtimes=(Runtime.PYTHON,),
        max_boot_failures=1,
        environments=(
            Environment("threads", Runtime.PYTHON, str(tmp_path), preload=("threader",)),
        ),
    )
    with Pool(config) as pool:
        pool.wait_until_ready(30)
        health = pool.environments_health()["threads"]
    assert not health.healthy
    assert "left 2 threads running; a Python template must stay single-threaded" in health.reason


def test_an_environment_must_exist_and_match_an_enabled_runtime(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        PoolConfig(environments=(Environment("x", Runtime.PYTHON, str(tmp_path / "missing")),))
    with pytest.raises(ValueError, match="runtime javascript is not enabled"):
        PoolConfig(
            runtimes=(Runtime.PYTHON,),
            environments=(Environment("x", Runtime.JAVASCRIPT, str(tmp_path)),),
        )
    with pytest.raises(ValueError, match="environment name 'Bad Name'"):
        Environment("Bad Name", Runtime.PYTHON, str(tmp_path))
