"""Runner control on a real lab runner: stop on a log-line trigger, resume, restart; and liveness."""

from __future__ import annotations

import time
import uuid

import pytest

from harness.budgets import BUDGETS
from harness.forgejo.models import Status
from harness.lab.lab import RunnerSpec, boot
from harness.observe.stall import StallWatch
from harness.runners import control
from harness.runners.process import label_name
from harness.versions import Version
from harness.waiting import wait_for

from .conftest import resolve_or_skip
from .helpers import push, workflow

pytestmark = [pytest.mark.lab]


@pytest.fixture
def small_lab():
    forgejo = resolve_or_skip("forgejo", Version(13, 0, 5))
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
