"""bench.pool.perf_roles, read by `python -m bench.pool.cpu_roles`: perf script lines to roles
(pure: no perf, no engine)."""

from __future__ import annotations

import re

import pytest

from bench.pool.perf_roles import (
    CALLER,
    EXIT_HELPER,
    IDLE,
    INIT,
    KERNEL,
    OTHER,
    PERF,
    PROGRAM,
    TEMPLATE,
    ZYGOTE,
    BadWindow,
    Ignored,
    Lineage,
    Lost,
    Sample,
    Tally,
    Task,
    check_window,
    classify,
    kernel_group,
    parse_line,
)

CALLER_PID, ZYGOTE_PID, TEMPLATE_PID = 100, 200, 300
KNOWN = {CALLER_PID: CALLER, ZYGOTE_PID: ZYGOTE, TEMPLATE_PID: TEMPLATE}


def fork(time: float, comm: str, parent: int, child: int, parent_tid: int = 0) -> str:
    """A PERF_RECORD_FORK line: `child` == `parent` makes a thread (its tid is `child + 1000`)."""
    tid = child + 1000 if child == parent else child
    ptid = parent_tid or parent
    return (
        f"{comm:>16} {parent:>5}/{ptid:<5} {time:.6f}: "
        f"PERF_RECORD_FORK({child}:{tid}):({parent}:{ptid})"
    )


def leave(time: float, pid: int, parent: int) -> str:
    return f"{':' + str(pid):>16} {pid:>5}/{pid:<5} {time:.6f}: PERF_RECORD_EXIT({pid}:{pid}):({parent}:{parent})"


def cpu(time: float, comm: str, pid: int, tid: int = 0) -> str:
    return f"{comm:>16} {pid:>5}/{tid or pid:<5} {time:.6f}:                cpu-clock: "


def fault(time: float, comm: str, pid: int, tid: int = 0) -> str:
    return f"{comm:>16} {pid:>5}/{tid or pid:<5} {time:.6f}: page-faults/period=1/: "


def test_parse_line_reads_samples_forks_exits_and_lost_events() -> None:
    assert parse_line(cpu(5.0, "V8 DefaultWorke", 42, 43)) == Sample(
        5.0, "V8 DefaultWorke", 42, 43, "cpu-clock"
    )
    assert parse_line(fault(5.5, "python3.11", 7)) == Sample(5.5, "python3.11", 7, 7, "page-faults")
    assert parse_line(fork(6.0, "python3.11", 300, 301)) == Task(
        6.0, "python3.11", "FORK", 301, 301, 300, 300
    )
    assert parse_line(leave(7.0, 301, 200)) == Task(7.0, ":301", "EXIT", 301, 301, 200, 200)
    assert parse_line("            bash  7920/7920  40869.083527: PERF_RECORD_LOST lost 27") == (
        Lost(40869.083527, 27)
    )
    assert parse_line("     node 9/9 1.0: PERF_RECORD_COMM exec: node:9/9") == Ignored(
        1.0, "PERF_RECORD_COMM"
    )
    assert parse_line("garbage") is None


def test_kernel_threads_are_grouped_by_comm_prefix_and_kworkers_by_workqueue() -> None:
    assert kernel_group("kworker/u8:2-events_unbound") == "kernel kworker events_unbound"
    assert kernel_group("kworker/u8:1+netns") == "kernel kworker netns"
    assert kernel_group("kworker/u8:1+ne") == "kernel kworker ne"  # as perf shows it: 15 chars
    assert kernel_group("kworker/0:0H-kb") == "kernel kworker kb"
    assert kernel_group("kworker/R-blkcg") == "kernel kworker blkcg"  # a rescuer
    assert kernel_group("kworker/1:2") == "kernel kworker"
    assert kernel_group("ksoftirqd/1") == "kernel ksoftirqd"
    assert kernel_group("rcu_preempt") == "kernel rcu"
    assert kernel_group("python3.11") is None


def test_the_python_tree_template_init_program_exit_helper() -> None:
    lines = [
        cpu(1.000, "python3.11", TEMPLATE_PID),  # the window opens
        fork(1.001, "python3.11", TEMPLATE_PID, 301),  # CLONE_PARENT, in the template
        cpu(1.002, "python3.11", 301),
        fault(1.003, "python3.11", 301),
        fault(1.004, "python3.11", 301),
        fork(1.005, "python3.11", 301, 302),  # the init forks the program
        fault(1.006, "python3.11", 302),
        cpu(1.007, "python3.11", 302),
        fork(1.008, "python3.11", 302, 303),  # the program's CLONE_VM exit helper
        cpu(1.009, "python3.11", 303),
        fork(1.010, "python3.11", 302, 304),  # a later child of the program: the program's
        cpu(1.011, "python3.11", 304),
        leave(1.012, 304, 302),
        leave(1.013, 302, 301),
        leave(1.014, 303, 302),
        cpu(1.015, "python3.11", 303),  # a stale sample after the exit stays the helper's
        leave(1.016, 301, ZYGOTE_PID),
        cpu(1.017, "python3.11", ZYGOTE_PID),
        cpu(1.018, "python3.11", CALLER_PID),
    ]
    tally = classify(lines, KNOWN, Lineage())
    assert tally.cpu_samples == {
        TEMPLATE: 1,
        INIT: 1,
        PROGRAM: 2,
        EXIT_HELPER: 2,
        ZYGOTE: 1,
        CALLER: 1,
    }
    assert tally.faults == {INIT: 2, PROGRAM: 1}
    assert tally.made(PROGRAM) == 2 and tally.made(INIT) == 1 and tally.made(EXIT_HELPER) == 1
    assert tally.faults_per_process() == {
        EXIT_HELPER: (0.0, 1),
        INIT: (2.0, 1),
        PROGRAM: (0.5, 2),  # 1 fault and 0 faults
    }
    assert (tally.first_time_s, tally.last_time_s) == (1.0, 1.018)


def test_the_exec_path_zygote_makes_the_init_and_node_threads_stay_the_program() -> None:
    lines = [
        cpu(1.0, "python3.11", ZYGOTE_PID),
        fork(1.1, "python3.11", ZYGOTE_PID, 401),
        fork(1.2, "python3.11", 401, 402),
        fork(1.3, "node", 402, 402),  # a thread (tid 1402), not a child
        fork(1.31, "node", 402, 402, parent_tid=1402),  # a thread made by a thread
        cpu(1.4, "V8 DefaultWorke", 402, 1402),
        fault(1.5, "node", 402, 1402),
        fork(1.6, "node", 402, 403),  # a real child of node: the program's
        cpu(1.7, "node", 403),
    ]
    lineage = Lineage(zygote_child=INIT, program_first_child=PROGRAM)
    tally = classify(lines, KNOWN, lineage)
    assert tally.cpu_samples == {ZYGOTE: 1, PROGRAM: 2}
    assert tally.faults == {PROGRAM: 1}
    assert tally.made(INIT) == 1 and tally.made(PROGRAM) == 2


def test_a_reused_pid_gets_the_role_of_its_new_fork() -> None:
    lines = [
        cpu(1.0, "python3.11", 500),  # pid 500: an exit helper alive when perf started
        leave(1.1, 500, 499),
        fork(1.2, "python3.11", TEMPLATE_PID, 500),  # the pid again: now a confining child
        cpu(1.3, "python3.11", 500),
        fault(1.31, "python3.11", 500),
        fork(1.4, "python3.11", 500, 501),
        leave(1.5, 500, ZYGOTE_PID),
        fork(1.6, "python3.11", 501, 500),  # and again: the program's exit helper
        cpu(1.7, "python3.11", 500),
    ]
    tally = classify(lines, {**KNOWN, 500: EXIT_HELPER}, Lineage())
    assert tally.cpu_samples == {EXIT_HELPER: 2, INIT: 1}
    assert tally.faults == {INIT: 1}
    assert [(p.pid, p.role) for p in tally.processes] == [
        (500, EXIT_HELPER),
        (TEMPLATE_PID, TEMPLATE),
        (500, INIT),
        (501, PROGRAM),
        (500, EXIT_HELPER),
    ]
    assert tally.faults_per_process() == {INIT: (1.0, 1)}  # the only one made and gone


def test_kernel_threads_unknown_processes_idle_and_synthesized_records() -> None:
    lines = [
        "        kthreadd     0/0         0.000000: PERF_RECORD_FORK(3:3):(2:2)",  # skipped
        "         swapper     0/0         0.000000: PERF_RECORD_FORK(600:600):(1:1)",
        cpu(1.0, "swapper", 0),  # idle
        cpu(1.1, "kworker/1:2-events", 31),
        cpu(1.2, "kworker/u8:0-flush-254:0", 32),
        cpu(1.3, "ksoftirqd/0", 14),
        cpu(1.4, "rcu_preempt", 15),
        cpu(1.5, "sshd", 600),  # unknown: other
        fork(1.6, "sshd", 600, 601),  # an unknown process's child: other too
        cpu(1.7, "bash", 601),
        fork(1.8, "kthreadd", 2, 33),  # a new kernel thread, named by its comm
        cpu(1.9, "kworker/0:3", 33),
        fault(2.0, "sshd", 600),
    ]
    tally = classify(lines, {**KNOWN, 2: "kernel"}, Lineage())
    assert tally.cpu_samples == {
        IDLE: 1,
        "kernel kworker events": 1,
        "kernel kworker flush-254:0": 1,
        "kernel kworker": 1,
        "kernel ksoftirqd": 1,
        "kernel rcu": 1,
        OTHER: 2,
    }
    assert tally.faults == {OTHER: 1}
    assert tally.first_time_s == 1.0


def test_records_before_the_window_build_the_table_and_known_fills_what_perf_missed() -> None:
    lines = [
        # perf tracks tasks before its events are enabled; 700 (an init) was made while perf
        # was starting and never seen: its child looks "other" until the window opens.
        fork(0.5, "python3.11", 700, 701),
        fork(0.6, "python3.11", TEMPLATE_PID, 702),
        leave(0.7, 703, ZYGOTE_PID),  # an exit of a process never seen: nothing to do
        cpu(1.0, "python3.11", 701),  # the window opens
        cpu(1.1, "python3.11", 702),
        leave(1.2, 702, ZYGOTE_PID),
    ]
    tally = classify(lines, {**KNOWN, 701: PROGRAM}, Lineage())
    assert tally.cpu_samples == {PROGRAM: 1, INIT: 1}
    assert tally.made(INIT) == 0  # made before the window
    assert tally.faults_per_process() == {}  # 702 was made before the window: not whole
    assert tally.window_s == pytest.approx(0.1)


def test_lost_events_are_counted() -> None:
    lines = [
        cpu(1.0, "python3.11", CALLER_PID),
        "            perf  7920/7920  1.500000: PERF_RECORD_LOST lost 27",
        "            perf  7920/7920  1.600000: PERF_RECORD_LOST lost 3",
    ]
    assert classify(lines, KNOWN, Lineage()).lost == 30


def test_a_synthesized_fork_at_time_0_is_not_taken() -> None:
    # perf synthesizes a fork record (time 0) for every task alive at its start, from /proc:
    # its "parent" is whatever /proc said then. 800 is known as an init; a record at time 0
    # naming the program 801 its parent must not make it the program's exit helper.
    lines = [
        "         python3   801/801       0.000000: PERF_RECORD_FORK(800:800):(801:801)",
        cpu(1.0, "python3.11", 800),
        fork(1.1, "python3.11", 800, 802),  # the init's first child: the program
        cpu(1.2, "python3.11", 802),
    ]
    tally = classify(lines, {**KNOWN, 800: INIT, 801: PROGRAM}, Lineage())
    assert tally.cpu_samples == {INIT: 1, PROGRAM: 1}
    assert [(p.pid, p.role, p.forked_at_s) for p in tally.processes] == [
        (800, INIT, None),
        (802, PROGRAM, 1.1),
    ]


def test_a_thread_exit_leaves_its_process_alive() -> None:
    lines = [
        cpu(1.0, "python3.11", TEMPLATE_PID),
        fork(1.1, "python3.11", TEMPLATE_PID, 301),  # an init
        fork(1.2, "python3.11", 301, 301),  # a thread of it (tid 1301)
        "         python3   301/1301    1.300000: PERF_RECORD_EXIT(301:1301):(200:200)",
        fault(1.4, "python3.11", 301),  # the process still runs: its fault counts
        cpu(1.6, "python3.11", CALLER_PID),  # the window closes with 301 alive
    ]
    tally = classify(lines, KNOWN, Lineage())
    [init] = [p for p in tally.processes if p.pid == 301]
    assert (init.role, init.exited_at_s, init.faults) == (INIT, None, 1)
    assert tally.whole() == []  # 301 outlived the window: not whole
    later = classify(
        [*lines, leave(1.7, 301, ZYGOTE_PID), cpu(1.8, "x", CALLER_PID)], KNOWN, Lineage()
    )
    assert later.faults_per_process() == {INIT: (1.0, 1)}  # its own exit makes it whole


# Real lines, byte for byte as printed on this project's VM (`perf --version`: perf version
# 6.1.187; kernel 6.18.44) by bench.pool.perf_record.SCRIPT after
# `perf record -a -k CLOCK_MONOTONIC -B -N -m 16M -e page-faults/period=1/` while a python3
# started a thread (17671), forked a child (17672) and waited for it (a selection of the lines,
# in their order) ...
REAL_FAULTS = [
    "         python3 17669/17669 42234.877348: PERF_RECORD_COMM exec: python3:17669/17669",
    "         python3 17669/17669 42234.895381: page-faults/period=1/: ",
    "         python3 17669/17669 42234.895432: PERF_RECORD_FORK(17669:17671):(17669:17669)",
    "         python3 17669/17671 42234.895487: page-faults/period=1/: ",
    "         python3 17669/17671 42234.945835: PERF_RECORD_EXIT(17669:17671):(17667:17667)",
    "         python3 17669/17669 42234.946165: PERF_RECORD_FORK(17672:17672):(17669:17669)",
    "         python3 17669/17669 42234.946175: page-faults/period=1/: ",
    "         python3 17672/17672 42234.948568: page-faults/period=1/: ",
    "         python3 17672/17672 42234.948573: page-faults/period=1/: ",
    "         python3 17672/17672 42234.948582: PERF_RECORD_EXIT(17672:17672):(17669:17669)",
    "         python3 17669/17669 42234.951987: page-faults/period=1/: ",
    "         python3 17669/17669 42234.951998: PERF_RECORD_EXIT(17669:17669):(17667:17667)",
    "            perf 17667/17667 42234.952626: page-faults/period=1/: ",
]
# ... and with -F 1999 -e cpu-clock (two recordings: the python3's, and one while
# `unshare -n true` ran in a loop: a kworker cleaning up network namespaces, named as perf
# found it at its start, in 15 characters).
REAL_CPU = [
    " kworker/u8:1+ne     0/0         0.000000: PERF_RECORD_COMM: kworker/u8:1+ne:20140/20140",
    "         swapper     0/0     42212.995092: cpu-clock: ",
    " kworker/u8:1+ne 20140/20140 42213.000530: cpu-clock: ",
    "         python3 17680/17680 42236.083396: cpu-clock: ",
    "         python3 17680/17680 42236.092658: PERF_RECORD_FORK(17680:17682):(17680:17680)",
]


def test_real_perf_script_lines() -> None:
    assert [parse_line(line) for line in REAL_FAULTS[1:6]] == [
        Sample(42234.895381, "python3", 17669, 17669, "page-faults"),
        Task(42234.895432, "python3", "FORK", 17669, 17671, 17669, 17669),  # a thread
        Sample(42234.895487, "python3", 17669, 17671, "page-faults"),  # in the thread
        Task(42234.945835, "python3", "EXIT", 17669, 17671, 17667, 17667),  # its exit
        Task(42234.946165, "python3", "FORK", 17672, 17672, 17669, 17669),  # a child
    ]
    assert parse_line(REAL_FAULTS[0]) == Ignored(42234.877348, "PERF_RECORD_COMM")
    assert [parse_line(line) for line in REAL_CPU] == [
        Ignored(0.0, "PERF_RECORD_COMM"),
        Sample(42212.995092, "swapper", 0, 0, "cpu-clock"),
        Sample(42213.000530, "kworker/u8:1+ne", 20140, 20140, "cpu-clock"),
        Sample(42236.083396, "python3", 17680, 17680, "cpu-clock"),
        Task(42236.092658, "python3", "FORK", 17680, 17682, 17680, 17680),
    ]

    faults = classify(REAL_FAULTS, {17669: PROGRAM, 17667: PERF}, Lineage())
    assert faults.faults == {PROGRAM: 4, EXIT_HELPER: 2, PERF: 1}  # the thread's: the program's
    assert faults.samples == {"page-faults": 7}
    assert faults.unparsed == 0 and faults.lost == 0
    assert [(p.pid, p.role, p.faults) for p in faults.whole()] == [(17672, EXIT_HELPER, 2)]
    program = faults.processes[0]
    assert (program.pid, program.exited_at_s) == (17669, 42234.951998)  # not its thread's exit

    cpu_tally = classify(REAL_CPU, {17680: CALLER, 20140: KERNEL}, Lineage())
    assert cpu_tally.cpu_samples == {IDLE: 1, "kernel kworker ne": 1, CALLER: 1}
    assert cpu_tally.unparsed == 0


def _window(lines: list[str]) -> Tally:
    return classify(lines, KNOWN, Lineage())


RUN_S = (0.5, 10.0)


def test_a_usable_window_passes() -> None:
    tally = _window([cpu(1.0, "python3.11", CALLER_PID), cpu(2.0, "python3.11", CALLER_PID)])
    check_window("CPU", tally, "cpu-clock", 5, RUN_S)


@pytest.mark.parametrize(
    ("lines", "event", "executions", "run_s", "said"),
    [
        ([], "cpu-clock", 5, RUN_S, "no `cpu-clock` sample (samples seen: none)"),
        (  # perf named the event otherwise: every sample dropped
            [cpu(1.0, "x", CALLER_PID).replace("cpu-clock", "cpu-clock:ppp")] * 2,
            "page-faults",
            5,
            RUN_S,
            "no `page-faults` sample (samples seen: cpu-clock x2)",
        ),
        ([cpu(1.0, "x", CALLER_PID)], "cpu-clock", 5, RUN_S, "its samples span no time"),
        (
            [cpu(1.0, "x", CALLER_PID), cpu(2.0, "x", CALLER_PID)],
            "cpu-clock",
            0,
            RUN_S,
            "no execution finished OK inside it",
        ),
        (
            [
                cpu(1.0, "x", CALLER_PID),
                "perf 1/1 1.5: PERF_RECORD_LOST lost 27",
                cpu(2.0, "x", CALLER_PID),
            ],
            "cpu-clock",
            5,
            RUN_S,
            "perf lost 27 events",
        ),
        (
            [cpu(1.0, "x", CALLER_PID), "Warning: something", cpu(2.0, "x", CALLER_PID)],
            "cpu-clock",
            5,
            RUN_S,
            "1 lines of perf script were not understood",
        ),
        (
            [cpu(1.0, "x", CALLER_PID), cpu(2.0, "x", CALLER_PID)],
            "cpu-clock",
            5,
            (0.5, 1.5),
            "it is not inside the harness's run (1.000-2.000 s, run 0.500-1.500 s)",
        ),
        (
            [cpu(1.0, "x", CALLER_PID), cpu(2.0, "x", CALLER_PID)],
            "cpu-clock",
            5,
            (1.5, 10.0),
            "it is not inside the harness's run",
        ),
    ],
)
def test_an_unusable_window_is_refused(
    lines: list[str], event: str, executions: int, run_s: tuple[float, float], said: str
) -> None:
    with pytest.raises(BadWindow, match=re.escape(said)):
        check_window("CPU", _window(lines), event, executions, run_s)
