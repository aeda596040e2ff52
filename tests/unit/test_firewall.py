"""harness.lab.firewall: the lab's rules as one iptables-restore transaction (no iptables is run)."""

from __future__ import annotations

import subprocess

import pytest

from harness.errors import ConfigError, LabError
from harness.lab import firewall
from harness.lab.lab import lab_dir_for


@pytest.fixture
def calls(monkeypatch):
    seen: dict[str, list] = {"ipt": [], "restore": []}

    def ipt(*args, check=True):
        seen["ipt"].append(args)
        return subprocess.CompletedProcess(args, 1, "", "No chain/target/match by that name.")

    monkeypatch.setattr(firewall, "_ipt", ipt)
    monkeypatch.setattr(firewall, "_restore", lambda text: seen["restore"].append(text))
    monkeypatch.setattr(firewall, "rules", lambda lab_id: [])
    return seen


def test_one_transaction_with_chain_jumps_and_forward_rules(calls):
    ports = list(range(20000, 20017))  # 17 ports: two multiport jumps
    firewall.install("lab-1", ports, forward=True)
    assert calls["ipt"] == [("-n", "-L", "REGRESS-lab-1")]  # only the probe for a stale chain
    (text,) = calls["restore"]
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT" and ":REGRESS-lab-1 - [0:0]" in lines
    assert [ln for ln in lines if ln.startswith("-A REGRESS-lab-1")] == [
        "-A REGRESS-lab-1 -i lo -j ACCEPT", "-A REGRESS-lab-1 -i docker0 -j ACCEPT",
        "-A REGRESS-lab-1 -i br-+ -j ACCEPT", "-A REGRESS-lab-1 -j DROP"]
    jumps = [ln for ln in lines if ln.startswith("-I INPUT")]
    assert len(jumps) == 2 and "--dports 20015,20016 " in jumps[1]
    assert all('--comment "regress lab lab-1" -j REGRESS-lab-1' in ln for ln in jumps)
    assert [ln for ln in lines if ln.startswith("-I FORWARD")] == [
        '-I FORWARD -i docker0 -o docker0 -m comment --comment "regress lab lab-1" -j ACCEPT',
        '-I FORWARD -i br-+ -o br-+ -m comment --comment "regress lab lab-1" -j ACCEPT']


def test_no_forward_rules_for_the_users_engine(calls):
    firewall.install("lab-2", [1234])
    assert "FORWARD" not in calls["restore"][0]


@pytest.mark.parametrize("lab_id", ["../etc", "a b", 'x"y', "", "-x", "a" * 49])
def test_lab_ids_that_could_escape_a_path_or_a_rule_are_refused(lab_id):
    with pytest.raises(ConfigError, match="use 1–48 letters, digits"):
        lab_dir_for(lab_id)


def test_usual_lab_ids_are_accepted():
    for lab_id in ("default", "pytest-20261128-001109-7c0ce5", "bench-cli-1a2b3c", "a.b_c"):
        assert lab_dir_for(lab_id).name == lab_id


def test_a_private_runners_ports_join_the_existing_chain(monkeypatch):
    restored, deleted = [], []

    def ipt(*args, check=True):
        deleted.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(firewall, "_ipt", ipt)
    monkeypatch.setattr(firewall, "_restore", restored.append)
    monkeypatch.setattr(firewall, "rules", lambda lab_id: [])
    firewall.add_ports("lab-1", [41001, 41002])
    assert restored == ['*filter\n-I INPUT -p tcp -m multiport --dports 41001,41002 -m comment --comment '
                        '"regress lab lab-1" -j REGRESS-lab-1\nCOMMIT\n']
    deleted.clear()
    firewall.remove_ports("lab-1", [41001, 41002])
    assert deleted == [("-D", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "41001,41002", "-m", "comment",
                        "--comment", "regress lab lab-1", "-j", "REGRESS-lab-1")]


def test_ports_cannot_join_a_lab_without_a_chain(calls):
    with pytest.raises(LabError, match="lab lab-9 has no firewall chain REGRESS-lab-9"):
        firewall.add_ports("lab-9", [1])
    assert calls["restore"] == []
