"""The lab booted by its CLI, as a user does: up, jobs by hand, cache, firewall, status, down."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from harness import procs
from harness.errors import LabError
from harness.forgejo.models import Status
from harness.lab import booting, firewall
from harness.lab import engine as engines
from harness.lab.booting import boot
from harness.lab.lab import Lab, RunnerSpec, lab_dir_for
from harness.lab.prepare import Prepared
from harness.paths import dockerd_data_root
from harness.runners.binaries import Binary
from harness.runners.process import label_name
from harness.versions import Version

from .conftest import FORGEJOS, RUNNERS, newest_forgejo, resolve_or_skip
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


# -- failed boots leak nothing; the first run on a fresh machine -------------------------------------------


def impossible_runner(tmp_path: Path) -> Binary:
    """A "forgejo-runner 12.1.2" whose every command fails at once (its cache server first)."""
    path = tmp_path / "forgejo-runner-12.1.2"
    path.write_text("#!/bin/sh\necho 'level=fatal msg=\"this runner cannot start\"'\nexit 1\n")
    path.chmod(0o755)
    return Binary("forgejo-runner", Version(12, 1, 2), path, "test")


def test_a_boot_failing_after_dockerd_started_leaves_no_process(tmp_path, monkeypatch):
    forgejo = newest_forgejo()
    if Prepared.load() is None:
        pytest.skip("the lab is not prepared on this machine (run: python -m harness lab prepare)")
    engines_seen: list[engines.Engine] = []
    real_engine = booting._engine

    def recorded(lab_id, notify):
        engines_seen.append(real_engine(lab_id, notify))
        return engines_seen[-1]

    monkeypatch.setattr(booting, "_engine", recorded)
    lab_id = f"failtest-{uuid.uuid4().hex[:6]}"
    try:
        with pytest.raises(LabError) as info:
            boot(lab_id, forgejo, [RunnerSpec(impossible_runner(tmp_path))])
        assert "exited" in str(info.value) and "this runner cannot start" in str(info.value)
        assert str(lab_dir_for(lab_id) / "runners" / "12.1.2" / "cache-server.log") in str(info.value)
        (engine,) = engines_seen  # the engine was up before the failure
        assert procs.tagged(lab_id) == [], "processes of the failed boot are still running"
        assert not firewall.rules(lab_id)
        if engine.ours:
            others = engines.users()
            assert lab_id not in others
            if others:  # another lab's session uses our dockerd: it must keep running for it
                assert procs.alive(engine.pid)
            else:
                assert not procs.alive(engine.pid), f"our dockerd (pid {engine.pid}) outlived the failed boot"
                assert procs.tagged(engines.SHARED_TAG) == []
                assert (lab_dir_for(lab_id) / "dockerd.log").is_file()
    finally:
        down = cli("down", "--lab", lab_id, check=False)
    assert down.returncode == 0 and not lab_dir_for(lab_id).exists(), down.stdout + down.stderr


def fresh_machine_or_skip() -> None:
    """Stop our dockerd, delete docker0 and our dockerd's data root, as on a machine that never ran
    Docker; skip (saying why) when anything else uses them."""
    if engines.find_existing() is not None:
        pytest.skip("a Docker engine answers on DOCKER_HOST or the default socket; docker0 may be its own")
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "dockerd" and not procs.carries_tag(proc.pid, engines.SHARED_TAG):
            pytest.skip(f"a dockerd other than the lab's own runs (pid {proc.pid}); docker0 may be its")
    with engines._lock():
        if engines.users():
            pytest.skip(f"labs {', '.join(engines.users())} use our dockerd now; its state is not ours to reset")
        pid = engines.dockerd_pid()
        if pid:
            procs.stop(pid, budget=60)
        procs.sweep(engines.SHARED_TAG)
        shutil.rmtree(engines.runtime_dir(), ignore_errors=True)
        data_root = dockerd_data_root()
        if any(str(data_root) in line for line in Path("/proc/mounts").read_text().splitlines()):
            pytest.skip(f"something is still mounted under {data_root}")
        if engines.existing_bridge_ip() is not None or Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "delete", "docker0"], check=True, timeout=30)
        shutil.rmtree(data_root, ignore_errors=True)
    assert not Path("/sys/class/net/docker0").exists() and not data_root.exists()


def test_first_run_on_a_fresh_machine():
    forgejo = newest_forgejo()
    runner = resolve_or_skip("forgejo-runner", RUNNERS[-1])
    if Prepared.load() is None:
        pytest.skip("the lab is not prepared on this machine (run: python -m harness lab prepare)")
    fresh_machine_or_skip()
    lab_id = f"firstrun-{uuid.uuid4().hex[:6]}"
    try:
        up = cli("up", "--lab", lab_id, "--forgejo-version", str(forgejo.version), "--runner-version",
                 str(runner.version))
        assert "starting our own dockerd" in up.stdout, up.stdout
        status = json.loads(cli("status", "--lab", lab_id, "--json").stdout)
        bridge = status["engine"]["bridge_ip"]
        assert status["engine"]["ours"] and bridge == engines.existing_bridge_ip("docker0"), status["engine"]
        lab = Lab.load(lab_dir_for(lab_id))
        (lab_runner,) = lab.runners.values()
        label = label_name(lab_runner.labels["docker"])  # a job container reaches Forgejo and the cache on the bridge
        view = push(lab, workflow("first-run", label, CACHE_STEPS), label, "first-run").watch().view
        log = "\n".join(line.message for line in view.log_lines())
        assert view.job_status() is Status.SUCCESS, f"{view.summary()}\n{log[-2000:]}"
        assert "cache roundtrip ok" in log
    finally:
        down = cli("down", "--lab", lab_id, check=False)
    assert down.returncode == 0 and "leak check: nothing left" in down.stdout, down.stdout + down.stderr
    assert "our dockerd: stopped" in down.stdout or engines.users(), down.stdout
    assert not procs.tagged(lab_id) and not firewall.rules(lab_id)
    if not engines.users():
        assert procs.tagged(engines.SHARED_TAG) == []


def test_lab_up_with_an_actions_url_seeds_nothing_and_a_new_url_replaces_the_lab():
    forgejo, runner = newest_forgejo(), RUNNERS[-1]
    resolve_or_skip("forgejo-runner", runner)
    lab_id = f"cliurl-{uuid.uuid4().hex[:6]}"
    args = ["--lab", lab_id, "--forgejo-version", str(forgejo.version), "--runner-version", str(runner)]
    try:
        up = cli("up", *args, "--actions-url", "http://127.0.0.1:9/mirror/")
        assert "actions from http://127.0.0.1:9/mirror (DEFAULT_ACTIONS_URL; nothing seeded)" in up.stdout
        status = json.loads(cli("status", "--lab", lab_id, "--json").stdout)
        assert status["forgejo"]["actions_url"] == "http://127.0.0.1:9/mirror"
        assert not Lab.load(lab_dir_for(lab_id)).seeded  # the runners clone from the URL: no stand-in is seeded
        again = cli("up", *args)  # no URL now: the lab's own stand-ins
        assert "replacing lab" in again.stdout and "http://127.0.0.1:9/mirror there, self requested" in again.stdout
        assert json.loads(cli("status", "--lab", lab_id, "--json").stdout)["forgejo"]["actions_url"] == "self"
    finally:
        down = cli("down", "--lab", lab_id, check=False)
    assert down.returncode == 0 and "leak check: nothing left" in down.stdout, down.stdout + down.stderr
