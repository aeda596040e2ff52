"""The Docker engine of the lab: the user's (``DOCKER_HOST`` or the default socket) or our own dockerd.

Our dockerd gets a lab-private socket, exec root and pid file, and a data root kept in the cache
(so prepared images stay imported). Where the capability bounding set lacks capabilities, its
default runtime is :mod:`harness.lab.capdrop` so ``--privileged`` containers still start.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psutil
import requests
from filelock import FileLock

from harness import procs
from harness.budgets import BUDGETS
from harness.errors import LabError
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


def bridge_address(network: Mapping[str, Any], interface_ipv4: Callable[[str], str | None]) -> str:
    """Where job containers reach the host on the default bridge, from ``docker network inspect bridge``.

    The IPAM gateway when the engine reports one; else the IPv4 address of the bridge's interface
    (``docker0``); else the first host of its subnet (the address dockerd gives the bridge). A
    dockerd started with an empty data root and no ``docker0`` reports only the subnet.

    Raises:
        LabError: the payload has neither a gateway, nor an addressed interface, nor an IPv4 subnet.
    """
    configs = ((network.get("IPAM") or {}).get("Config") or [])
    for config in configs:
        if config.get("Gateway"):
            return str(ipaddress.ip_address(str(config["Gateway"]).split("/")[0]))
    name = str((network.get("Options") or {}).get("com.docker.network.bridge.name") or "docker0")
    if address := interface_ipv4(name):
        return address
    for config in configs:
        try:
            subnet = ipaddress.ip_network(str(config.get("Subnet")), strict=False)
        except ValueError:
            continue
        if subnet.version == 4 and subnet.num_addresses > 2:
            return str(subnet.network_address + 1)
    raise LabError(f"the Docker engine's default bridge has no gateway, its interface {name} no IPv4 address and "
                   f"its IPAM config no IPv4 subnet (IPAM config: {json.dumps(configs)})")


def _bridge_ip(client: docker.DockerClient) -> str:
    try:
        network = client.api.inspect_network("bridge")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise LabError(f"the Docker engine has no default bridge network: {exc}") from None
    return bridge_address(network, existing_bridge_ip)


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


def _lock() -> FileLock:
    """The lock around our dockerd's start, users and stop (beside the runtime dir, which a stop removes)."""
    return FileLock(str(runtime_dir().with_name("regress-dockerd.lock")))


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


def dockerd_pid() -> int | None:
    """The pid of our dockerd when it runs (its pid file, checked: a dockerd carrying our tag)."""
    pid = _read_pid(runtime_dir() / "dockerd.pid")
    return pid if pid and procs.carries_tag(pid, SHARED_TAG) else None


def acquire_dockerd(lab_id: str) -> Engine:
    """Our dockerd for this lab: the running one (shared between labs) or a new one.

    The lab is entered as a user before the start, so ``lab down`` of a boot killed meanwhile
    still releases it; when the start or the engine's description fails, the lab is dropped again
    and a dockerd nobody else uses is stopped before the error propagates.

    Raises:
        LabError: dockerd is not installed, did not come up within ``dockerd_ready``, or its default
            bridge has no usable address.
    """
    run = runtime_dir()
    with _lock():
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        (run / "users").mkdir(exist_ok=True)
        (run / "users" / lab_id).write_text(str(os.getpid()))
        try:
            pid = dockerd_pid()
            host = f"unix://{run / 'docker.sock'}"
            client = _ping(host) if pid else None
            if client:
                return _describe(host, True, pid, client)
            if pid:  # running but mute: a hung dockerd only this lab would use is replaced
                others = [u for u in _users(run) if u != lab_id]
                if others:
                    raise LabError(f"our dockerd (pid {pid}) does not answer on {host}; labs {', '.join(others)} "
                                   f"use it; its log: {run / 'dockerd.log'}")
                procs.stop(pid, budget=BUDGETS.docker_stop)
            return start_dockerd(run)
        except BaseException:
            _release_locked(run, lab_id, None)
            raise


def users() -> list[str]:
    """The labs using our dockerd now."""
    return _users(runtime_dir())


def sole_user(lab_id: str) -> bool:
    """True when no other lab uses our dockerd."""
    return _users(runtime_dir()) in ([], [lab_id])


NOT_A_USER = "not used by this lab"


def is_user(lab_id: str) -> bool:
    """True while this lab is entered as a user of our dockerd."""
    return (runtime_dir() / "users" / lab_id).exists()


def release(lab_id: str, *, keep_log_in: Path | None = None) -> str:
    """Drop this lab from our dockerd's users; stop the dockerd when none is left.

    Needs no :class:`Engine`: ``lab down`` / ``lab prune`` of a failed boot (no ``lab.json``) release
    by the lab id. A lab that is not a user (never was, or released already) stops nothing:
    :data:`NOT_A_USER`. ``keep_log_in``: a dir the dockerd's log is copied into before its runtime
    dir goes.
    """
    if not is_user(lab_id):
        return NOT_A_USER
    with _lock():
        return _release_locked(runtime_dir(), lab_id, keep_log_in)


def _release_locked(run: Path, lab_id: str, keep_log_in: Path | None) -> str:
    entry = run / "users" / lab_id
    if not entry.exists():
        return NOT_A_USER
    entry.unlink()
    others = _users(run)
    if others:
        return f"kept running for {len(others)} other lab(s)"
    pid = dockerd_pid()
    outcome = procs.stop(pid, budget=BUDGETS.docker_stop) if pid else "not running"
    swept = procs.sweep(SHARED_TAG)  # containerd and shims it may leave
    if keep_log_in is not None and (run / "dockerd.log").is_file() and keep_log_in.is_dir():
        shutil.copy2(run / "dockerd.log", keep_log_in / "dockerd.log")
    shutil.rmtree(run, ignore_errors=True)
    return outcome + (f" (and {', '.join(swept)})" if swept else "")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_dockerd(run: Path) -> Engine:
    """Start Debian's dockerd with a private socket, exec root and pid file, and a data root kept in
    the cache (prepared images stay imported); wait until it answers.

    A dockerd that does not come up, or whose default bridge has no usable address, is stopped
    before the error propagates.

    Raises:
        LabError: dockerd is not installed, did not come up within ``dockerd_ready`` or has no
            usable default bridge.
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
    try:
        engine = _wait_described(f"unix://{sock_path}", pid, log_file)
    except BaseException:  # a dockerd that did not come up or has no usable bridge is not left running
        procs.stop(pid, budget=BUDGETS.docker_stop)
        raise
    if engine.runtime != runtime:
        log.warning("dockerd reports default runtime %s, expected %s", engine.runtime, runtime)
    return engine


def _wait_described(host: str, pid: int, log_file: Path) -> Engine:
    sock_path = Path(host.removeprefix("unix://"))

    def probe() -> docker.DockerClient | None:
        if not procs.alive(pid):
            tail = log_file.read_text(errors="replace").splitlines()[-5:]
            raise LabError(f"dockerd exited during start; log {log_file}:\n" + "\n".join(tail))
        return _ping(host) if sock_path.exists() else None

    client = wait_for("our dockerd to answer on its socket", "dockerd_ready", probe, lambda c: c is not None,
                      describe=lambda c: "socket not answering", evidence=str(log_file),
                      wait=adaptive_wait(fast=0.05, slow=0.1))
    assert client is not None
    try:
        return _describe(host, True, pid, client)
    except LabError as exc:
        raise LabError(f"{exc}; dockerd's log: {log_file}") from None


def ensure_image(engine: Engine, tag: str, tar: Path, *, changes: tuple[str, ...] = (),
                 alias: str | None = None) -> None:
    """Import a prepared rootfs tarball as ``tag`` (and ``repo:latest``) unless the engine has it.

    ``changes``: Dockerfile instructions for the image's config (``ENTRYPOINT``, ``VOLUME``, ``ENV``).
    ``alias``: a second name, the real image's (``moby/buildkit:buildx-stable-1``, which buildx boots),
    given unless the engine holds another image under that name that the lab did not import (the real
    one, pulled or served by a mirror: it is left alone).
    """
    client = engine.client()
    repo, _, version = tag.partition(":")
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        with tar.open("rb") as data:  # streamed: requests sends a file object in chunks (139 MB for buildkit)
            client.api.import_image_from_data(data, repository=repo, tag=version or "latest",
                                              changes=list(changes) or None)
        image = client.images.get(tag)
    image.tag(repo, "latest")
    if alias is None:
        return
    try:
        held: list[str] | None = list(client.images.get(alias).tags)
    except docker.errors.ImageNotFound:
        held = None
    if alias_is_ours(held, repo):
        alias_repo, _, alias_tag = alias.rpartition(":")
        image.tag(alias_repo, alias_tag)


def alias_is_ours(held_tags: list[str] | None, repo: str) -> bool:
    """Whether the lab may (re)point an alias: nothing holds it yet (``None``), or an image the lab
    imported (one of its tags is in ``repo``, e.g. an earlier recipe's ``regress-buildkit:<key>``)."""
    return held_tags is None or any(t.startswith(f"{repo}:") for t in held_tags)
