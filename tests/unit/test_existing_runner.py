"""harness.runners.existing: an admin's runner process read from /proc, never touched (the happy path on a real
runner is tests/lab/test_product_flows.py's existing-instance test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.observe.existing import other_tasks
from harness.runners import existing
from tests.unit.lab_fakes import stand_in


@pytest.mark.parametrize(("text", "parsed"), [("12.1.2=1234", ("12.1.2", "1234")),
                                              ("12.1.2=unit:forgejo-runner", ("12.1.2", "unit:forgejo-runner"))])
def test_specs(text, parsed):
    assert existing.parse_spec(text) == parsed


@pytest.mark.parametrize("text", ["12.1.2", "12.1.2=", "=1234", "12.1.2=unit:", "12.1.2=pid1234"])
def test_bad_specs_are_one_line(text):
    with pytest.raises(ConfigError, match="is not VERSION=PID or VERSION=unit:NAME"):
        existing.parse_spec(text)


@pytest.mark.parametrize(("argv", "config", "runner"), [
    (["/usr/local/bin/forgejo-runner", "-c", "config.yaml", "daemon"], "config.yaml", True),
    (["forgejo-runner", "--config=/etc/runner/c.yml", "daemon"], "/etc/runner/c.yml", True),
    (["/opt/forgejo-runner-12.1.2", "daemon"], None, True),
    (["forgejo-runner", "-c", "c.yml", "cache-server"], "c.yml", False),
    (["/usr/bin/python3", "-m", "http.server"], None, False),
    ([], None, False),
])
def test_the_command_line_says_whether_it_is_a_runner_daemon_and_its_config(argv, config, runner):
    assert existing.config_arg(argv) == config
    assert existing.is_runner(argv) is runner


def systemctl(tmp_path: Path, answer: str, code: int = 0) -> str:
    """A stand-in systemctl (this machine has no systemd): prints ``answer`` for ``show -p MainPID --value``."""
    return stand_in(tmp_path / "systemctl", f"#!/bin/sh\n[ \"$1 $2 $3 $4\" = 'show -p MainPID --value' ] || exit 3\n"
                    f"echo '{answer}'\nexit {code}\n")


def test_a_unit_s_main_pid_from_systemctl(tmp_path):
    assert existing.unit_pid("forgejo-runner", systemctl=systemctl(tmp_path, "4321")) == 4321


@pytest.mark.parametrize(("answer", "code", "says"), [("0", 0, r"no main process \(is it running\?\)"),
                                                      ("", 1, "systemctl show says")])
def test_a_unit_without_a_process_is_one_line(tmp_path, answer, code, says):
    with pytest.raises(ConfigError, match=says):
        existing.unit_pid("forgejo-runner", systemctl=systemctl(tmp_path, answer, code))


def test_no_systemctl_says_to_give_the_pid(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="no systemctl on PATH; give the runner's PID instead"):
        existing.unit_pid("forgejo-runner")


def test_a_pid_that_is_not_a_runner_or_gone_is_one_line():
    with pytest.raises(ConfigError, match=rf"PID {os.getpid()} is not a forgejo-runner daemon \(it runs python"):
        existing.resolve(f"12.1.2={os.getpid()}")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(ConfigError, match=rf"PID {gone.pid} is not running"):
        existing.resolve(f"12.1.2={gone.pid}")


def test_only_home_and_docker_host_are_kept_from_the_environment(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DOCKER_HOST": "unix:///run/d.sock",
           "FORGEJO_RUNNER_SECRET": "s3cr3t-value"}
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"  # exec'd: its own environment now
        assert existing._environ(proc.pid) == {"HOME": str(tmp_path), "DOCKER_HOST": "unix:///run/d.sock"}
    finally:
        proc.kill()
        proc.wait()


def test_the_runner_s_name_is_read_and_its_token_never_kept(tmp_path):
    from harness.redact import redact

    runner_file = tmp_path / ".runner"
    runner_file.write_text(json.dumps({"name": "prod-runner-b", "uuid": "7e1c-uuid-value", "token": "tok-0123456789"}))
    assert existing.runner_name(runner_file) == "prod-runner-b"
    assert existing.runner_name(tmp_path / "missing") == "" and existing.runner_name(None) == ""
    from harness.diagnose.layout import _register_runner_file

    _register_runner_file(runner_file)
    assert "tok-0123456789" not in redact("token tok-0123456789 uuid 7e1c-uuid-value")


def test_a_capture_sends_no_signal(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        layout = existing.layouts.from_dirs(tmp_path, tmp_path, tmp_path)
        runner = existing.ExistingRunner("12.1.2", proc.pid, f"PID {proc.pid}", "r", None, tmp_path, layout)
        found = existing.capture(runner, cpu_seconds=0.2)
        assert found["signal"] is None and found["state"] in ("sleeping", "running")
        assert proc.poll() is None, "the process must still run: no signal was sent"
        assert runner.ledger_dir.name == f"r-{proc.pid}" and tmp_path not in runner.ledger_dir.parents
    finally:
        proc.kill()
        proc.wait()


def test_other_tasks_in_the_runner_log_window():
    window = ("level=info msg=\"task 41 repo is o/r\"\n[w/j] ⭐ Run Main x\nlevel=info msg=\"task 42 repo is o/s\"\n"
              "FORGEJO-ACTIONS-TASK-43_WORKFLOW-w_JOB-j\nlevel=info msg=\"runner: idle\"\n")
    assert other_tasks(window, 41) == [42, 43]
    assert other_tasks("level=info msg=\"task 41 repo is o/r\"\n", 41) == []


def test_the_shared_check_reads_only_the_job_s_own_span_of_the_log():
    from datetime import UTC, datetime

    from harness.observe.existing import within

    def at(second: int) -> float:
        return datetime(2026, 12, 5, 18, 47, second, tzinfo=UTC).timestamp()

    window = ('time="2026-12-05T18:47:01Z" level=info msg="task 40 repo is o/r"\n'
              'time="2026-12-05T18:47:12Z" level=info msg="task 41 repo is o/s"\n'
              'a line without a stamp\n'
              'time="2026-12-05T18:47:50Z" level=info msg="task 42 repo is o/t"\n')
    kept = within(window, at(10), at(30))
    assert other_tasks(kept, 41) == [] and "a line without a stamp" in kept
    assert other_tasks(within(window, at(0), at(59)), 41) == [40, 42]
