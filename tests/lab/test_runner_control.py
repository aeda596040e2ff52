"""Runner control on a real lab runner: stop on a log-line trigger, resume, restart (seen by every
handle); private runners; and liveness."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from harness import procs
from harness.budgets import BUDGETS
from harness.forgejo.models import Status
from harness.lab import firewall, private
from harness.lab.booting import boot
from harness.lab.lab import Lab, RunnerSpec
from harness.lab.private import private_runner
from harness.observe.stall import StallWatch
from harness.runners import control
from harness.runners.process import label_name
from harness.versions import Version
from harness.waiting import wait_for

from .conftest import newest_forgejo, resolve_or_skip
from .helpers import push, workflow

pytestmark = [pytest.mark.lab]


@pytest.fixture
def small_lab():
    forgejo = newest_forgejo()
    runner = resolve_or_skip("forgejo-runner", Version(12, 1, 2))
    lab = boot(f"ctl-{uuid.uuid4().hex[:6]}", forgejo, [RunnerSpec(runner)], use_docker=False)
    yield lab
    leaks = lab.down()
    assert not leaks, leaks


def _native(lab):
    runner = next(iter(lab.runners.values()))
    return runner, label_name(runner.labels["native"])


def test_stop_on_trigger_resume_and_restart(small_lab):
    runner, label = _native(small_lab)
    steps = "      - run: echo control-trigger-line && sleep 6 && echo after-the-pause\n"
    pushed = push(small_lab, workflow("ctl", label, steps), label, "ctl")
    trigger = control.LogTrigger(runner, "control-trigger-line", "STOP")
    seen: dict[str, str] = {}

    def on_poll(view):
        if trigger.fired_at is None and view.steps:
            full = pushed.web.job_view(pushed.ref, known_steps=len(view.steps))
            if full is not None and trigger.check(full.log_lines()):
                seen["state"] = control.state(runner)
                control.send(runner, "CONT")
                seen["after_resume"] = control.state(runner)

    view = pushed.watch(on_poll).view
    assert trigger.fired_at is not None, "the trigger line never appeared"
    assert seen == {"state": "stopped", "after_resume": "running"}
    assert view.job_status() is Status.SUCCESS, view.summary()

    control.send(runner, "KILL")
    wait_for("the killed runner to be gone", "runner_stop", lambda: control.state(runner), lambda s: s == "gone")
    runner.restart()
    assert control.state(runner) == "running"
    again = push(small_lab, workflow("after", label, "      - run: echo back\n"), label, "after").watch().view
    assert again.job_status() is Status.SUCCESS


def test_silent_60s_step_is_never_stalled(small_lab):
    _, label = _native(small_lab)
    pushed = push(small_lab, workflow("silent", label, "      - run: sleep 60\n"), label, "silent")
    watch = StallWatch(budget=BUDGETS.runner_stalled)
    last = [0.0]

    def on_poll(view):
        if view.steps and time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            watch.feed(pushed.client.tasks(pushed.ref.owner, pushed.ref.repo), 1, "silent")

    view = pushed.watch(on_poll).view
    assert view.job_status() is Status.SUCCESS
    assert watch.task_id is not None and len(watch.history) >= 30, "updated_at was not seen advancing every second"
    assert watch.stalled_at is None, f"a healthy runner was reported stalled after {watch.silent_for:.0f}s"


def test_a_restart_is_seen_by_another_workers_handle(small_lab):
    runner, label = _native(small_lab)
    other = Lab.load(small_lab.dir).runners[runner.key]  # what another pytest-xdist worker holds
    old = other.pid
    runner.restart()
    assert other.pid == runner.pid != old and other.cache_pid == runner.cache_pid
    control.send(other, "STOP")
    assert control.state(runner) == "stopped"
    control.send(other, "CONT")
    assert control.state(runner) == "running"
    view = push(small_lab, workflow("after-restart", label, "      - run: echo back\n"), label, "after").watch().view
    assert view.job_status() is Status.SUCCESS, view.summary()


def test_a_private_runner_takes_disruption_alone_and_leaves_nothing(small_lab, record_property):
    shared, _ = _native(small_lab)
    shared_pid = shared.pid
    t0 = time.monotonic()
    with private_runner(small_lab, "12.1.2") as runner:
        start_seconds = time.monotonic() - t0
        record_property("private_runner_start_seconds", round(start_seconds, 2))
        print(f"private runner {runner.key} polled {start_seconds:.2f}s after the call")
        label = label_name(runner.labels["native"])
        assert label == f"regress-{runner.key}-native" and runner.key.startswith("12.1.2-p")
        status = json.loads(subprocess.run([sys.executable, "-m", "harness", "lab", "status", "--lab", small_lab.id,
                                            "--json"], capture_output=True, text=True, timeout=120).stdout)
        assert status["private_runners"][runner.key]["pid"] == runner.pid
        database = small_lab.forgejo.work / "data" / "forgejo.db"
        assert private._runner_id(database, runner.registration) is not None, "Forgejo does not list it"
        if firewall.available():
            assert any(str(runner.cache_port) in r for r in firewall.rules(small_lab.id) if r.startswith("-A INPUT"))
        control.send(runner, "KILL")
        wait_for("the killed private runner to be gone", "runner_stop", lambda: control.state(runner),
                 lambda s: s == "gone")
        runner.restart()
        pushed = push(small_lab, workflow("private", label, "      - run: echo on-the-private-runner\n"), label, "priv")
        view = pushed.watch().view
        assert view.job_status() is Status.SUCCESS, view.summary()
        assert runner.name in view.log_lines()[0].message  # it ran there, not on the shared runner
        pids, registration, port = (runner.pid, runner.cache_pid), runner.registration, runner.cache_port
    assert shared.pid == shared_pid and control.state(shared) == "running"  # the shared runner was never touched
    assert not any(procs.alive(p) for p in pids)
    assert small_lab.private_runners() == {} and not runner.dir.exists()
    assert private._runner_id(database, registration) is None  # unregistered
    if firewall.available():
        assert not any(str(port) in r for r in firewall.rules(small_lab.id) if r.startswith("-A INPUT"))
    assert start_seconds < BUDGETS.runner_online
