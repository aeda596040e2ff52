"""Lab orchestration: ``up`` (boot or reuse), ``status``, ``down`` and the leak check.

Everything started carries the lab id: processes through ``REGRESS_LAB_ID`` in their environment,
job containers through the ``regress.lab`` label, the firewall through its chain name. ``down``
and a failed ``up`` remove all of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import docker.errors
import psutil
import requests

from harness import procs
from harness.errors import ConfigError, HarnessError, LabError
from harness.forgejo.client import ForgejoClient
from harness.lab import engine as engines
from harness.lab import firewall
from harness.lab.forgejo import ADMIN, ForgejoServer, ZombieSettings, local_session
from harness.lab.prepare import Prepared
from harness.lab.seed import Seeded
from harness.paths import labs_dir
from harness.redact import register_secret
from harness.runners.binaries import Binary
from harness.runners.process import LabRunner
from harness.versions import Version

log = logging.getLogger(__name__)
Notify = Callable[[str], None]


@dataclass(frozen=True)
class RunnerSpec:
    """One runner the lab should run: a version, an optional config axis, environment knobs."""

    binary: Binary
    config_name: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    without_tools: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # the config axis's ``env:``: the runner process's variables

    @property
    def key(self) -> str:
        """``12.1.2`` or ``12.1.2-cacheoff``: the cell id of this runner."""
        return f"{self.binary.version}" + (f"-{self.config_name}" if self.config_name else "")


@dataclass
class Lab:
    """A booted lab; :meth:`save` / :meth:`load` keep it in ``lab.json``."""

    id: str
    dir: Path
    forgejo: ForgejoServer
    engine: engines.Engine | None
    runners: dict[str, LabRunner]
    prepared: Prepared | None
    seeded: list[Seeded] = field(default_factory=list)
    firewall_rules: list[str] = field(default_factory=list)
    firewall_note: str = ""
    boot_seconds: float = 0.0
    boot_phases: dict[str, float] = field(default_factory=dict)  # seconds from the start of boot

    # -- persistence ---------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        """``lab.json``."""
        return self.dir / "lab.json"

    def token(self) -> str:
        """The admin API token (read from its 0600 file)."""
        token = self.forgejo.token_file.read_text().strip()
        register_secret(token)
        return token

    def password(self) -> str:
        """The admin password (read from its 0600 file)."""
        password = self.forgejo.password_file.read_text().strip()
        register_secret(password)
        return password

    def client(self) -> ForgejoClient:
        """A REST client with the admin token."""
        return ForgejoClient(self.forgejo.url, self.token(), trust_env=False)

    def to_json(self) -> dict[str, Any]:
        """What ``lab status --json`` prints (paths and PIDs, never secrets)."""
        return {
            "id": self.id,
            "dir": str(self.dir),
            "forgejo": {
                "version": str(self.forgejo.binary.version),
                "binary": str(self.forgejo.binary.path),
                "url": self.forgejo.url,
                "pid": self.forgejo.pid,
                "alive": procs.alive(self.forgejo.pid),
                "log": str(self.forgejo.log_file),
                "app_ini": str(self.forgejo.app_ini),
                "token_file": str(self.forgejo.token_file),
                "password_file": str(self.forgejo.password_file),
                "user": ADMIN,
                "zombie": {"timeout": self.forgejo.zombie.zombie_timeout, "cron": self.forgejo.zombie.zombie_cron},
                "actions_url": self.forgejo.actions_url,
            },
            "engine": None if self.engine is None else {
                "host": self.engine.host, "ours": self.engine.ours, "pid": self.engine.pid,
                "bridge_ip": self.engine.bridge_ip, "runtime": self.engine.runtime, "version": self.engine.version,
            },
            "runners": {key: r.to_json() for key, r in self.runners.items()},
            "private_runners": {key: r.to_json() for key, r in self.private_runners().items()},
            "prepared": None if self.prepared is None else self.prepared.__dict__,
            "seeded": [s.__dict__ for s in self.seeded],
            "firewall": self.firewall_rules,
            "firewall_note": self.firewall_note,
            "listeners": self.listeners(),
            "boot_seconds": round(self.boot_seconds, 2),
            "boot_phases": {k: round(v, 2) for k, v in self.boot_phases.items()},
        }

    def save(self) -> None:
        """Write ``lab.json`` plus what :meth:`load` needs."""
        data = self.to_json()
        data["_runner_state"] = {key: r.to_state() for key, r in self.runners.items()}
        data["_forgejo"] = {"host": self.forgejo.host, "port": self.forgejo.port, "work": str(self.forgejo.work),
                            "binary": str(self.forgejo.binary.path)}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        """Rebuild a Lab handle from ``lab.json`` (for ``status``, ``down`` and reuse); the runners'
        pids come from their ``pids.json``.

        Raises:
            LabError: no lab there, or a corrupt state file.
        """
        state = directory / "lab.json"
        if not state.is_file():
            raise LabError(f"no lab at {directory} (no lab.json); start one with: python -m harness lab up")
        try:
            data = json.loads(state.read_text())
            fj = data["_forgejo"]
            server = ForgejoServer(
                Binary("forgejo", Version.parse(data["forgejo"]["version"]), Path(fj["binary"]), "lab.json"),
                Path(fj["work"]), fj["host"], int(fj["port"]), data["id"],
                ZombieSettings(data["forgejo"]["zombie"]["timeout"], data["forgejo"]["zombie"]["cron"]),
                pid=data["forgejo"]["pid"], actions_url=data["forgejo"].get("actions_url", "self"),
            )
            eng = data.get("engine")
            engine = None if eng is None else engines.Engine(eng["host"], eng["ours"], eng["pid"], eng["bridge_ip"],
                                                              eng["runtime"], eng["version"])
            runners = {key: LabRunner.from_state(st) for key, st in data["_runner_state"].items()}
            prepared = Prepared(**data["prepared"]) if data.get("prepared") else None
            seeded = [Seeded(**{**s, "refs": tuple(s["refs"])}) for s in data.get("seeded", [])]
        except (KeyError, ValueError, TypeError) as exc:
            raise LabError(f"{state} is corrupt ({type(exc).__name__}: {exc}); remove {directory} by hand") from None
        return cls(data["id"], directory, server, engine, runners, prepared, seeded, data.get("firewall", []),
                   data.get("firewall_note", ""), data.get("boot_seconds", 0.0), dict(data.get("boot_phases") or {}))

    # -- private runners (started by harness.lab.private) --------------------------------
    def private_runners(self) -> dict[str, LabRunner]:
        """The private runners recorded now (by any process), by key."""
        found = {}
        for record in sorted((self.dir / "private").glob("*/runner.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                runner = LabRunner.from_state(json.loads(record.read_text()))
                found[runner.key] = runner
        return found

    # -- health ----------------------------------------------------------------------
    def healthy(self) -> str | None:
        """None when Forgejo answers and every runner and cache server runs; else what is wrong."""
        try:
            local_session().get(self.forgejo.url + "/api/v1/version", timeout=3).raise_for_status()
        except requests.RequestException as exc:
            return f"Forgejo at {self.forgejo.url} does not answer: {type(exc).__name__}"
        for key, runner in self.runners.items():
            if not procs.alive(runner.pid):
                return f"runner {key} (pid {runner.pid}) is not running"
            if not procs.alive(runner.cache_pid):
                return f"cache server of runner {key} is not running"
        if self.engine is not None and engines._ping(self.engine.host) is None:
            return f"the Docker engine at {self.engine.host} does not answer"
        return None

    def listeners(self) -> list[dict[str, Any]]:
        """Every TCP listener of the lab's processes (address, port, process)."""
        pids = {self.forgejo.pid: "forgejo"}
        for key, r in {**self.runners, **self.private_runners()}.items():
            pids[r.pid] = f"runner {key}"
            pids[r.cache_pid] = f"cache-server {key}"
        found = []
        for pid, what in pids.items():
            if not procs.alive(pid):
                continue
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN:
                    found.append({"process": what, "pid": pid, "address": c.laddr.ip, "port": c.laddr.port})
        return sorted(found, key=lambda x: (x["process"], x["port"]))

    # -- teardown --------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """``down()``; what it left is raised as a LabError, or logged when an error is already in flight."""
        leaks = self.down()
        if leaks:
            message = f"lab {self.id} down left: {', '.join(leaks)} (its dir {self.dir} is kept)"
            if exc is None:
                raise LabError(message)
            log.error(message)

    def down(self, *, keep_dir: bool = False, notify: Notify = lambda s: None) -> list[str]:
        """Stop and remove everything of this lab; returns what the leak check still finds."""
        for key, runner in {**self.private_runners(), **self.runners}.items():
            notify(f"stopping runner {key}: {runner.stop()}; cache server: {runner.stop_cache_server()}")
        notify(f"stopping Forgejo: {self.forgejo.stop()}")
        if self.engine is not None:
            everything = self.engine.ours and engines.sole_user(self.id)
            removed = remove_docker_leftovers(self.engine, self.id, everything=everything)
            if removed:
                notify(f"removed from Docker: {', '.join(removed)}")
        swept = procs.sweep(self.id)
        if swept:
            notify(f"killed leftover processes: {', '.join(swept)}")
        used_ours = False
        if self.engine is None or self.engine.ours:  # None: a failed boot may have started ours
            released = engines.release(self.id, keep_log_in=self.dir if keep_dir else None)
            used_ours = released != engines.NOT_A_USER
            if used_ours:
                notify(f"our dockerd: {released}")
        firewall.remove(self.id)
        leaks = leak_check(self, used_ours=used_ours)
        if not keep_dir and not leaks:
            shutil.rmtree(self.dir, ignore_errors=True)
        return leaks


def remove_docker_leftovers(engine: engines.Engine, lab_id: str, *, everything: bool) -> list[str]:
    """Remove job containers, builder containers, per-job networks and volumes of this lab.

    With our own dockerd (``everything``) every container, non-default network and volume goes;
    with the user's engine only what carries the lab label or the runner's/builder's names and was
    created for this lab.
    """
    removed: list[str] = []
    try:
        client = engine.client()
        for container in client.containers.list(all=True):
            labels = container.labels or {}
            if everything or labels.get("regress.lab") == lab_id:
                container.remove(force=True, v=True)
                removed.append(f"container {container.name}")
        for network in client.networks.list():
            if network.name in ("bridge", "host", "none"):
                continue
            if everything or (network.name.startswith("WORKFLOW-") and not network.containers):
                network.remove()
                removed.append(f"network {network.name}")
        if everything:
            for volume in client.volumes.list():
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
    except (docker.errors.DockerException, requests.RequestException) as exc:
        removed.append(f"(docker clean-up incomplete: {exc})")
    return removed


def leak_check(lab: Lab, *, used_ours: bool | None = None) -> list[str]:
    """What of the lab is still there: processes, containers, networks, volumes, firewall rules, dockerd.

    ``used_ours``: whether the lab used our dockerd (default: its engine says so).
    """
    leaks = [f"process {p.name()}[{p.pid}]" for p in procs.tagged(lab.id)]
    if firewall.available():
        leaks += [f"firewall rule: {r}" for r in firewall.rules(lab.id)]
    if lab.engine is None or lab.engine.ours:
        leaks += _dockerd_leaks(lab.id, bool(lab.engine) if used_ours is None else used_ours)
    else:
        client = lab.engine.client()
        mine = client.containers.list(all=True, filters={"label": f"regress.lab={lab.id}"})
        leaks += [f"container {c.name}" for c in mine]
    return leaks


def _dockerd_leaks(lab_id: str, used: bool) -> list[str]:
    """Our dockerd still running (or its runtime dir still there) although the lab used it and no
    other lab does."""
    if engines.is_user(lab_id):
        return [f"our dockerd still lists lab {lab_id} as a user ({engines.runtime_dir() / 'users' / lab_id})"]
    if not used or not engines.sole_user(lab_id):
        return []
    leaks = [f"our dockerd's process {p.name()}[{p.pid}]" for p in procs.tagged(engines.SHARED_TAG)]
    if engines.runtime_dir().exists() and leaks:
        leaks.append(f"our dockerd's runtime dir {engines.runtime_dir()}")
    return leaks


def teardown_dir(lab_id: str, *, notify: Notify = lambda s: None) -> list[str]:
    """Clean up a lab dir that has no usable ``lab.json`` (a failed or killed boot): stop the
    processes carrying the lab id (and those its pid files name, once verified), drop its firewall
    rules, release our dockerd when only this lab used it, remove the dir. Returns what is left.
    """
    directory = lab_dir_for(lab_id)
    for state_file in sorted(directory.glob("*/*/runner.json")):  # runners/<key>, private/<key>
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, HarnessError):
            runner = LabRunner.from_state(json.loads(state_file.read_text()))
            notify(f"runner {runner.key}: {runner.stop()}; cache server: {runner.stop_cache_server()}")
    swept = procs.sweep(lab_id)
    if swept:
        notify(f"killed processes of lab {lab_id}: {', '.join(swept)}")
    if firewall.available():
        firewall.remove(lab_id)
    released = engines.release(lab_id)
    if released != engines.NOT_A_USER:
        notify(f"our dockerd: {released}")
    leaks = [f"process {p.name()}[{p.pid}]" for p in procs.tagged(lab_id)]
    leaks += [f"firewall rule: {r}" for r in firewall.rules(lab_id)] if firewall.available() else []
    leaks += _dockerd_leaks(lab_id, released != engines.NOT_A_USER)
    if not leaks:
        shutil.rmtree(directory, ignore_errors=True)
    return leaks


LAB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")


def lab_dir_for(lab_id: str) -> Path:
    """``<cache>/labs/<id>``.

    Raises:
        ConfigError: the id is not 1–48 letters, digits, '.', '_' or '-' (it names a dir, an
            iptables chain and a comment, and tags processes).
    """
    if not LAB_ID.fullmatch(lab_id):
        raise ConfigError(f"lab id {lab_id!r}: use 1–48 letters, digits, '.', '_' or '-', starting with a letter "
                          "or digit")
    return labs_dir() / lab_id


def release_unhandled(lab_id: str) -> list[str]:
    """The processes, firewall rules and dockerd use of a lab that got no handle yet; the dir stays."""
    procs.sweep(lab_id)
    if firewall.available():
        firewall.remove(lab_id)
    released = engines.release(lab_id, keep_log_in=lab_dir_for(lab_id))
    leaks = [f"process {p.name()}[{p.pid}]" for p in procs.tagged(lab_id)]
    return leaks + _dockerd_leaks(lab_id, released != engines.NOT_A_USER)
