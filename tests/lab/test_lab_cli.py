"""The lab booted by its CLI, as a user does: up, jobs by hand, cache, firewall, status, down."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from harness.forgejo.models import Status
from harness.lab import firewall, procs
from harness.lab.lab import Lab, lab_dir_for
from harness.runners.process import label_name

from .conftest import FORGEJOS, RUNNERS, resolve_or_skip
from .helpers import push, workflow

pytestmark = [pytest.mark.lab, pytest.mark.docker]

CACHE_STEPS = "      - uses: regress/cache-roundtrip@v1\n      - run: echo done\n"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "harness", "lab", *args], capture_output=True, text=True,
                          timeout=900, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("forgejo", FORGEJOS, ids=[f"forgejo-{v}" for v in FORGEJOS])
def test_lab_up_jobs_cache_firewall_down(forgejo):
    resolve_or_skip("forgejo", forgejo)
    for v in RUNNERS:
        resolve_or_skip("forgejo-runner", v)
    lab_id = f"clitest-{uuid.uuid4().hex[:6]}"
    args = ["--lab", lab_id, "--forgejo-version", str(forgejo)]
    for v in RUNNERS:
        args += ["--runner-version", str(v)]
    try:
        up = cli("up", *args)
        assert "regress-12.1.2-native:host" in up.stdout and "token file" in up.stdout
        status = json.loads(cli("status", "--lab", lab_id, "--json").stdout)
        bridge = status["engine"]["bridge_ip"]
        forgejo_listeners = [x for x in status["listeners"] if x["process"] == "forgejo"]
        assert forgejo_listeners and all(x["address"] == bridge for x in forgejo_listeners), status["listeners"]
        ports = {x["port"] for x in status["listeners"]}
        jumps = [r for r in status["firewall"] if r.startswith("-A INPUT")]
        assert jumps and all(str(p) in " ".join(jumps) for p in ports), (ports, status["firewall"])
        assert any(r.endswith("-j DROP") for r in status["firewall"])
        assert status["forgejo"]["version"] == str(forgejo)

        lab = Lab.load(lab_dir_for(lab_id))
        for key, runner in lab.runners.items():
            for kind in ("native", "docker"):
                label = label_name(runner.labels[kind])
                name = f"cache-{kind}"
                view = push(lab, workflow(name, label, CACHE_STEPS), label, name).watch().view
                log = "\n".join(line.message for line in view.log_lines())
                assert view.job_status() is Status.SUCCESS, f"{key} {kind}: {view.summary()}\n{log[-2000:]}"
                assert "cache roundtrip ok" in log, log[-2000:]
                assert f"version:v{runner.version}" in log

        again = cli("up", *args)
        assert "reusing the healthy lab" in again.stdout
    finally:
        down = cli("down", "--lab", lab_id, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "leak check: nothing left" in down.stdout
    assert not procs.tagged(lab_id)
    assert not firewall.rules(lab_id)
    assert not lab_dir_for(lab_id).exists()


def test_lab_up_without_binary_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_BIN_DIR", str(tmp_path))
    proc = cli("up", "--lab", "never", "--forgejo-version", "13.0.5", "--runner-version", "12.1.2", check=False)
    assert proc.returncode == 2
    assert "no forgejo binary for version 13.0.5" in proc.stderr
    assert str(tmp_path / "forgejo-13.0.5") in proc.stderr and "--forgejo-binary" in proc.stderr
    assert "Traceback" not in proc.stderr
