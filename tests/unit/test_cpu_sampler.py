"""harness.observe.cpu: the sampler on real processes: a busy child is seen in the tree, a vanished runner is
an error, and samplers watching at once share one process-table read per tick."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from harness.observe import cpu
from harness.waiting import wait_for

BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
PARENT = ("import subprocess, sys, time\n"
          f"child = subprocess.Popen([sys.executable, '-c', {BUSY!r}])\n"
          "time.sleep(30)\n")


@pytest.fixture
def busy_tree() -> Iterator[subprocess.Popen[bytes]]:
    """An idle parent whose child spins one core."""
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        yield proc
    finally:
        for child in cpu.ProcessTable.read().tree(proc.pid)[1:]:
            subprocess.run(["kill", "-9", str(child)], check=False)
        proc.kill()
        proc.wait()


def _samples(sampler: cpu.CpuSampler, n: int) -> list[cpu.Sample]:
    return wait_for(f"{n} CPU samples", "runner_online", lambda: list(sampler.samples), lambda s: len(s) >= n,
                    describe=lambda s: f"{len(s or [])} samples")


def test_the_tree_holds_the_busy_child_and_the_runner_figure_only_the_root(busy_tree):
    wait_for("the busy child", "runner_online", lambda: cpu.ProcessTable.read().tree(busy_tree.pid),
             lambda t: len(t) == 2, describe=repr)
    sampler = cpu.CpuSampler(busy_tree.pid).start()
    try:
        samples = _samples(sampler, 8)
    finally:
        sampler.stop()
    tail = samples[2:]
    assert sum(s.tree_pct for s in tail) / len(tail) > 50  # the child spins a core
    assert sum(s.runner_pct for s in tail) / len(tail) < 20  # the parent sleeps
    assert all(a.t < b.t for a, b in itertools.pairwise(samples))


def test_samplers_watching_at_once_share_one_table_read_per_tick(busy_tree):
    first = cpu.CpuSampler(busy_tree.pid).start()
    second = cpu.CpuSampler(busy_tree.pid, [busy_tree.pid]).start()
    try:
        ticker = first._ticker
        assert ticker is not None and second._ticker is ticker
        base = ticker.reads  # the ticker may have served an earlier test's sampler
        _samples(second, 6)
        reads = ticker.reads - base
        taken = len(first.samples) + len(second.samples)
        assert taken >= 2 * reads - 4  # nearly every read gave both samplers a sample: one read per tick, not two
    finally:
        first.stop()
        second.stop()
    assert first.stop() == first.samples  # stopping twice is harmless


def test_a_runner_that_is_gone_is_an_error_not_samples():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = cpu.CpuSampler(proc.pid).start()
    try:
        wait_for("the sampler to notice", "runner_online", lambda: sampler.error, lambda e: e is not None)
    finally:
        sampler.stop()
    assert sampler.error == f"runner process {proc.pid} is gone"
    assert sampler.samples == []


def test_no_pid_is_unavailable_without_a_thread():
    sampler = cpu.CpuSampler(None).start()
    assert sampler.error == "no runner PID (not a lab runner)"
    assert sampler.stop() == []


def test_process_table_tree_of_an_unknown_pid_is_empty():
    table = cpu.ProcessTable(0.0, {10: (1, 0.0), 11: (10, 0.0), 12: (11, 0.0), 13: (1, 0.0)})
    assert sorted(table.tree(10)) == [10, 11, 12]
    assert table.tree(99) == []


def test_stat_is_parsed_after_the_last_parenthesis_of_the_command_name():
    raw = b"4242 (a) b) (c) S 17 4242 4242 0 -1 4194304 131 0 0 0 250 50 0 0 20 0 1 0 2100598 3133440 418"
    ppid, seconds = cpu.parse_stat(raw)
    assert ppid == 17
    assert seconds == pytest.approx(300 / cpu.TICKS)
    assert cpu.parse_stat(b"") is None  # the process ended while read
    assert cpu.parse_stat(b"4242 (short) S 1") is None


def test_the_table_agrees_with_psutil_on_this_process():
    table = cpu.ProcessTable.read()
    me = psutil.Process()
    ppid, seconds = table.rows[os.getpid()]
    assert ppid == me.ppid()
    times = me.cpu_times()
    assert seconds == pytest.approx(times.user + times.system, abs=0.5)
    assert os.getpid() in table.tree(ppid)
