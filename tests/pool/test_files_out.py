"""Files out: what a program leaves under out/ comes back with its outcome, within limits,
and nothing else (no symlink followed, no device, nothing outside out/)."""

from __future__ import annotations

import pytest
from helpers import run

from sandboxd_pool import (
    ExecutionRequest,
    InvalidRequest,
    Limits,
    OutputFile,
    Pool,
    Runtime,
    Verdict,
)

PNG = bytes(range(256)) * 40


def test_python_files_come_back_sorted_with_exact_content(pool: Pool) -> None:
    code = (
        "import os, sys\n"
        "open('out/chart.png', 'wb').write(bytes.fromhex(sys.argv[1]))\n"
        "os.makedirs('out/tables')\n"
        "open('out/tables/t.csv', 'w').write('a,b\\n1,2\\n')\n"
        "open('not-out.txt', 'w').write('stays')\n"
    )
    outcome = run(pool, Runtime.PYTHON, code, args=(PNG.hex(),))
    assert outcome.verdict is Verdict.OK, outcome
    assert outcome.files == (
        OutputFile("chart.png", PNG),
        OutputFile("tables/t.csv", b"a,b\n1,2\n"),
    )
    assert not outcome.files_truncated


def test_javascript_files_come_back(pool: Pool) -> None:
    code = "require('fs').writeFileSync('out/result.json', JSON.stringify({ok: true}));"
    outcome = run(pool, Runtime.JAVASCRIPT, code)
    assert (outcome.verdict, outcome.files) == (
        Verdict.OK,
        (OutputFile("result.json", b'{"ok":true}'),),
    )


def test_the_output_folder_exists_and_is_empty_at_the_start(pool: Pool) -> None:
    for runtime, code in (
        (Runtime.PYTHON, "import os\nprint(os.listdir('out'))"),
        (Runtime.JAVASCRIPT, "console.log(JSON.stringify(require('fs').readdirSync('out')))"),
    ):
        outcome = run(pool, runtime, code)
        assert outcome.stdout in (b"[]\n",), outcome
        assert outcome.files == ()


def test_symlinks_devices_and_escapes_are_never_followed_nor_returned(pool: Pool) -> None:
    code = (
        "import os\n"
        "os.symlink('/etc/passwd', 'out/passwd')\n"
        "os.symlink('..', 'out/up')\n"
        "os.symlink('/', 'out/root')\n"
        "os.mkfifo('out/fifo')\n"
        "open('../work/secret', 'w').write('outside out/')\n"
        "os.link('secret', 'out/hard')\n"  # a hard link to its own file: its own data
        "open('out/real.txt', 'w').write('real')\n"
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert outcome.verdict is Verdict.OK, outcome
    assert outcome.files == (
        OutputFile("hard", b"outside out/"),
        OutputFile("real.txt", b"real"),
    )


def test_an_output_folder_replaced_by_a_symlink_returns_nothing(pool: Pool) -> None:
    code = "import os\nos.rmdir('out')\nos.symlink('/etc', 'out')\n"
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.files, outcome.files_truncated) == (Verdict.OK, (), False)


@pytest.mark.parametrize(
    ("limits", "expected", "truncated"),
    [
        (Limits(max_output_files=2), ["a", "b"], True),
        (Limits(max_output_files_bytes=2500), ["a", "b", "c"], True),
        (Limits(max_output_files=4, max_output_files_bytes=4000), ["a", "b", "c", "d"], False),
    ],
    ids=["count", "bytes", "exactly"],
)
def test_the_limits_cap_files_out_and_say_so(
    pool: Pool, limits: Limits, expected: list[str], truncated: bool
) -> None:
    code = "for n in 'abcd':\n    open(f'out/{n}', 'wb').write(n.encode() * 1000)\n"
    outcome = run(pool, Runtime.PYTHON, code, limits=limits)
    assert outcome.verdict is Verdict.OK, outcome
    assert [f.path for f in outcome.files] == expected
    assert outcome.files_truncated is truncated
    sizes = [len(f.data) for f in outcome.files]
    if limits.max_output_files_bytes == 2500:
        assert sizes == [1000, 1000, 500]  # the last one cut at the byte budget
    assert all(f.data == f.path.encode() * len(f.data) for f in outcome.files)


def test_files_come_back_even_when_the_program_is_killed(pool: Pool) -> None:
    code = "open('out/partial.txt', 'w').write('so far')\nimport time\ntime.sleep(30)\n"
    outcome = run(pool, Runtime.PYTHON, code, limits=Limits(wall_time_ms=500))
    assert outcome.verdict is Verdict.TIMEOUT
    assert outcome.files == (OutputFile("partial.txt", b"so far"),)


def test_a_request_file_cannot_be_the_output_folder(pool: Pool) -> None:
    with pytest.raises(InvalidRequest, match="out is the output folder"):
        pool.execute(ExecutionRequest(runtime=Runtime.PYTHON, code="", files={"out": b"x"}))
    # ... but a request file may go in it, and then comes back
    outcome = pool.execute(
        ExecutionRequest(runtime=Runtime.PYTHON, code="", files={"out/given.txt": b"x"})
    )
    assert outcome.files == (OutputFile("given.txt", b"x"),)
