"""Docker leftovers of a job: containers, networks and volumes still there after it, per task."""

from __future__ import annotations

import re
from dataclasses import dataclass

import docker
import docker.errors
import requests


@dataclass(frozen=True)
class Inventory:
    """Names of containers, networks and volumes at one moment."""

    containers: frozenset[str]
    networks: frozenset[str]
    volumes: frozenset[str]


def inventory(client: docker.DockerClient) -> Inventory:
    """What the engine has now."""
    return Inventory(
        frozenset(c.name for c in client.containers.list(all=True)),
        frozenset(n.name for n in client.networks.list()),
        frozenset(v.name for v in client.volumes.list()),
    )


def leftovers(before: Inventory, after: Inventory, task_id: int | None, builders: tuple[str, ...] = ()) -> list[str]:
    """What appeared during the job and is still there, attributed to this task.

    Attribution is by name, not time (jobs run in parallel): the runner names job containers
    ``FORGEJO-ACTIONS-TASK-<id>…`` and their volumes after them; builder containers created by the
    job carry the names its log printed (``builders``).
    """
    found = []
    task = re.compile(rf"FORGEJO-ACTIONS-TASK-{task_id}(?!\d)") if task_id else None
    for name in sorted(after.containers - before.containers):
        if (task and task.search(name)) or any(b and b in name for b in builders):
            found.append(f"container {name}")
    for name in sorted(after.volumes - before.volumes):
        if task and task.search(name):
            found.append(f"volume {name}")
    return found


def engine_client(host: str | None, *, timeout: float = 5.0) -> docker.DockerClient | None:
    """A client of the Docker engine at ``host`` (``DOCKER_HOST``; None: the default socket) when it answers a
    ping, else None (an admin's runner whose engine this user cannot reach: leftovers are not observed)."""
    try:
        client = docker.DockerClient(base_url=host or "unix:///var/run/docker.sock", timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return None
    return client


def safe_inventory(client: docker.DockerClient | None) -> tuple[Inventory | None, str | None]:
    """Inventory, or None with the reason when Docker cannot be asked."""
    if client is None:
        return None, "no Docker engine"
    try:
        return inventory(client), None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        return None, f"docker inventory failed: {exc}"
