"""The Docker engine of the lab: the user's (``DOCKER_HOST`` or the default socket) or our own dockerd.

Our dockerd gets a lab-private socket, exec root and pid file, and a data root kept in the cache
(so prepared images stay imported). Where the capability bounding set lacks capabilities, its
default runtime is :mod:`harness.lab.capdrop` so ``--privileged`` containers still start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests

from harness.budgets import BUDGETS
from harness.errors import LabError, PollTimeout
from harness.lab import capdrop, procs
from harness.paths import dockerd_data_root
from harness.watch import adaptive_wait, wait_for

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
    import psutil

    for addr in psutil.net_if_addrs().get(name, []):
        if addr.family == socket_family_inet():
            return str(addr.address)
    return None


def socket_family_inet() -> int:
    import socket

    return int(socket.AF_INET)


def runtime_dir(lab_id: str) -> Path:
    """A short per-lab dir for dockerd's sockets (unix socket paths must stay under 108 bytes)."""
    digest = hashlib.sha256(lab_id.encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"regress-dockerd-{digest}"


def start_dockerd(lab_dir: Path, lab_id: str) -> Engine:
    """Start our own dockerd (Debian's ``docker.io``) and wait until it answers.

    Raises:
        LabError: dockerd is not installed or did not come up within ``dockerd_ready``.
    """
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise LabError("no Docker engine answers and dockerd is not installed; run: apt-get install docker.io "
                       "(or point DOCKER_HOST at an engine)")
    run = runtime_dir(lab_id)
    run.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket = run / "docker.sock"
    data_root = dockerd_data_root()
    data_root.mkdir(parents=True, exist_ok=True)
    cmd = [dockerd, "--host", f"unix://{socket}", "--data-root", str(data_root), "--exec-root", str(run / "exec"),
           "--pidfile", str(run / "dockerd.pid")]
    runtime = "runc"
    if capdrop.missing_caps():
        cmd += ["--add-runtime", f"regress-capdrop={_runtime_script(run)}", "--default-runtime", "regress-capdrop"]
        runtime = "regress-capdrop"
    log_file = lab_dir / "logs" / "dockerd.log"
    pid = procs.spawn(cmd, log_file=log_file, lab_id=lab_id)
    host = f"unix://{socket}"

    def probe() -> docker.DockerClient | None:
        if not procs.alive(pid):
            tail = log_file.read_text(errors="replace").splitlines()[-5:]
            raise LabError(f"dockerd exited during start; log {log_file}:\n" + "\n".join(tail))
        return _ping(host) if socket.exists() else None

    try:
        client = wait_for("our dockerd to answer on its socket", "dockerd_ready", probe, lambda c: c is not None,
                          describe=lambda c: "socket not answering", evidence=str(log_file),
                          wait=adaptive_wait(fast=0.05, slow=0.5))
    except PollTimeout:
        procs.stop(pid, budget=BUDGETS.docker_stop)
        raise
    assert client is not None
    engine = _describe(host, True, pid, client)
    if engine.runtime != runtime:
        log.warning("dockerd reports default runtime %s, expected %s", engine.runtime, runtime)
    return engine


def stop_dockerd(engine: Engine) -> str:
    """Stop our dockerd (never the user's)."""
    if not engine.ours:
        return "not ours"
    outcome = procs.stop(engine.pid, budget=BUDGETS.docker_stop)
    socket = engine.host.removeprefix("unix://")
    shutil.rmtree(Path(socket).parent, ignore_errors=True)
    return outcome


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
