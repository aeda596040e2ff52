"""The cell pool: cells at once only on distinct runners; extra lanes on private runners; errors kept per cell."""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace

import pytest

from harness.cell import CellResult
from harness.errors import HarnessError
from harness.lab import private as privates
from harness.pool import CellPool, PoolCell, pooled
from harness.target import RunnerHandle
from harness.versions import Version


class FakeLab:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []

    @contextlib.contextmanager
    def private_runner(self, key, notify=lambda s: None, via=None, env=None):
        name = f"{key}-p{len(self.started)}"
        self.started.append(name)
        try:
            yield SimpleNamespace(name=name, labels={"native": f"{name}-native:host"})
        finally:
            self.stopped.append(name)


@pytest.fixture(autouse=True)
def fake_private_runners(monkeypatch):
    """Private runners come from the fake lab (harness.lab.private starts real ones)."""
    monkeypatch.setattr(privates, "private_runner", lambda lab, key, **kw: lab.private_runner(key, **kw))


def _target(lab: FakeLab | None, keys=("11.3.1", "12.1.2")) -> SimpleNamespace:
    runners = {k: RunnerHandle(k, Version.parse(k), {"native": f"regress-{k}-native:host"},
                               SimpleNamespace(name=f"regress-{k}") if lab else None) for k in keys}
    return SimpleNamespace(lab=lab, runners=runners)


class Recorder:
    """A cell runner that records which runner ran what, and when, and how many at once per runner."""

    def __init__(self, seconds: float = 0.05, fail: str = "") -> None:
        self.seconds, self.fail = seconds, fail
        self.busy: dict[str, int] = {}
        self.max_busy: dict[str, int] = {}
        self.ran: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.peak = 0
        self.now = 0

    def __call__(self, cell: PoolCell, handle: RunnerHandle) -> CellResult:
        runner = handle.labels["native"]
        with self.lock:
            self.busy[runner] = self.busy.get(runner, 0) + 1
            self.max_busy[runner] = max(self.max_busy.get(runner, 0), self.busy[runner])
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.busy[runner] -= 1
            self.now -= 1
            self.ran.append((cell.id, runner))
        if cell.id == self.fail:
            raise HarnessError("boom")
        return CellResult(cell.scenario, handle.key, str(handle.version), runner)


def _cells(n: int = 3, keys=("11.3.1", "12.1.2")) -> list[PoolCell]:
    return [PoolCell(f"s{i}-{k}", f"s{i}", k) for k in keys for i in range(n)]


def test_one_lane_per_runner_runs_versions_side_by_side_never_two_on_one_runner():
    run = Recorder()
    with pooled(_target(None), run, _cells(), lanes=3) as pool:
        results = {c.id: pool.result(c.id, timeout=10) for c in _cells()}
    assert all(n == 1 for n in run.max_busy.values()) and run.peak == 2  # runners we did not start: one lane each
    assert results["s0-12.1.2"].runner_key == "12.1.2"


def test_lab_lanes_beyond_the_first_use_private_runners_kept_for_their_later_cells():
    lab = FakeLab()
    run = Recorder(seconds=0.1)
    with pooled(_target(lab), run, _cells(n=4), lanes=2) as pool:
        for cell in _cells(n=4):
            pool.result(cell.id, timeout=10)
    assert all(n == 1 for n in run.max_busy.values())  # distinct runners only
    assert run.peak == 4 and len(lab.started) == 2  # one private runner per extra lane, reused
    assert sorted(lab.stopped) == sorted(lab.started)
    by_runner = {r for _, r in run.ran}
    assert {"regress-11.3.1-native:host", "regress-12.1.2-native:host"} <= by_runner


def test_a_cell_that_raises_fails_alone_and_an_unknown_runner_is_said():
    run = Recorder(fail="s1-11.3.1")
    cells = [*_cells(n=2, keys=("11.3.1",)), PoolCell("x", "s0", "9.9.9")]
    pool = CellPool(_target(None, keys=("11.3.1",)), run, lanes=1)
    pool.submit(cells)
    assert pool.result("s0-11.3.1", timeout=10).scenario == "s0"
    with pytest.raises(HarnessError, match="boom"):
        pool.result("s1-11.3.1", timeout=10)
    with pytest.raises(HarnessError, match=r"no runner 9\.9\.9"):
        pool.result("x", timeout=10)
    pool.close()
    with pytest.raises(KeyError):
        pool.result("never-submitted")
