"""Private runners: a runner of one version that a single cell uses alone, because it signals,
restarts or slows it (parallel cells on the shared runner would otherwise trip over it).

Each has its own registration, dir, config, cache server (its ports join the lab's firewall chain)
and labels (``regress-12.1.2-p1a2b3c-native:host``). It is recorded in ``<lab>/private/<key>/runner.json``
from before its first process starts to after its last one stopped, so ``lab status`` lists it and
``lab down`` stops it even when the process that owned it died.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from harness import procs
from harness.errors import HarnessError, LabError
from harness.forgejo.web import WebSession
from harness.lab import firewall
from harness.lab.booting import copy_buildx
from harness.lab.forgejo import ADMIN, free_port
from harness.lab.lab import Lab
from harness.runners.process import LabRunner

log = logging.getLogger(__name__)
Notify = Callable[[str], None]


@contextlib.contextmanager
def private_runner(lab: Lab, version_key: str, *, notify: Notify = lambda s: None, via: str | None = None,
                   env: Mapping[str, str] | None = None) -> Iterator[LabRunner]:
    """Start a private runner of ``version_key``, yield it, stop and forget it on exit (see :meth:`Lab.private_runner`)."""
    runner = start(lab, version_key, notify=notify, via=via, env=env)
    try:
        yield runner
    finally:
        notify(f"private runner {runner.key}: {stop(lab, runner)}")


def new_runner(lab: Lab, version_key: str, via: str | None = None, env: Mapping[str, str] | None = None) -> LabRunner:
    """The handle of a new private runner modelled on the lab's runner ``version_key`` (nothing started);
    ``via``: the fault proxy's URL, its instance address instead of Forgejo's; ``env``: process variables under
    the model runner's own (its config axis's ``env:``, which wins).

    Raises:
        LabError: the lab has no runner ``version_key``.
    """
    base = lab.runners.get(version_key)
    if base is None:
        raise LabError(f"lab {lab.id} has no runner {version_key!r} to model a private runner on; it has "
                       f"{', '.join(sorted(lab.runners)) or 'none'}")
    key = f"{base.key}-p{secrets.token_hex(3)}"
    labels = {kind: label.replace(f"regress-{base.key}-", f"regress-{key}-", 1) for kind, label in base.labels.items()}
    return LabRunner(
        name=f"regress-{key}", binary=base.binary, dir=lab.dir / "private" / key, instance_url=via or lab.forgejo.url,
        labels=labels, lab_id=lab.id, capacity=base.capacity, bridge_ip=base.bridge_ip, docker_host=base.docker_host,
        cache_port=free_port(base.bridge_ip), proxy_port=free_port(base.bridge_ip), overrides=dict(base.overrides),
        env_overrides={**(env or {}), **base.env_overrides},
        without_tools=base.without_tools, fault_proxy_port=urllib.parse.urlsplit(via).port or 0 if via else 0,
    )


def start(lab: Lab, version_key: str, *, notify: Notify = lambda s: None, via: str | None = None,
          env: Mapping[str, str] | None = None) -> LabRunner:
    """Register, configure and start a private runner; returns once it declared and polls.

    Registration, the cache server, the firewall jumps, the buildx plugin and ``.runner`` are done
    side by side; on any failure what was started is stopped again before the error propagates.

    Raises:
        LabError: no runner ``version_key``, or a part did not come up (its log named).
    """
    runner = new_runner(lab, version_key, via, env)
    t0 = time.monotonic()
    try:
        runner.prepare()  # writes runner.json: recorded from here on
        with ThreadPoolExecutor(max_workers=4) as pool:
            registration = pool.submit(lab.forgejo.register_runner, runner.name, runner.secret,
                                       list(runner.labels.values()))
            parts = [pool.submit(runner.start_cache_server), pool.submit(_confine, lab, runner)]
            if lab.prepared and lab.prepared.buildx and runner.docker_host:
                parts.append(pool.submit(copy_buildx, Path(lab.prepared.buildx), runner))
            runner.create_runner_file()
            runner.registration = registration.result()
            for part in parts:
                part.result()
        runner.save_state()
        runner.start()
        runner.wait_online()
    except BaseException:
        notify(f"private runner {runner.key} did not come up; stopping it: {stop(lab, runner, keep_dir=True)}")
        raise
    seconds = time.monotonic() - t0
    log.info("private runner %s polls after %.2fs", runner.key, seconds)
    notify(f"private runner {runner.key} polls after {seconds:.1f}s with labels {', '.join(runner.labels.values())}")
    return runner


def _confine(lab: Lab, runner: LabRunner) -> None:
    if lab.firewall_rules:  # the lab confines its ports: the private cache server's join its chain
        firewall.add_ports(lab.id, _ports(runner))


def _ports(runner: LabRunner) -> list[int]:
    """The ports a private runner adds to the lab's chain: its cache server's, and its fault proxy's."""
    return [runner.cache_port, runner.proxy_port, *([runner.fault_proxy_port] if runner.fault_proxy_port else [])]


def stop(lab: Lab, runner: LabRunner, *, keep_dir: bool = False) -> str:
    """Stop the daemon, its cache server and the processes its jobs left in its dir; remove its
    firewall jumps; unregister it from Forgejo; forget it (its dir goes unless ``keep_dir``).

    Never raises for a part that fails: the returned text says what happened to each.
    """
    outcome = [f"daemon {runner.stop()}", f"cache server {runner.stop_cache_server()}"]
    left = _sweep_dir(lab.id, runner.dir)
    if left:
        outcome.append(f"killed {', '.join(left)}")
    if lab.firewall_rules:
        with contextlib.suppress(HarnessError):
            firewall.remove_ports(lab.id, _ports(runner))
    outcome.append(unregister(lab, runner))
    if keep_dir:
        runner.state_file.unlink(missing_ok=True)  # forgotten; its logs stay for the error that names them
    else:
        shutil.rmtree(runner.dir, ignore_errors=True)
    return "; ".join(outcome)


def _sweep_dir(lab_id: str, directory: Path) -> list[str]:
    """Kill the lab's processes working inside ``directory`` (host steps a killed runner left)."""
    victims = []
    for proc in procs.tagged(lab_id):
        with contextlib.suppress(psutil.Error):
            if Path(proc.cwd()).is_relative_to(directory):
                victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=5)
    return [f"[{p.pid}]" for p in victims]


_WEB: dict[str, WebSession] = {}  # Forgejo URL → the admin's web session (one login per process)
_WEB_LOCK = threading.Lock()  # lanes of a cell pool stop their private runners from several threads


def unregister(lab: Lab, runner: LabRunner) -> str:
    """Delete the runner in Forgejo (the admin's runner page; there is no REST call before v15)."""
    if not runner.registration:
        return "not registered"
    with _WEB_LOCK:
        return _unregister(lab, runner)


def _unregister(lab: Lab, runner: LabRunner) -> str:
    try:
        runner_id = _runner_id(lab.forgejo.work / "data" / "forgejo.db", runner.registration)
        if runner_id is None:
            return "unregistered (Forgejo no longer lists it)"
        web = _WEB.get(lab.forgejo.url)
        if web is None:
            web = WebSession(lab.forgejo.url, lab.client().server_version(), trust_env=False)
            web.login(ADMIN, lab.password())
            _WEB[lab.forgejo.url] = web
        web.request("POST", f"/admin/actions/runners/{runner_id}/delete",
                    data={"_csrf": web.session.cookies.get("_csrf", "")}, ok=(200, 302, 303))
        if _runner_id(lab.forgejo.work / "data" / "forgejo.db", runner.registration) is not None:
            return f"not unregistered: Forgejo still lists runner {runner_id} after its delete"
        return "unregistered"
    except (HarnessError, OSError, sqlite3.Error) as exc:
        _WEB.pop(lab.forgejo.url, None)
        return f"not unregistered ({type(exc).__name__}: {exc})"


def _runner_id(database: Path, uuid: str) -> int | None:
    """The id of the live (not deleted) runner with ``uuid``, read from Forgejo's database (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        row = db.execute("SELECT id FROM action_runner WHERE uuid = ? AND (deleted IS NULL OR deleted = 0)",
                         (uuid,)).fetchone()
    return int(row[0]) if row else None
