"""The lab's Docker engine: the default bridge's address from real payloads, and our dockerd's
start and release never leaving a process behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness import procs
from harness.errors import LabError
from harness.lab import engine

from . import lab_fakes

DATA = Path(__file__).resolve().parent.parent / "data" / "docker"


def payload(name: str) -> dict:
    return json.loads((DATA / name).read_text())[0]


def no_interface(name: str) -> str | None:
    return None


def test_fresh_dockerd_without_docker0_has_no_gateway_yet_the_address_is_found():
    fresh = payload("fresh-bridge-inspect.json")
    assert fresh["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16"}]  # the shape that broke the first boot
    assert engine.bridge_address(fresh, no_interface) == "172.17.0.1"  # the subnet's first host


def test_the_bridge_interface_address_wins_over_the_subnet():
    asked = []

    def docker0(name: str) -> str | None:
        asked.append(name)
        return "172.17.0.1"

    assert engine.bridge_address(payload("fresh-bridge-inspect.json"), docker0) == "172.17.0.1"
    assert asked == ["docker0"]  # the name from the network's options


def test_the_ipam_gateway_wins_when_reported():
    restart = payload("restart-bridge-inspect.json")
    assert restart["IPAM"]["Config"][0]["Gateway"] == "172.17.0.1"
    assert engine.bridge_address(restart, lambda name: "10.9.9.9") == "172.17.0.1"


def test_other_subnets_and_named_bridges():
    custom = {"IPAM": {"Config": [{"Subnet": "fd00::/64"}, {"Subnet": "10.200.0.0/24"}]},
              "Options": {"com.docker.network.bridge.name": "br-lab"}}
    asked = []
    assert engine.bridge_address(custom, lambda name: asked.append(name)) == "10.200.0.1"
    assert asked == ["br-lab"]
    gateway_with_prefix = {"IPAM": {"Config": [{"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.254/16"}]}}
    assert engine.bridge_address(gateway_with_prefix, no_interface) == "10.1.0.254"


def test_no_address_at_all_says_what_was_looked_at():
    with pytest.raises(LabError) as info:
        engine.bridge_address({"IPAM": {"Config": None}, "Options": {}}, no_interface)
    text = str(info.value)
    assert "no gateway" in text and "docker0 no IPv4 address" in text and "IPAM config: []" in text


# -- our dockerd: start and release ------------------------------------------------------------------


@pytest.fixture
def private_runtime(tmp_path, monkeypatch):
    return lab_fakes.private_runtime(tmp_path, monkeypatch)


def fake_dockerd(tmp_path: Path, run: Path) -> Path:
    """A 'dockerd' that writes its pid file, then sleeps (it never answers the Docker API)."""
    script = tmp_path / "dockerd"
    script.write_text("#!/bin/sh\n"
                      'for a in "$@"; do case "$prev" in --pidfile) echo $$ > "$a";; esac; prev="$a"; done\n'
                      "exec sleep 300\n")
    script.chmod(0o755)
    return script


def test_a_dockerd_whose_bridge_has_no_address_is_stopped_before_the_error(private_runtime, tmp_path, monkeypatch):
    script = fake_dockerd(tmp_path, private_runtime)
    monkeypatch.setattr(engine.shutil, "which", lambda name: str(script) if name == "dockerd" else None)
    monkeypatch.setattr(engine.capdrop, "missing_caps", lambda: [])

    class Api:
        def inspect_network(self, name):
            return {"IPAM": {"Config": []}, "Options": {"com.docker.network.bridge.name": "regress-none0"}}

    class Client:
        api = Api()

        def info(self):
            return {"DefaultRuntime": "runc", "ServerVersion": "20.10"}

    monkeypatch.setattr(engine, "_ping", lambda host: Client())
    monkeypatch.setattr(engine, "existing_bridge_ip", lambda name="docker0": None)
    started = []
    real_spawn = procs.spawn
    monkeypatch.setattr(engine.procs, "spawn", lambda *a, **kw: started.append(real_spawn(*a, **kw)) or started[-1])
    (tmp_path / "cache" / "labs" / "lab-a").mkdir()
    private_runtime.mkdir(mode=0o700)
    (private_runtime / "docker.sock").touch()  # the probe waits for the socket file
    with pytest.raises(LabError) as info:
        engine.acquire_dockerd("lab-a")
    assert "no IPv4 subnet" in str(info.value) and "dockerd's log" in str(info.value)
    assert len(started) == 1 and not procs.alive(started[0])  # the dockerd it started is gone
    assert procs.tagged(engine.SHARED_TAG) == []
    assert not private_runtime.exists()  # and so are its runtime dir and the lab's user entry


def spawn_tagged(tag: str, tmp_path: Path) -> int:
    return procs.spawn([sys.executable, "-c", "import time; time.sleep(300)"], log_file=tmp_path / f"{tag}.log",
                       lab_id=tag)


def test_release_by_lab_id_stops_a_dockerd_only_that_lab_used(private_runtime, tmp_path):
    labs = tmp_path / "cache" / "labs"
    (labs / "lab-a").mkdir()
    (labs / "lab-b").mkdir()
    (private_runtime / "users").mkdir(parents=True)
    pid = spawn_tagged(engine.SHARED_TAG, tmp_path)
    try:
        (private_runtime / "dockerd.pid").write_text(str(pid))
        (private_runtime / "dockerd.log").write_text("level=info msg=\"API listen\"\n")
        for lab in ("lab-a", "lab-b"):
            (private_runtime / "users" / lab).write_text("1")
        assert engine.release("lab-a") == "kept running for 1 other lab(s)"
        assert procs.alive(pid)
        outcome = engine.release("lab-b", keep_log_in=labs / "lab-b")
        assert outcome == "stopped" and not procs.alive(pid)
        assert not private_runtime.exists()
        assert "API listen" in (labs / "lab-b" / "dockerd.log").read_text()
        assert engine.release("lab-b") == engine.NOT_A_USER
    finally:
        procs.stop(pid, budget=5)


def test_a_pid_file_naming_a_foreign_process_is_never_signalled(private_runtime, tmp_path):
    (private_runtime / "users").mkdir(parents=True)
    (tmp_path / "cache" / "labs" / "lab-a").mkdir()
    (private_runtime / "users" / "lab-a").write_text("1")
    foreign = spawn_tagged("someone-else", tmp_path)  # not carrying our dockerd's tag: a reused pid
    try:
        (private_runtime / "dockerd.pid").write_text(str(foreign))
        assert engine.dockerd_pid() is None
        assert engine.release("lab-a") == "not running"
        assert engine.release("lab-a") == engine.NOT_A_USER
        assert procs.alive(foreign)
    finally:
        procs.stop(foreign, budget=5)


def test_the_buildkit_alias_is_given_unless_a_foreign_image_holds_it():
    assert engine.alias_is_ours(None, "regress-buildkit")  # nothing holds moby/buildkit:buildx-stable-1
    ours_earlier = ["moby/buildkit:buildx-stable-1", "regress-buildkit:2d3b9a037e87"]
    assert engine.alias_is_ours(ours_earlier, "regress-buildkit")  # an earlier recipe's import: re-pointed
    assert not engine.alias_is_ours(["moby/buildkit:buildx-stable-1"], "regress-buildkit")  # the real one
    assert not engine.alias_is_ours(["regress-buildkit-old/x:1"], "regress-buildkit")
