"""``lab status --json``: what it prints about the Docker engine (``engine.host``, ``engine.ours``,
``engine.runtime``) and the prepared images, from a saved ``lab.json`` (fakes only: nothing runs)."""

from __future__ import annotations

import json

from harness import cli
from harness.lab import engine
from harness.lab.forgejo import ForgejoServer, ZombieSettings
from harness.lab.lab import Lab, lab_dir_for
from harness.lab.prepare import Prepared

from . import lab_fakes

ENGINE = engine.Engine("unix:///tmp/regress-dockerd/docker.sock", True, 4242, "172.17.0.1", "regress-capdrop",
                       "20.10.24+dfsg1")
PREPARED = Prepared("regress-job:k1", "/p/job-k1.tar", "regress-binfmt:k2", "/p/binfmt-k2.tar", "/p/docker-buildx",
                    None, "regress-buildkit:k3", "/p/buildkit-k3.tar", "moby/buildkit:buildx-stable-1", None)


def saved_lab(tmp_path, monkeypatch, lab_id: str, eng: engine.Engine | None) -> None:
    lab_fakes.private_runtime(tmp_path, monkeypatch)
    directory = lab_dir_for(lab_id)
    server = ForgejoServer(lab_fakes.fake_forgejo_binary(tmp_path), directory / "forgejo", "127.0.0.1",
                           lab_fakes.free_loopback_port(), lab_id, ZombieSettings())
    directory.mkdir(parents=True)
    Lab(lab_id, directory, server, eng, {}, PREPARED).save()


def status_json(lab_id: str, capsys) -> tuple[int, dict]:
    code = cli.main(["lab", "status", "--lab", lab_id, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_status_json_keeps_the_engine_keys(tmp_path, monkeypatch, capsys):
    saved_lab(tmp_path, monkeypatch, "unit-status", ENGINE)
    code, data = status_json("unit-status", capsys)
    assert code == 1  # nothing runs: unhealthy, and the JSON is printed all the same
    assert data["engine"] == {"host": ENGINE.host, "ours": True, "pid": 4242, "bridge_ip": "172.17.0.1",
                              "runtime": "regress-capdrop", "version": "20.10.24+dfsg1"}
    assert data["prepared"]["buildkit_image"] == "regress-buildkit:k3"
    assert data["prepared"]["buildkit_tag"] == "moby/buildkit:buildx-stable-1"


def test_status_json_of_a_lab_without_docker(tmp_path, monkeypatch, capsys):
    saved_lab(tmp_path, monkeypatch, "unit-nodocker", None)
    _, data = status_json("unit-nodocker", capsys)
    assert data["engine"] is None and data["id"] == "unit-nodocker"


def test_a_lab_saved_before_the_buildkit_image_still_shows(tmp_path, monkeypatch, capsys):
    saved_lab(tmp_path, monkeypatch, "unit-older", ENGINE)
    state = lab_dir_for("unit-older") / "lab.json"
    data = json.loads(state.read_text())
    data["prepared"] = {k: v for k, v in data["prepared"].items() if not k.startswith("buildkit")}
    state.write_text(json.dumps(data))
    _, shown = status_json("unit-older", capsys)
    assert shown["engine"]["runtime"] == "regress-capdrop"
    assert shown["prepared"]["buildkit_image"] is None and shown["prepared"]["job_image"] == "regress-job:k1"
