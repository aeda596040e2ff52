"""harness.observe.overlap: the cells whose time on a runner overlapped (clock injected)."""

from __future__ import annotations

import json
import subprocess

from harness.observe.overlap import Activity


def test_sequential_cells_share_nothing(tmp_path):
    ledger = Activity(tmp_path)
    a = ledger.begin("a-12.1.2", now=100)
    assert ledger.end(a, now=110) == []
    b = ledger.begin("b-12.1.2", now=111)
    assert ledger.end(b, now=120) == []
    assert not list((tmp_path / "activity").glob("running-*"))  # markers removed
    assert len((tmp_path / "activity" / "windows.jsonl").read_text().splitlines()) == 2


def test_overlapping_cells_name_each_other(tmp_path):
    ledger = Activity(tmp_path)
    a = ledger.begin("qemu-buildx-12.1.2", now=100)
    b = ledger.begin("native-checkout-12.1.2", now=105)
    assert ledger.end(b, now=108) == ["qemu-buildx-12.1.2"]  # a still runs
    assert ledger.end(a, now=130) == ["native-checkout-12.1.2"]  # b is done but overlapped
    c = ledger.begin("docker-checkout-12.1.2", now=131)
    assert ledger.end(c, now=140) == []


def test_a_dead_sessions_marker_does_not_count(tmp_path):
    ledger = Activity(tmp_path)
    proc = subprocess.Popen(["true"])  # a pid that has exited
    proc.wait()
    (tmp_path / "activity").mkdir()
    (tmp_path / "activity" / "running-zzz.json").write_text(
        json.dumps({"cell": "killed-12.1.2#zzz", "start": 0, "end": None, "pid": proc.pid}))
    (tmp_path / "activity" / "running-yyy.json").write_text("{not json")
    a = ledger.begin("a-12.1.2", now=100)
    assert ledger.end(a, now=110) == []
