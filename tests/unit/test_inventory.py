"""harness.lab.inventory: lab dirs listed by state, pruned unless they run or a session holds them."""

from __future__ import annotations

import json
import os
import time

import pytest
from filelock import FileLock

from harness import procs
from harness.cli import main
from harness.lab.inventory import FAILED_BOOT, STOPPED, UP, inventory, prune


@pytest.fixture
def labs(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path))
    root = tmp_path / "labs"
    root.mkdir()
    return root


def make_lab(root, lab_id, *, state_file=False, hours_old=0.0):
    directory = root / lab_id
    (directory / "forgejo").mkdir(parents=True)
    (directory / "forgejo" / "forgejo.log").write_text("x" * 2000)
    if state_file:
        (directory / "lab.json").write_text("{}")  # unreadable as a lab: prune still removes it
    then = time.time() - hours_old * 3600
    os.utime(directory, (then, then))
    return directory


@pytest.fixture
def running(labs):
    directory = make_lab(labs, "live", state_file=True)
    pid = procs.spawn(["sleep", "60"], log_file=directory / "sleep.log", lab_id="live")
    yield directory
    procs.stop(pid, budget=5)


def test_inventory_tells_states_ages_and_sizes(labs, running):
    make_lab(labs, "failed", hours_old=30)
    make_lab(labs, "stopped", state_file=True, hours_old=2)
    (labs / "stray-file").write_text("")
    entries = {e.id: e for e in inventory()}
    assert set(entries) == {"failed", "stopped", "live"}
    assert (entries["failed"].state, entries["stopped"].state, entries["live"].state) == (FAILED_BOOT, STOPPED, UP)
    assert entries["live"].processes == 1
    assert 29.9 < entries["failed"].age_hours < 30.1
    assert entries["failed"].size_bytes >= 2000
    assert next(e.id for e in inventory()) == "failed"  # oldest first
    assert "up (1 processes)" in entries["live"].describe()


def test_prune_removes_what_no_longer_runs_and_keeps_the_rest(labs, running):
    make_lab(labs, "failed", hours_old=30)
    make_lab(labs, "stopped", state_file=True, hours_old=2)
    make_lab(labs, "young", hours_old=0.1)
    said = []
    removed = prune(inventory(), older_than_hours=1, notify=said.append)
    assert sorted(removed) == ["failed", "stopped"]
    assert sorted(p.name for p in labs.iterdir()) == ["live", "young"]
    assert any("stopped" in line and "corrupt" in line for line in said), said  # the clean-up's error is shown


def test_prune_dry_run_and_held_locks(labs):
    make_lab(labs, "failed")
    make_lab(labs, "booting")
    (labs / "gone.lock").write_text("")  # a stale lock of a lab whose dir is gone
    with FileLock(str(labs / "booting.lock")):
        assert prune(inventory(), dry_run=True) == ["failed"]
        assert (labs / "failed").is_dir()
        said = []
        assert prune(inventory(), notify=said.append) == ["failed"]
        assert (labs / "booting").is_dir() and any("holds its lock" in line for line in said)
    assert not (labs / "gone.lock").exists() and not (labs / "failed.lock").exists()


def test_cli_list_and_prune(labs, capsys):
    make_lab(labs, "failed", hours_old=3)
    assert main(["lab", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["id"], e["state"]) for e in listed] == [("failed", FAILED_BOOT)]
    assert main(["lab", "prune", "--older-than", "-1"]) == 2
    assert "expected hours ≥ 0" in capsys.readouterr().err
    assert main(["lab", "prune"]) == 0
    assert "removed 1 lab dir(s)" in capsys.readouterr().out
    assert main(["lab", "list"]) == 0
    assert "no lab dirs" in capsys.readouterr().out
