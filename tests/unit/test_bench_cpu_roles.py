"""`python -m bench.pool.cpu_roles`: perf script lines to roles (pure: no perf, no engine)."""

from __future__ import annotations

import pytest

from bench.pool.perf_roles import (
    CALLER,
    EXIT_HELPER,
    IDLE,
    INIT,
    OTHER,
    PROGRAM,
    TEMPLATE,
    ZYGOTE,
    Lineage,
    Lost,
    Sample,
    Task,
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
    assert parse_line("     node 9/9 1.0: PERF_RECORD_COMM exec: node:9/9") is None
    assert parse_line("garbage") is None


def test_kernel_threads_are_grouped_by_comm_prefix() -> None:
    assert kernel_group("kworker/u8:2-events_unbound") == "kernel kworker"
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
    assert (tally.first_time, tally.last_time) == (1.0, 1.018)


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
        "kernel kworker": 3,
        "kernel ksoftirqd": 1,
        "kernel rcu": 1,
        OTHER: 2,
    }
    assert tally.faults == {OTHER: 1}
    assert tally.first_time == 1.0


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
