"""Files out, attacked: what a hostile program can leave in out/ for the pool to read after its
exit (files_out.py; docs/environments.md, "Files out").

The pool walks out/ one name at a time relative to descriptors, with O_NOFOLLOW, and returns
regular files only. These programs leave what a careless walker would follow, block on, choke
on or be unable to return: hard links to files outside out/, sockets, FIFOs, devices, a tree
deeper than the walk, more names than it looks at, names that are not UTF-8 (the result's
path is a string), a sparse file of the size of the whole budget, a folder shut to everyone,
and a background process changing out/ while the pool reads it. Verdicts and files are exact;
nothing outside out/ ever comes back.

What this found: a name that is not valid UTF-8 came back as a path with surrogate escapes,
which the daemon cannot encode: the execution was lost (Execute answered INTERNAL, a Submit's
job thread died: tests/e2e/test_files_out_names.py). Such names are now skipped. And the pool
listed and sorted every name under out/ whatever its limits (a program under the default
256 MiB made ~250,000 entries of 250 bytes: +57 MB in the pool's process and 0.8 s of its
time per execution, growing with the memory limit up to the 4 GiB ceiling); it now looks at
most at OUT_MAX_ENTRIES names (20,000, as subuid mode opens up), and past that says
files_truncated.
"""

from __future__ import annotations

import textwrap

import pytest
from helpers import run

from sandboxd_pool import Limits, OutputFile, Pool, Runtime, Verdict
from sandboxd_pool.jail.policy import OUT_MAX_DEPTH, OUT_MAX_ENTRIES

RUNTIMES = pytest.mark.parametrize(
    "runtime", [Runtime.PYTHON, Runtime.JAVASCRIPT], ids=["py", "js"]
)

# ---------------------------------------------------------------------- names the API cannot carry

NOT_UTF8 = {
    Runtime.PYTHON: textwrap.dedent(
        """
        import os
        open(b"out/bad\\xff\\xfe.txt", "wb").write(b"bad name")
        os.mkdir(b"out/folder\\xc3")
        open(b"out/folder\\xc3/inner.txt", "wb").write(b"in a bad folder")
        open("out/new\\nline", "w").write("a newline is UTF-8")
        open("out/ok.txt", "w").write("ok")
        print("written")
        """
    ),
    Runtime.JAVASCRIPT: textwrap.dedent(
        """
        const fs = require('fs');
        const name = (...parts) => Buffer.concat(parts.map((p) => Buffer.from(p)));
        fs.writeFileSync(name('out/bad', [0xff, 0xfe], '.txt'), 'bad name');
        fs.mkdirSync(name('out/folder', [0xc3]));
        fs.writeFileSync(name('out/folder', [0xc3], '/inner.txt'), 'in a bad folder');
        fs.writeFileSync('out/new\\nline', 'a newline is UTF-8');
        fs.writeFileSync('out/ok.txt', 'ok');
        console.log('written');
        """
    ),
}


@RUNTIMES
def test_names_that_are_not_utf8_are_skipped(pool: Pool, runtime: Runtime) -> None:
    outcome = run(pool, runtime, NOT_UTF8[runtime])
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"written\n"), outcome
    assert outcome.files == (
        OutputFile("new\nline", b"a newline is UTF-8"),
        OutputFile("ok.txt", b"ok"),
    )
    assert outcome.files_truncated is False


# ---------------------------------------------------------------------------- more than it reads


def test_more_names_than_the_pool_looks_at_is_truncated(pool: Pool) -> None:
    """FIFOs are never returned; past OUT_MAX_ENTRIES names the rest is not even listed, and
    the outcome says that something was left out."""
    code = (
        "import os, sys\n"
        "for n in range(int(sys.argv[1])):\n"
        "    os.mkfifo(f'out/f{n:06d}')\n"
        "print('made', len(os.listdir('out')))\n"
    )
    count = OUT_MAX_ENTRIES + 2_000
    outcome = run(
        pool, Runtime.PYTHON, code, args=(str(count),), limits=Limits(wall_time_ms=30_000)
    )
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, f"made {count}\n".encode()), outcome
    assert (outcome.files, outcome.files_truncated) == ((), True)


def test_as_many_names_as_the_pool_looks_at_is_not_truncated(pool: Pool) -> None:
    """The control: exactly OUT_MAX_ENTRIES names, out/ itself not counted, one a file."""
    code = (
        "import os, sys\n"
        "for n in range(int(sys.argv[1]) - 1):\n"
        "    os.mkfifo(f'out/f{n:06d}')\n"
        "open('out/zz.txt', 'w').write('last')\n"
        "print('made', len(os.listdir('out')))\n"
    )
    outcome = run(
        pool, Runtime.PYTHON, code, args=(str(OUT_MAX_ENTRIES),), limits=Limits(wall_time_ms=30_000)
    )
    assert (outcome.verdict, outcome.stdout) == (
        Verdict.OK,
        f"made {OUT_MAX_ENTRIES}\n".encode(),
    ), outcome
    assert (outcome.files, outcome.files_truncated) == ((OutputFile("zz.txt", b"last"),), False)


def test_a_tree_deeper_than_the_walk(pool: Pool) -> None:
    """A file in each of 40 nested folders: those of the first OUT_MAX_DEPTH - 1 folders below
    out/ (and out/ itself) come back, deeper ones do not, and the outcome says so."""
    code = (
        "import os\n"
        "path = 'out'\n"
        "for level in range(40):\n"
        "    open(f'{path}/f.txt', 'w').write(str(level))\n"
        "    path += '/d'\n"
        "    os.mkdir(path)\n"
        "print('deep')\n"
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"deep\n"), outcome
    # In path order: in each folder "d" comes before "f.txt", so the deepest file comes first.
    assert outcome.files == tuple(
        OutputFile("d/" * level + "f.txt", str(level).encode())
        for level in reversed(range(OUT_MAX_DEPTH))
    )
    assert outcome.files_truncated is True


# ------------------------------------------------------------------------- what is not out/'s own


def test_hard_links_bring_back_only_the_programs_own_files(pool: Pool) -> None:
    """A hard link needs the same mount: only files under /work can be linked into out/ (the
    program's own); /tmp and /dev/shm are other binds of the same tmpfs, and every file of the
    jail that is not the program's is on another filesystem."""
    code = textwrap.dedent(
        """
        import os
        open("/work/w", "w").write("from /work")
        open("/work/shut", "w").write("mode 0")
        os.chmod("/work/shut", 0)
        os.link("/work/w", "out/w")
        os.link("/work/shut", "out/shut")
        open("/tmp/t", "w").write("from /tmp")
        open("/dev/shm/s", "w").write("from /dev/shm")
        for path in ("/tmp/t", "/dev/shm/s", "/etc/passwd", "/opt/sandboxd/python_boot.py",
                     "/usr/bin/env", "/proc/self/status", "/dev/null"):
            try:
                os.link(path, "out/foreign")
                print("linked", path)
            except OSError as e:
                print(e.errno, end=" ")
        print()
        """
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"18 18 18 18 18 18 18 \n"), outcome
    assert outcome.files == (
        OutputFile("shut", b"mode 0"),  # mode 0 to the program: the pool reads it (root mode)
        OutputFile("w", b"from /work"),
    )


def test_sockets_fifos_devices_and_links_to_them_are_not_returned(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import os, socket
        listening = socket.socket(socket.AF_UNIX)
        listening.bind("out/listening.sock")
        listening.listen()
        socket.socket(socket.AF_UNIX).bind("out/bound.sock")
        os.mkfifo("out/fifo")
        fifo_held = os.open("out/fifo", os.O_RDWR)  # open at the exit too
        try:
            os.mknod("out/null", 0o666 | 0o020000, os.makedev(1, 3))
        except OSError as e:
            print("mknod", e.errno)
        os.symlink("fifo", "out/to-fifo")
        os.symlink("listening.sock", "out/to-socket")
        os.symlink("/dev/zero", "out/to-zero")
        os.symlink("/proc/1/mem", "out/to-init-memory")
        open("out/real", "w").write("real")
        print("left")
        """
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"mknod 1\nleft\n"), outcome
    assert (outcome.files, outcome.files_truncated) == ((OutputFile("real", b"real"),), False)


@pytest.mark.parametrize(
    "replacement",
    [
        "os.mkfifo('out')",
        "open('out', 'w').write('a file named out')",
        "os.symlink('/work', 'out')",
        "os.mkdir('elsewhere')\nopen('elsewhere/x', 'w').write('x')\nos.symlink('elsewhere', 'out')",
    ],
    ids=["fifo", "file", "symlink-to-work", "symlink-to-a-folder"],
)
def test_an_output_folder_that_is_not_a_folder_returns_nothing(
    pool: Pool, replacement: str
) -> None:
    code = f"import os\nos.rmdir('out')\n{replacement}\nprint('replaced')\n"
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"replaced\n"), outcome
    assert (outcome.files, outcome.files_truncated) == ((), False)


def test_work_and_out_cannot_be_swapped_for_other_folders(pool: Pool) -> None:
    """The pool holds /work from the worker's boot; out/ is found in it by name. /work is a
    mount point of the read-only root, and a folder of /tmp or /dev/shm (the same tmpfs,
    other binds) cannot be moved in as out/."""
    code = textwrap.dedent(
        """
        import errno, os
        os.mkdir("/tmp/fake")
        open("/tmp/fake/planted", "w").write("planted")
        open("out/real", "w").write("real")
        def attempt(call, *args):
            try:
                call(*args)
                return "done"
            except OSError as e:
                return errno.errorcode[e.errno]
        print(attempt(os.rename, "/work", "/tmp/work"), attempt(os.rmdir, "/work"),
              attempt(os.rename, "/tmp/fake", "/work/fake"),
              attempt(os.rename, "/work/out", "/tmp/out"))
        """
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.stdout) == (
        Verdict.OK,
        b"EXDEV EROFS EXDEV EXDEV\n",
    ), outcome
    assert (outcome.files, outcome.files_truncated) == ((OutputFile("real", b"real"),), False)


def test_files_and_folders_shut_to_everyone_come_back(pool: Pool) -> None:
    code = textwrap.dedent(
        """
        import os
        os.makedirs("out/a/b")
        open("out/a/b/f", "w").write("shut in")
        for path in ("out/a/b/f", "out/a/b", "out/a", "out", "/work"):
            os.chmod(path, 0)
        print("shut")
        """
    )
    outcome = run(pool, Runtime.PYTHON, code)
    assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"shut\n"), outcome
    assert outcome.files == (OutputFile("a/b/f", b"shut in"),)


# ------------------------------------------------------------------------------- sizes


def test_a_sparse_file_of_the_whole_budget(pool: Pool) -> None:
    """64 MiB that take no room on the tmpfs: all of it comes back at the ceiling of the byte
    budget, and the next file is left out."""
    size = 64 * 1024 * 1024
    code = (
        "import os, sys\n"
        "with open('out/a-sparse', 'wb') as f:\n"
        "    f.truncate(int(sys.argv[1]))\n"
        "open('out/b-after', 'w').write('x')\n"
    )
    outcome = run(
        pool, Runtime.PYTHON, code, args=(str(size),), limits=Limits(max_output_files_bytes=size)
    )
    assert outcome.verdict is Verdict.OK, outcome
    assert [f.path for f in outcome.files] == ["a-sparse"]
    assert outcome.files[0].data == bytes(size)
    assert outcome.files_truncated is True


# --------------------------------------------------------------------- out/ changing under the pool

# A child the program leaves behind rewrites, truncates, renames and swaps entries of out/ as fast
# as it can, and holds a write lease on one file (an open for reading would wait for the lease
# to be broken, 45 s by default, were it not non-blocking), while the pool reads out/ after the
# program's exit. Whatever the pool sees, each file it returns is one of these names with a
# prefix of its content, and nothing else.
CHURN = textwrap.dedent(
    """
    import fcntl, os, time
    F_SETLEASE = 1024
    open("out/leased", "w").write("leased")
    open("out/steady", "w").write("steady")
    def attempt(call, *args):
        try:
            call(*args)
        except OSError:
            pass
    def write(path, data):
        with open(path, "w") as f:
            f.write(data)
    r, w = os.pipe()
    if os.fork() == 0:
        lease = os.open("out/leased", os.O_WRONLY)
        fcntl.fcntl(lease, F_SETLEASE, fcntl.F_WRLCK)
        os.write(w, b"leased")
        n = 0
        while True:
            n += 1
            attempt(write, "out/grow.tmp", "g" * (n % 5000))
            attempt(os.replace, "out/grow.tmp", "out/grow")
            attempt(os.truncate, "out/grow", n % 7)
            attempt(os.mkfifo, "out/swap.tmp")
            attempt(os.replace, "out/swap.tmp", "out/swap")
            attempt(write, "out/swap.tmp", "s" * 100)
            attempt(os.replace, "out/swap.tmp", "out/swap")
            attempt(os.symlink, "/etc/passwd", "out/link.tmp")
            attempt(os.replace, "out/link.tmp", "out/dir-or-link")
            attempt(os.mkdir, "out/dir.tmp")
            attempt(write, "out/dir.tmp/inner", "i" * 10)
            attempt(os.unlink, "out/dir-or-link")
            attempt(os.rename, "out/dir.tmp", "out/dir-or-link")
            attempt(os.unlink, "out/dir-or-link/inner")
            attempt(os.rmdir, "out/dir-or-link")
    os.read(r, 6)
    time.sleep(0.05)
    print("leaving it running")
    """
)
CHURN_CONTENT = {
    "leased": b"leased",
    "steady": b"steady",
    "grow": b"g" * 5000,
    "grow.tmp": b"g" * 5000,
    "swap": b"s" * 100,
    "swap.tmp": b"s" * 100,
    "dir.tmp/inner": b"i" * 10,
    "dir-or-link/inner": b"i" * 10,
}


def test_a_background_process_churning_out_while_the_pool_reads(pool: Pool) -> None:
    for _ in range(5):
        outcome = run(pool, Runtime.PYTHON, CHURN, limits=Limits(wall_time_ms=10_000))
        assert (outcome.verdict, outcome.stdout) == (Verdict.OK, b"leaving it running\n"), outcome
        assert OutputFile("steady", b"steady") in outcome.files
        for f in outcome.files:
            assert f.path in CHURN_CONTENT, f
            assert CHURN_CONTENT[f.path].startswith(f.data), f
        assert b"root:" not in b"".join(f.data for f in outcome.files)
