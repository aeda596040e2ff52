"""harness.observe.stall: StallWatch with an injected clock and synthetic task lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness.forgejo.models import Task
from harness.observe.stall import StallWatch

T0 = datetime(2026, 11, 27, 19, 52, 37, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(updated: datetime, status: str = "running", task_id: int = 3, run_number: int = 1, name: str = "test"):
    return Task.from_api({"id": task_id, "name": name, "run_number": run_number, "status": status,
                          "workflow_id": "w.yml", "updated_at": updated.isoformat().replace("+00:00", "Z")})


def feed_seconds(watch: StallWatch, clock: Clock, seconds: int, updated_at) -> list[bool]:
    """One feed per second for ``seconds``; ``updated_at(i)`` gives the task's updated_at at second i."""
    results = []
    for i in range(seconds):
        clock.now += 1.0
        results.append(watch.feed((task(updated_at(i)),), 1, "test"))
    return results


def test_silent_step_with_advancing_updated_at_never_stalls():
    clock = Clock()
    watch = StallWatch(budget=15.0, clock=clock)
    assert watch.feed((task(T0),), 1, "test") is False
    results = feed_seconds(watch, clock, 60, lambda i: T0 + timedelta(seconds=i + 1))
    assert not any(results)
    assert watch.stalled_at is None
    assert watch.silent_for == 0.0
    assert len(watch.history) == 60


def test_updated_at_advancing_every_few_seconds_within_budget():
    clock = Clock()
    watch = StallWatch(budget=15.0, clock=clock)
    watch.feed((task(T0),), 1, "test")
    results = feed_seconds(watch, clock, 60, lambda i: T0 + timedelta(seconds=10 * (i // 10)))
    assert not any(results) and watch.stalled_at is None


def test_frozen_updated_at_stalls_exactly_once():
    clock = Clock()
    watch = StallWatch(budget=15.0, clock=clock)
    watch.feed((task(T0),), 1, "test")
    results = feed_seconds(watch, clock, 40, lambda i: T0)
    assert results.count(True) == 1
    assert results.index(True) == 15, "the stall is reported at the first feed past the budget (16 s silent)"
    assert watch.stalled_at == 116.0
    assert watch.stalled_wall is not None
    assert watch.silent_for == 40.0


def test_stall_after_progress_counts_from_last_change():
    clock = Clock()
    watch = StallWatch(budget=5.0, clock=clock)
    watch.feed((task(T0),), 1, "test")
    results = feed_seconds(watch, clock, 20, lambda i: T0 + timedelta(seconds=min(i, 9) + 1))
    assert results.index(True) == 15
    assert results.count(True) == 1


def test_recovery_after_stall_does_not_report_again():
    clock = Clock()
    watch = StallWatch(budget=3.0, clock=clock)
    watch.feed((task(T0),), 1, "test")
    first = feed_seconds(watch, clock, 10, lambda i: T0)
    later = feed_seconds(watch, clock, 10, lambda i: T0 + timedelta(seconds=1 + (i // 5) * 100))
    assert first.count(True) == 1 and not any(later)


def test_non_running_task_never_stalls():
    clock = Clock()
    watch = StallWatch(budget=2.0, clock=clock)
    watch.feed((task(T0, status="success"),), 1, "test")
    for _ in range(30):
        clock.now += 1.0
        assert watch.feed((task(T0, status="success"),), 1, "test") is False
    assert watch.stalled_at is None


def test_waiting_then_frozen_running():
    clock = Clock()
    watch = StallWatch(budget=2.0, clock=clock)
    watch.feed((task(T0, status="waiting"),), 1, "test")
    clock.now += 10
    assert watch.feed((task(T0, status="waiting"),), 1, "test") is False
    clock.now += 1
    assert watch.feed((task(T0),), 1, "test") is True


def test_other_tasks_are_ignored():
    clock = Clock()
    watch = StallWatch(budget=2.0, clock=clock)
    for _ in range(10):
        clock.now += 1.0
        assert watch.feed((task(T0, task_id=9, name="other"), task(T0, task_id=8, run_number=2)), 1, "test") is False
    assert watch.task_id is None


def test_new_attempt_resets_the_watch():
    clock = Clock()
    watch = StallWatch(budget=5.0, clock=clock)
    watch.feed((task(T0, task_id=3),), 1, "test")
    clock.now += 4
    assert watch.feed((task(T0, task_id=4),), 1, "test") is False
    assert watch.task_id == 4
    clock.now += 4
    assert watch.feed((task(T0, task_id=4),), 1, "test") is False
    clock.now += 2
    assert watch.feed((task(T0, task_id=4),), 1, "test") is True


def test_recorded_tasks_feed(recording_at):
    rec = recording_at("forgejo-13.0.5/runner-12.1.2/killed-after-last-step")
    tasks = Task.list_from_api(rec.api("/actions/tasks")[0]["response_body"])
    clock = Clock()
    watch = StallWatch(budget=1.0, clock=clock)
    assert watch.feed(tasks, 1, "test") is False
    clock.now += 100
    assert watch.feed(tasks, 1, "test") is False, "a finished (failure) task is not a stall"
    assert watch.task_id == rec.meta["task_id"]


def test_reports_that_resume_after_a_stall_are_measured_by_forgejo_s_own_stamps():
    clock = Clock()
    watch = StallWatch(budget=15.0, clock=clock)
    watch.feed((task(T0),), 1, "test")
    results = feed_seconds(watch, clock, 30, lambda i: T0 if i < 24 else T0 + timedelta(seconds=24))
    assert results.count(True) == 1 and watch.stalled_updated == T0
    assert watch.resumed_updated == T0 + timedelta(seconds=24)
    assert watch.late_seconds == 24.0


@pytest.mark.parametrize(("ends", "late"), [(True, 31.0), (False, None)])
def test_a_stall_that_ends_with_the_task_done_counts_as_resumed_one_that_never_ends_does_not(ends, late):
    clock = Clock()
    watch = StallWatch(budget=15.0, clock=clock)
    watch.feed((task(T0),), 1, "test")
    feed_seconds(watch, clock, 40, lambda i: T0)
    if ends:
        watch.feed((task(T0 + timedelta(seconds=31), status="success"),), 1, "test")
    assert watch.stalled_at is not None and watch.late_seconds == late
