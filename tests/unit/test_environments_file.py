"""The environments file (sandboxd/environments/declaration.py) and the store's content
addresses (store.py): pure logic, no build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandboxd.environments import EnvironmentsFileError, NotBuilt, Store, load_declarations
from sandboxd.environments.store import RECORD, build_id, engine_environments
from sandboxd_pool.types import Runtime

GOOD = """
[environments.data]
runtime = "python"
packages = ["numpy==2.2.6", "pandas>=2,<3"]
preload = ["numpy", "matplotlib.pyplot"]
warm_workers = 0

[environments.js]
runtime = "javascript"
packages = ["lodash@4.17.21", "@scope/pkg@1.0.0"]
preload = ["lodash", "@scope/pkg", "date-fns/format"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "environments.toml"
    path.write_text(text)
    return str(path)


def test_a_good_file(tmp_path: Path) -> None:
    declarations = load_declarations(write(tmp_path, GOOD))
    assert list(declarations) == ["data", "js"]
    data, js = declarations["data"], declarations["js"]
    assert data.runtime is Runtime.PYTHON and data.warm_workers == 0
    assert data.preload == ("numpy", "matplotlib.pyplot")
    assert js.runtime is Runtime.JAVASCRIPT and js.warm_workers == 1  # the default
    assert js.packages == ("lodash@4.17.21", "@scope/pkg@1.0.0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[environments.Data]\nruntime='python'\npackages=['a']",
            "invalid environment name 'Data'",
        ),
        ("[environments.d]\nruntime='ruby'\npackages=['a']", 'runtime must be "python" or'),
        ("[environments.d]\nruntime='python'\npackages=[]", "packages must list at least one"),
        ("[environments.d]\nruntime='python'\npackages=['--index-url=x']", "is not one pip"),
        ("[environments.d]\nruntime='javascript'\npackages=['-g']", "is not one npm package"),
        ("[environments.d]\nruntime='python'\npackages=['a', 'a']", "listed twice"),
        ("[environments.d]\nruntime='python'\npackages=['a']\npreload=['os;x']", "not a module"),
        ("[environments.d]\nruntime='python'\npackages=['a']\nwarm_workers=-1", "warm_workers"),
        ("[environments.d]\nruntime='python'\npackages=['a']\nwarm_workers=true", "warm_workers"),
        ("[environments.d]\nruntime='python'\npackages=['a']\npip='x'", "unknown key 'pip'"),
        ("[other]\nx=1", "unknown top-level key 'other'"),
        ("[environments.d\n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_environment_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(EnvironmentsFileError) as info:
        load_declarations(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_the_same_packages_are_the_same_build_whatever_the_name_order_or_preload() -> None:
    a = build_id(Runtime.PYTHON, ("numpy==2.2.6", "pandas==2.2.3"), "cpython-311 x86_64")
    b = build_id(Runtime.PYTHON, ("pandas==2.2.3", "numpy==2.2.6"), "cpython-311 x86_64")
    assert a == b and len(a) == 32
    assert build_id(Runtime.PYTHON, ("numpy==2.2.5", "pandas==2.2.3"), "cpython-311 x86_64") != a
    assert build_id(Runtime.PYTHON, ("numpy==2.2.6", "pandas==2.2.3"), "cpython-312 x86_64") != a
    assert (
        build_id(Runtime.JAVASCRIPT, ("numpy==2.2.6", "pandas==2.2.3"), "cpython-311 x86_64") != a
    )


def test_only_a_complete_build_is_found_and_missing_ones_are_named(tmp_path: Path) -> None:
    declarations = load_declarations(write(tmp_path, GOOD))
    store = Store(str(tmp_path / "store"))
    abis = {Runtime.PYTHON: "py-abi", Runtime.JAVASCRIPT: "node-abi"}
    data = declarations["data"]
    directory = store.directory(Runtime.PYTHON, build_id(data.runtime, data.packages, "py-abi"))
    os.makedirs(os.path.join(directory, "site"))  # an unfinished build: no build.json
    with pytest.raises(NotBuilt) as info:
        engine_environments(declarations, store, abis, "envs.toml")
    assert info.value.names == ["data", "js"]
    assert str(info.value) == (
        f"environments data, js are not built in {store.root}: run `sandboxd environments "
        f"build --environments envs.toml --environments-store {store.root}`"
    )
    record = {
        "format": "sandboxd-environment-1",
        "id": "x",
        "runtime": "python",
        "packages": list(data.packages),
        "abi": "py-abi",
        "lock": ["numpy==2.2.6"],
        "size_bytes": 1,
        "built_at": "2026-01-01T00:00:00+00:00",
        "tool": "pip 23.2.1",
    }
    Path(directory, RECORD).write_text(json.dumps(record))
    with pytest.raises(NotBuilt) as info:
        engine_environments(declarations, store, abis, "envs.toml")
    assert info.value.names == ["js"]
    del declarations["js"]
    (env,) = engine_environments(declarations, store, abis, "envs.toml")
    assert (env.name, env.path, env.preload, env.warm_workers) == (
        "data",
        os.path.join(directory, "site"),
        ("numpy", "matplotlib.pyplot"),
        0,
    )
    assert [b.directory for b in store.builds()] == [directory]
