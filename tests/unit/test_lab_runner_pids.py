"""Runner pids in one place every process reads (``pids.json``), and runner control that signals
only a pid it just verified to be that runner's daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid

import psutil
import pytest

from harness import procs
from harness.errors import LabError
from harness.runners import control
from harness.runners.process import LabRunner, ProcessRecord, check_process

from .lab_fakes import fake_lab_runner


@pytest.fixture
def runner(tmp_path):
    lab_id = f"unit-pids-{uuid.uuid4().hex[:6]}"
    runner = fake_lab_runner(tmp_path, lab_id)
    runner.prepare()
    yield runner
    procs.sweep(lab_id)


def started(runner: LabRunner) -> LabRunner:
    runner.start_cache_server()
    runner.start()
    runner.wait_online()
    return runner


def test_a_restart_is_seen_by_every_other_handle_of_the_runner(runner):
    started(runner)
    other = LabRunner.from_state(json.loads(runner.state_file.read_text()))  # another xdist worker's handle
    assert (other.pid, other.cache_pid) == (runner.pid, runner.cache_pid)
    old_pid, cache_pid = runner.pid, runner.cache_pid
    runner.restart()
    assert runner.pid != old_pid and not procs.alive(old_pid)
    assert other.pid == runner.pid and other.cache_pid == cache_pid  # re-read from pids.json, no reload
    assert other.starts == runner.starts == 2
    saved = json.loads(runner.pid_file.read_text())
    assert saved["daemon"]["pid"] == runner.pid
    assert saved["daemon"]["create_time"] == pytest.approx(psutil.Process(runner.pid).create_time())


def test_a_restart_brings_a_dead_cache_server_back(runner):
    started(runner)
    procs.stop(runner.cache_pid, budget=5)
    runner.restart()
    assert procs.alive(runner.cache_pid)


def test_signals_reach_the_verified_daemon(runner):
    started(runner)
    other = LabRunner.from_state(json.loads(runner.state_file.read_text()))
    runner.restart()
    control.send(other, "STOP")  # the other handle signals the new daemon, not the old pid
    assert control.state(runner) == "stopped"
    control.send(other, "CONT")
    assert control.state(runner) == "running"
    pid = runner.pid
    control.send(other, "KILL")
    psutil.Process(pid).wait(timeout=5)
    assert control.state(runner) == "gone"


def test_a_reused_pid_is_never_signalled(runner, tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # pids.json names a process that is not this runner's daemon (its pid was reused)
        runner.daemon = ProcessRecord.of(stranger.pid)
        runner._save_pids()
        with pytest.raises(LabError, match=rf"pid {stranger.pid} is not runner regress-12.1.2's daemon: it runs .*"
                                           "nothing was signalled"):
            control.send(runner, "KILL")
        assert runner.stop().startswith("not stopped: pid")
        assert control.state(runner) == "gone"
        assert stranger.poll() is None
        # the same pid but another start time: reused after the daemon died
        runner.daemon = ProcessRecord(stranger.pid, psutil.Process(stranger.pid).create_time() - 30)
        runner._save_pids()
        with pytest.raises(LabError, match="the pid was reused"):
            runner.signal(signal.SIGTERM)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_runner_never_started_or_gone_is_named(runner):
    with pytest.raises(LabError, match=r"runner regress-12\.1\.2.s daemon has no recorded pid"):
        control.send(runner, "TERM")
    started(runner)
    pid = runner.pid
    procs.stop(pid, budget=5)
    with pytest.raises(LabError, match=f"is not running \\(pid {pid}"):
        control.send(runner, "KILL")
    with pytest.raises(LabError, match="unknown signal 'HUP'"):
        control.send(runner, "HUP")


def test_check_process_compares_the_command_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = ProcessRecord.of(proc.pid)
        cmdline = psutil.Process(proc.pid).cmdline()
        assert check_process(record, cmdline, "x") == proc.pid
        with pytest.raises(LabError, match="expected 'other'"):
            check_process(record, ["other"], "x")
    finally:
        proc.kill()
        proc.wait()


def test_state_round_trip(runner):
    runner.registration = "4141"
    again = LabRunner.from_state(runner.to_state())
    assert again.to_state() == runner.to_state()
    assert again.key == "12.1.2" and again.config_file == runner.config_file
