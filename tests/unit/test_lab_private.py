"""Private runners: a runner of one version for one disruptive cell, recorded while it lives and
gone (processes, record, dir) after it (fake runner binary; registration stubbed; no iptables)."""

from __future__ import annotations

import uuid

import pytest

from harness import procs
from harness.errors import LabError
from harness.lab import firewall, private
from harness.lab.forgejo import ForgejoServer, ZombieSettings
from harness.lab.lab import Lab

from . import lab_fakes


@pytest.fixture
def lab(tmp_path, monkeypatch):
    lab_fakes.private_runtime(tmp_path, monkeypatch)
    monkeypatch.setattr(firewall, "available", lambda: False)  # no iptables in unit tests
    monkeypatch.setattr(firewall, "remove", lambda lab_id: None)
    lab_id = f"unit-priv-{uuid.uuid4().hex[:6]}"
    base = lab_fakes.fake_lab_runner(tmp_path, lab_id)
    server = ForgejoServer(lab_fakes.fake_forgejo_binary(tmp_path), tmp_path / "lab" / "forgejo", "127.0.0.1", 9,
                           lab_id, ZombieSettings())
    registered = []
    monkeypatch.setattr(server, "register_runner",
                        lambda name, secret, labels: registered.append((name, labels)) or secret[:8])
    lab = Lab(lab_id, tmp_path / "lab", server, None, {"12.1.2": base}, None)
    lab.registered = registered
    yield lab
    procs.sweep(lab_id)


def test_a_private_runner_lives_alone_and_leaves_nothing(lab):
    notes = []
    with private.private_runner(lab, "12.1.2", notify=notes.append) as runner:
        assert runner.key.startswith("12.1.2-p") and len(runner.key) == len("12.1.2-p") + 6
        assert runner.labels == {"native": f"regress-{runner.key}-native:host"}
        assert runner.runs_on("native") == f"regress-{runner.key}-native" and runner.runs_on("docker") is None
        assert lab.registered == [(runner.name, [f"regress-{runner.key}-native:host"])]
        assert runner.dir == lab.dir / "private" / runner.key and runner.registration
        assert procs.alive(runner.pid) and procs.alive(runner.cache_pid)
        assert runner.cache_port != lab.runners["12.1.2"].cache_port
        assert list(lab.private_runners()) == [runner.key]  # recorded: lab status lists it, lab down stops it
        pids = (runner.pid, runner.cache_pid)
    assert not any(procs.alive(pid) for pid in pids)
    assert not runner.dir.exists() and lab.private_runners() == {}
    assert any("polls after" in n for n in notes) and any(f"private runner {runner.key}: daemon stopped" in n
                                                          for n in notes)


def test_lab_down_stops_a_private_runner_whose_owner_died(lab):
    runner = private.start(lab, "12.1.2")  # the owner dies: no exit of the context
    pids = (runner.pid, runner.cache_pid)
    assert lab.down(keep_dir=True) == []
    assert not any(procs.alive(pid) for pid in pids)


def test_a_private_runner_that_does_not_come_up_is_stopped_and_forgotten(lab):
    lab.runners["12.1.2"].overrides = {"runner": {"envs": {"MODE": "fail"}}}  # the fake daemon then exits
    pattern = r"runner regress-12\.1\.2-p[0-9a-f]{6} \(12\.1\.2\) exited during start"
    with pytest.raises(LabError, match=pattern) as info, private.private_runner(lab, "12.1.2"):
        pytest.fail("the context must not be entered")
    assert lab.private_runners() == {}
    assert procs.tagged(lab.id) == []  # its cache server was stopped too
    assert "cannot load .runner" in str(info.value)


def test_an_unknown_version_key_names_the_runners_there(lab):
    with pytest.raises(LabError, match=r"lab unit-priv-\w+ has no runner '11.3.1' .* it has 12.1.2"):
        private.new_runner(lab, "11.3.1")


def test_a_private_runner_via_a_fault_proxy_has_its_address_its_port_confined_and_shown(lab, monkeypatch):
    confined, freed = [], []
    lab.firewall_rules = ["-A INPUT ..."]  # the lab confines its ports
    monkeypatch.setattr(firewall, "add_ports", lambda lab_id, ports: confined.extend(ports))
    monkeypatch.setattr(firewall, "remove_ports", lambda lab_id, ports: freed.extend(ports))
    with private.private_runner(lab, "12.1.2", via="http://127.0.0.1:45678") as runner:
        assert runner.instance_url == "http://127.0.0.1:45678" and runner.fault_proxy_port == 45678
        assert 45678 in confined and runner.cache_port in confined
        shown = lab.private_runners()[runner.key].to_json()  # lab status, from runner.json (any process)
        assert shown["fault_proxy"] == {"url": "http://127.0.0.1:45678", "port": 45678}
    assert 45678 in freed
    assert "fault_proxy" not in lab.runners["12.1.2"].to_json()
