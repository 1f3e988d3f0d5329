"""A file left in out/ under a name that is not valid UTF-8, through the real daemon.

The API's path is a string (proto `string`, UTF-8). The engine returned such a name with
surrogate escapes, which the daemon could not encode: Execute answered INTERNAL and the
execution was lost, and a Submit's job thread died in the store (GetExecution INTERNAL). The
engine now skips such names (tests/jail/test_files_out_hostile.py); here every RPC answers with
the verdict and the files it can carry, and the daemon logs no error.
"""

from __future__ import annotations

from sandboxd_client import Client, ExecuteResult, ExecutionState, OutputFile, Verdict

from .daemon import Daemon

CODE = (
    "open(b'out/bad\\xff.txt', 'wb').write(b'bad name')\n"
    "open('out/ok.txt', 'w').write('ok')\n"
    "print('done')\n"
)
FILES = (OutputFile("ok.txt", b"ok"),)


def test_execute_stream_and_submit_answer_with_the_files_they_can_carry(
    zero_daemon: Daemon, client: Client
) -> None:
    r = client.execute("python", CODE)
    assert (r.verdict, r.stdout, r.files, r.files_truncated) == (
        Verdict.OK,
        b"done\n",
        FILES,
        False,
    ), r

    events = list(client.stream("python", CODE))
    assert tuple(e for e in events if isinstance(e, OutputFile)) == FILES
    final = events[-1]
    assert isinstance(final, ExecuteResult) and final.verdict is Verdict.OK, final

    execution = client.wait(client.submit("python", CODE), timeout_s=60)
    assert execution.state is ExecutionState.DONE, execution
    assert execution.result is not None
    assert (execution.result.verdict, execution.result.files) == (Verdict.OK, FILES)

    errors = [e for e in zero_daemon.logs if e.get("level") == "ERROR"]
    assert errors == [], errors
