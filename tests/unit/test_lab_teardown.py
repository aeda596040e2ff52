"""A failed boot stops everything it started before it raises; ``lab down`` / ``lab prune`` of a
failed or killed boot's dir stop what carries its id and release a dockerd only it used; a Lab as
a context manager takes itself down (fakes only: no real Forgejo, runner, dockerd or iptables)."""

from __future__ import annotations

import json
import logging
import sys
import uuid

import pytest

from harness import cli, procs
from harness.errors import LabError
from harness.lab import booting, engine, firewall, inventory
from harness.lab import lab as labs
from harness.lab.prepare import Prepared
from harness.runners.process import LabRunner

from . import lab_fakes


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    run = lab_fakes.private_runtime(tmp_path, monkeypatch)
    monkeypatch.setattr(firewall, "available", lambda: False)  # no iptables in unit tests
    monkeypatch.setattr(firewall, "remove", lambda lab_id: None)
    return run


@pytest.fixture
def lab_id():
    lab_id = f"unit-fail-{uuid.uuid4().hex[:6]}"
    yield lab_id
    procs.sweep(lab_id)


def test_a_boot_failing_after_our_dockerd_started_stops_everything_first(runtime, tmp_path, lab_id, monkeypatch):
    dockerd = {}

    def our_dockerd(lab, notify):  # our dockerd "started" for this lab, as acquire_dockerd leaves it
        dockerd["pid"] = lab_fakes.fake_dockerd(tmp_path, runtime, lab)
        return engine.Engine(f"unix://{tmp_path}/no.sock", True, dockerd["pid"], "127.0.0.1", "runc", "20.10")

    monkeypatch.setattr(booting, "_engine", our_dockerd)
    monkeypatch.setattr(booting.engines, "existing_bridge_ip", lambda name="docker0": None)
    monkeypatch.setattr(booting.Prepared, "load", classmethod(lambda cls, root=None: Prepared(
        "regress-job:x", str(tmp_path / "job.tar"), "regress-binfmt:x", str(tmp_path / "binfmt.tar"), None, "n/a")))
    forgejo = lab_fakes.fake_forgejo_binary(tmp_path)
    spec = labs.RunnerSpec(lab_fakes.fake_runner_binary(tmp_path))
    with pytest.raises(LabError) as info:
        booting.boot(lab_id, forgejo, [spec], confine=False)
    directory = labs.lab_dir_for(lab_id)
    assert "forgejo web exited during start" in str(info.value)
    assert str(directory / "forgejo" / "forgejo.log") in str(info.value)  # the error points at the log …
    assert "cannot assign requested address" in (directory / "forgejo" / "forgejo.log").read_text()  # … kept
    runner_dir = directory / "runners" / "12.1.2"
    started = LabRunner.from_state(json.loads((runner_dir / "runner.json").read_text()))
    assert started.cache_pid is not None, "the cache server had started before the failure"
    assert not procs.alive(started.cache_pid)
    assert procs.tagged(lab_id) == []
    assert not procs.alive(dockerd["pid"]) and procs.tagged(engine.SHARED_TAG) == []
    assert not runtime.exists() and (directory / "dockerd.log").is_file()  # dockerd's log kept beside the others


def test_a_boot_failing_keeps_a_dockerd_another_lab_uses(runtime, tmp_path, lab_id, monkeypatch):
    (tmp_path / "cache" / "labs" / "other-lab").mkdir()
    pid = lab_fakes.fake_dockerd(tmp_path, runtime, "other-lab")

    def shared(lab, notify):
        (runtime / "users" / lab).write_text("1")
        return engine.Engine(f"unix://{tmp_path}/no.sock", True, pid, "127.0.0.1", "runc", "20.10")

    monkeypatch.setattr(booting, "_engine", shared)
    monkeypatch.setattr(booting.engines, "existing_bridge_ip", lambda name="docker0": None)
    monkeypatch.setattr(booting.Prepared, "load", classmethod(lambda cls, root=None: Prepared(
        "regress-job:x", str(tmp_path / "job.tar"), "regress-binfmt:x", str(tmp_path / "binfmt.tar"), None, "n/a")))
    try:
        with pytest.raises(LabError, match="forgejo web exited during start"):
            booting.boot(lab_id, lab_fakes.fake_forgejo_binary(tmp_path), [], confine=False)
        assert procs.alive(pid)
        assert sorted(p.name for p in (runtime / "users").iterdir()) == ["other-lab"]
    finally:
        procs.stop(pid, budget=5)


def killed_boot(tmp_path, runtime, lab_id):
    """What a boot killed half-way leaves: a lab dir without lab.json, a runner and its cache server,
    a stray process carrying the lab id, our dockerd with the lab as its only user."""
    runner = lab_fakes.fake_lab_runner(tmp_path, lab_id, dir=labs.lab_dir_for(lab_id) / "runners" / "12.1.2")
    runner.prepare()
    runner.start_cache_server()
    runner.start()
    stray = procs.spawn([sys.executable, "-c", "import time; time.sleep(300)"], log_file=tmp_path / "stray.log",
                        lab_id=lab_id)
    dockerd = lab_fakes.fake_dockerd(tmp_path, runtime, lab_id)
    return [runner.pid, runner.cache_pid, stray, dockerd]


def test_lab_down_of_a_killed_boot_stops_its_processes_and_our_dockerd(runtime, tmp_path, lab_id, capsys):
    pids = killed_boot(tmp_path, runtime, lab_id)
    assert inventory.inventory()[0].state == inventory.UP
    assert cli.main(["lab", "down", "--lab", lab_id]) == 0
    out = capsys.readouterr().out
    assert "no lab.json" in out and "leak check: nothing left" in out and "our dockerd: stopped" in out
    assert not any(procs.alive(pid) for pid in pids)
    assert not labs.lab_dir_for(lab_id).exists() and not runtime.exists()


def test_lab_prune_of_a_failed_boot_releases_the_dockerd_only_it_used(runtime, tmp_path, lab_id):
    *_, dockerd = killed_boot(tmp_path, runtime, lab_id)
    procs.sweep(lab_id)  # its processes died with the session (prune leaves a lab whose processes run)
    assert inventory.inventory()[0].state == inventory.FAILED_BOOT and procs.alive(dockerd)
    assert inventory.prune(inventory.inventory()) == [lab_id]
    assert not procs.alive(dockerd) and not runtime.exists() and not labs.lab_dir_for(lab_id).exists()


def test_down_of_a_lab_that_never_used_our_dockerd_leaves_it_alone(runtime, tmp_path, lab_id, capsys):
    (tmp_path / "cache" / "labs" / "busy-lab").mkdir()
    pid = lab_fakes.fake_dockerd(tmp_path, runtime, "busy-lab")
    labs.lab_dir_for(lab_id).mkdir(parents=True)
    try:
        assert cli.main(["lab", "down", "--lab", lab_id]) == 0
        assert "our dockerd" not in capsys.readouterr().out
        assert procs.alive(pid)
    finally:
        procs.stop(pid, budget=5)


class FakeLab(labs.Lab):
    def __init__(self, leaks):
        self.id, self.dir, self.leaks, self.downs = "ctx", None, leaks, 0

    def down(self, *, keep_dir=False, notify=lambda s: None):
        self.downs += 1
        return self.leaks


def test_a_lab_as_context_manager_goes_down_on_exit_and_reports_leaks(caplog):
    with FakeLab([]) as lab:
        pass
    assert lab.downs == 1
    leaky = FakeLab(["process forgejo[42]"])
    with pytest.raises(LabError, match=r"lab ctx down left: process forgejo\[42\]"), leaky:
        pass
    leaky.downs = 0
    with caplog.at_level(logging.ERROR), pytest.raises(KeyError), leaky:  # the error in flight is not masked
        raise KeyError("boom")
    lab = leaky
    assert lab.downs == 1 and "down left: process forgejo[42]" in caplog.text
