"""The lab booted by its CLI, as a user does: up, jobs by hand, cache, firewall, status, down."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from harness import procs
from harness.forgejo.models import Status
from harness.lab import firewall
from harness.lab.lab import Lab, lab_dir_for
from harness.runners.process import label_name

from .conftest import FORGEJOS, RUNNERS, resolve_or_skip
from .helpers import push, workflow

pytestmark = [pytest.mark.lab, pytest.mark.docker]

CACHE_STEPS = "      - uses: regress/cache-roundtrip@v1\n      - run: echo done\n"


def host_firewall() -> set[str]:
    """The host's iptables rules (filter and nat tables), except those of any regress lab."""
    found = set()
    for table in ("filter", "nat"):
        out = subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
        found |= {f"{table}: {r}" for r in out.splitlines() if "regress lab " not in r and "REGRESS-" not in r}
    return found


def assert_seeded_actions_are_real_repositories(lab: Lab) -> None:
    """Adopted, not merely copied: Forgejo shows each seeded action with its branch and tags, publicly."""
    client = lab.client()
    assert {s.repo for s in lab.seeded} >= {"actions/checkout", "docker/setup-qemu-action"}
    for seeded in lab.seeded:
        info = client.request("GET", f"/api/v1/repos/{seeded.repo}").json()
        assert (info["empty"], info["private"], info["default_branch"]) == (False, False, "main"), (seeded, info)
        tags = {t["name"]: t["commit"]["sha"] for t in client.request("GET", f"/api/v1/repos/{seeded.repo}/tags").json()}
        for ref in seeded.refs[1:]:
            assert tags.get(ref) == seeded.commit, (seeded, tags)


def assert_containers_reach_each_other(lab: Lab) -> None:
    """A job container reaches a service container by name on a per-job network (our dockerd runs
    with ``--iptables=false``; the lab's own FORWARD rules and Docker's embedded DNS must do)."""
    assert lab.engine is not None and lab.prepared is not None
    client = lab.engine.client()
    tag = {"regress.lab": lab.id}
    network = client.networks.create(f"regress-svc-{lab.id}", labels=tag)
    try:
        client.containers.run(lab.prepared.job_image, ["node", "-e", SERVE], name=f"svc-{lab.id}", detach=True,
                              network=network.name, labels=tag)
        job = client.containers.run(lab.prepared.job_image, ["node", "-e", FETCH.replace("HOST", f"svc-{lab.id}")],
                                    network=network.name, labels=tag, detach=True)
        status = job.wait(timeout=60)
        assert status["StatusCode"] == 0 and b"body pong" in job.logs(), job.logs()
    finally:
        for container in client.containers.list(all=True, filters={"label": f"regress.lab={lab.id}"}):
            container.remove(force=True)
        network.remove()


SERVE = "require('http').createServer((q, s) => s.end('pong')).listen(8080)"
FETCH = ("const get = n => require('http').get('http://HOST:8080', r => r.on('data', d => console.log('body', String(d))))"
         ".on('error', e => n > 0 ? setTimeout(() => get(n - 1), 200) : (console.log(e.message), process.exit(3)));"
         " get(25)")


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
    firewall_before = host_firewall()
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
        assert_seeded_actions_are_real_repositories(lab)
        if status["engine"]["ours"]:  # our dockerd leaves the host's firewall alone (no chains, no policy)
            assert host_firewall() == firewall_before
            assert [r for r in status["firewall"] if r.startswith("-A FORWARD")], status["firewall"]
        assert_containers_reach_each_other(lab)
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
    assert host_firewall() == firewall_before
    assert not lab_dir_for(lab_id).exists()
