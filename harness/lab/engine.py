"""The Docker engine of the lab: the user's (``DOCKER_HOST`` or the default socket) or our own dockerd.

Our dockerd gets a lab-private socket, exec root and pid file, and a data root kept in the cache
(so prepared images stay imported). Where the capability bounding set lacks capabilities, its
default runtime is :mod:`harness.lab.capdrop` so ``--privileged`` containers still start.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import psutil
import requests
from filelock import FileLock

from harness import procs
from harness.budgets import BUDGETS
from harness.errors import LabError, PollTimeout
from harness.lab import capdrop
from harness.paths import dockerd_data_root
from harness.waiting import adaptive_wait, wait_for

log = logging.getLogger(__name__)
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Engine:
    """A Docker engine the lab talks to."""

    host: str  # DOCKER_HOST value
    ours: bool  # started by the lab (and stopped by it)
    pid: int | None
    bridge_ip: str  # gateway of the default bridge (where job containers reach the host)
    runtime: str  # default runtime name
    version: str

    def client(self) -> docker.DockerClient:
        """A docker-py client for this engine."""
        return docker.DockerClient(base_url=self.host, timeout=60)


def _ping(host: str) -> docker.DockerClient | None:
    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return None


def _bridge_ip(client: docker.DockerClient) -> str:
    try:
        config = client.networks.get("bridge").attrs["IPAM"]["Config"]
        return str(config[0]["Gateway"])
    except (docker.errors.DockerException, KeyError, IndexError) as exc:
        raise LabError(f"the Docker engine has no default bridge with a gateway: {exc}") from None


def _describe(host: str, ours: bool, pid: int | None, client: docker.DockerClient) -> Engine:
    info = client.info()
    return Engine(host, ours, pid, _bridge_ip(client), str(info.get("DefaultRuntime", "runc")),
                  str(info.get("ServerVersion", "")))


def find_existing() -> Engine | None:
    """The user's engine, when one answers (``DOCKER_HOST`` first, then the default socket)."""
    for host in (os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET):
        if host and (client := _ping(host)):
            return _describe(host, False, None, client)
    return None


def _runtime_script(lab_dir: Path) -> Path:
    runc = shutil.which("runc")
    if runc is None:
        raise LabError("runc is not installed (it comes with Debian's docker.io)")
    script = lab_dir / "capdrop-runtime"
    script.write_text(
        "#!/bin/sh\n"
        f"REGRESS_REAL_RUNC={runc} exec {sys.executable} -S {Path(capdrop.__file__).resolve()} \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def existing_bridge_ip(name: str = "docker0") -> str | None:
    """The IPv4 address of an existing ``docker0`` (a dockerd started now reuses the bridge and its address)."""
    for addr in psutil.net_if_addrs().get(name, []):
        if addr.family == socket.AF_INET:
            return str(addr.address)
    return None


SHARED_TAG = "shared-dockerd"


def runtime_dir() -> Path:
    """The dir of the one dockerd the labs of this machine share (short: unix socket paths < 108 bytes)."""
    return Path(tempfile.gettempdir()) / "regress-dockerd"


def _users(run: Path) -> list[str]:
    """Labs using our dockerd; a lab whose dir is gone (down, or crashed and removed) no longer counts."""
    from harness.paths import labs_dir

    users = run / "users"
    alive = []
    for entry in sorted(users.glob("*")) if users.is_dir() else []:
        if (labs_dir() / entry.name).exists():
            alive.append(entry.name)
        else:
            entry.unlink(missing_ok=True)
    return alive


def acquire_dockerd(lab_id: str) -> Engine:
    """Our dockerd for this lab: the running one (shared between labs) or a new one.

    Raises:
        LabError: dockerd is not installed or did not come up within ``dockerd_ready``.
    """
    run = runtime_dir()
    run.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(str(run / "lock")):
        pid = _read_pid(run / "dockerd.pid")
        host = f"unix://{run / 'docker.sock'}"
        client = _ping(host) if procs.alive(pid) else None
        engine = _describe(host, True, pid, client) if client else start_dockerd(run)
        (run / "users").mkdir(exist_ok=True)
        (run / "users" / lab_id).write_text(str(os.getpid()))
    return engine


def sole_user(lab_id: str) -> bool:
    """True when no other lab uses our dockerd."""
    return _users(runtime_dir()) in ([], [lab_id])


def release_dockerd(engine: Engine, lab_id: str) -> str:
    """Drop this lab from our dockerd's users; stop it when none is left (never the user's engine)."""
    if not engine.ours:
        return "not ours"
    run = runtime_dir()
    with FileLock(str(run / "lock")):
        (run / "users" / lab_id).unlink(missing_ok=True)
        others = _users(run)
        if others:
            return f"kept running for {len(others)} other lab(s)"
        outcome = procs.stop(engine.pid, budget=BUDGETS.docker_stop)
        swept = procs.sweep(SHARED_TAG)  # containerd and shims it may leave
        shutil.rmtree(run, ignore_errors=True)  # the lock file goes too: the next lab makes a new one
    return outcome + (f" (and {', '.join(swept)})" if swept else "")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_dockerd(run: Path) -> Engine:
    """Start Debian's dockerd with a private socket, exec root and pid file, and a data root kept in
    the cache (prepared images stay imported); wait until it answers.

    Raises:
        LabError: dockerd is not installed or did not come up within ``dockerd_ready``.
    """
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise LabError("no Docker engine answers and dockerd is not installed; run: apt-get install docker.io "
                       "(or point DOCKER_HOST at an engine)")
    sock_path = run / "docker.sock"
    data_root = dockerd_data_root()
    data_root.mkdir(parents=True, exist_ok=True)
    # --iptables=false: dockerd would otherwise add its chains to the host's firewall, set the FORWARD
    # policy to DROP and leave both behind when it stops (a lab must not change the host beyond its
    # own rules); setting them up is also most of its start time. Containers reach the host through
    # INPUT (the lab's chain); the lab's FORWARD rules let them reach each other (harness.lab.firewall).
    cmd = [dockerd, "--host", f"unix://{sock_path}", "--data-root", str(data_root), "--exec-root", str(run / "exec"),
           "--pidfile", str(run / "dockerd.pid"), "--iptables=false"]
    runtime = "runc"
    if capdrop.missing_caps():
        cmd += ["--add-runtime", f"regress-capdrop={_runtime_script(run)}", "--default-runtime", "regress-capdrop"]
        runtime = "regress-capdrop"
    log_file = run / "dockerd.log"
    pid = procs.spawn(cmd, log_file=log_file, lab_id=SHARED_TAG)
    host = f"unix://{sock_path}"

    def probe() -> docker.DockerClient | None:
        if not procs.alive(pid):
            tail = log_file.read_text(errors="replace").splitlines()[-5:]
            raise LabError(f"dockerd exited during start; log {log_file}:\n" + "\n".join(tail))
        return _ping(host) if sock_path.exists() else None

    try:
        client = wait_for("our dockerd to answer on its socket", "dockerd_ready", probe, lambda c: c is not None,
                          describe=lambda c: "socket not answering", evidence=str(log_file),
                          wait=adaptive_wait(fast=0.05, slow=0.1))
    except PollTimeout:
        procs.stop(pid, budget=BUDGETS.docker_stop)
        raise
    assert client is not None
    engine = _describe(host, True, pid, client)
    if engine.runtime != runtime:
        log.warning("dockerd reports default runtime %s, expected %s", engine.runtime, runtime)
    return engine


def ensure_image(engine: Engine, tag: str, tar: Path) -> None:
    """Import a prepared rootfs tarball as ``tag`` (and ``repo:latest``) unless the engine has it."""
    client = engine.client()
    repo, _, version = tag.partition(":")
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        with tar.open("rb") as data:
            client.api.import_image_from_data(data.read(), repository=repo, tag=version or "latest")
        image = client.images.get(tag)
    image.tag(repo, "latest")
