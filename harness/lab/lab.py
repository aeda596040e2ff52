"""Lab orchestration: ``up`` (boot or reuse), ``status``, ``down`` and the leak check.

Everything started carries the lab id: processes through ``REGRESS_LAB_ID`` in their environment,
job containers through the ``regress.lab`` label, the firewall through its chain name. ``down``
and a failed ``up`` remove all of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import requests

from harness import procs
from harness.budgets import BUDGETS
from harness.errors import ConfigError, HarnessError, LabError
from harness.forgejo.client import ForgejoClient
from harness.lab import engine as engines
from harness.lab import firewall
from harness.lab.forgejo import ADMIN, ForgejoServer, ZombieSettings, free_port, local_session
from harness.lab.prepare import Prepared
from harness.lab.seed import Seeded, adopt, place, refs_from_uses, stand_in_sources
from harness.paths import labs_dir
from harness.redact import register_secret
from harness.runners.binaries import Binary
from harness.runners.process import LabRunner, labels_for
from harness.scenarios import load_all
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
            },
            "engine": None if self.engine is None else {
                "host": self.engine.host, "ours": self.engine.ours, "pid": self.engine.pid,
                "bridge_ip": self.engine.bridge_ip, "runtime": self.engine.runtime, "version": self.engine.version,
            },
            "runners": {key: r.to_json() for key, r in self.runners.items()},
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
        data["_runner_state"] = {
            key: {"secret_file": str(r.dir / ".runner"), "pid": r.pid, "cache_pid": r.cache_pid, "starts": r.starts,
                  "binary": str(r.binary.path), "version": str(r.version), "name": r.name,
                  "capacity": r.capacity, "cache_port": r.cache_port, "proxy_port": r.proxy_port,
                  "docker_host": r.docker_host}
            for key, r in self.runners.items()
        }
        data["_forgejo"] = {"host": self.forgejo.host, "port": self.forgejo.port, "work": str(self.forgejo.work),
                            "binary": str(self.forgejo.binary.path)}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        """Rebuild a Lab handle from ``lab.json`` (for ``status``, ``down`` and reuse).

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
                pid=data["forgejo"]["pid"],
            )
            eng = data.get("engine")
            engine = None if eng is None else engines.Engine(eng["host"], eng["ours"], eng["pid"], eng["bridge_ip"],
                                                              eng["runtime"], eng["version"])
            runners = {}
            for key, info in data["runners"].items():
                st = data["_runner_state"][key]
                runner = LabRunner(
                    name=st["name"], binary=Binary("forgejo-runner", Version.parse(st["version"]), Path(st["binary"]),
                                                   "lab.json"),
                    dir=Path(info["dir"]), instance_url=server.url, labels=dict(info["labels"]), lab_id=data["id"],
                    capacity=st["capacity"], bridge_ip=eng["bridge_ip"] if eng else server.host,
                    docker_host=st["docker_host"], cache_port=st["cache_port"], proxy_port=st["proxy_port"],
                    overrides=info.get("overrides") or {}, without_tools=tuple(info.get("without_tools") or ()),
                    pid=st["pid"], cache_pid=st["cache_pid"], starts=st["starts"],
                )
                runners[key] = runner
            prepared = Prepared(**data["prepared"]) if data.get("prepared") else None
            seeded = [Seeded(s["repo"], s["source"], s["commit"], tuple(s["refs"])) for s in data.get("seeded", [])]
        except (KeyError, ValueError, TypeError) as exc:
            raise LabError(f"{state} is corrupt ({type(exc).__name__}: {exc}); remove {directory} by hand") from None
        return cls(data["id"], directory, server, engine, runners, prepared, seeded, data.get("firewall", []),
                   data.get("firewall_note", ""), data.get("boot_seconds", 0.0), dict(data.get("boot_phases") or {}))

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
        for key, r in self.runners.items():
            pids[r.pid] = f"runner {key}"
            pids[r.cache_pid] = f"cache-server {key}"
        found = []
        import psutil

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
    def down(self, *, keep_dir: bool = False, notify: Notify = lambda s: None) -> list[str]:
        """Stop and remove everything of this lab; returns what the leak check still finds."""
        for key, runner in self.runners.items():
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
        if self.engine is not None and self.engine.ours:
            notify(f"our dockerd: {engines.release_dockerd(self.engine, self.id)}")
        firewall.remove(self.id)
        leaks = leak_check(self)
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


def leak_check(lab: Lab) -> list[str]:
    """What of the lab is still there: processes, containers, networks, volumes, firewall rules, dockerd."""
    leaks = [f"process {p.name()}[{p.pid}]" for p in procs.tagged(lab.id)]
    if firewall.available():
        leaks += [f"firewall rule: {r}" for r in firewall.rules(lab.id)]
    if lab.engine is not None:
        if lab.engine.ours:
            if engines.sole_user(lab.id):
                leaks += [f"our dockerd's process {p.name()}[{p.pid}]" for p in procs.tagged(engines.SHARED_TAG)]
                if engines.runtime_dir().exists():
                    leaks.append(f"our dockerd's runtime dir {engines.runtime_dir()}")
        else:
            client = lab.engine.client()
            mine = client.containers.list(all=True, filters={"label": f"regress.lab={lab.id}"})
            leaks += [f"container {c.name}" for c in mine]
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


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def boot(
    lab_id: str,
    forgejo_binary: Binary,
    specs: Sequence[RunnerSpec],
    *,
    capacity: int = 2,
    seed_sources: Mapping[str, Path] | None = None,
    seed_refs: Mapping[str, set[str]] | None = None,
    zombie: ZombieSettings | None = None,
    use_docker: bool = True,
    confine: bool = True,
    notify: Notify = lambda s: None,
) -> Lab:
    """Boot a lab; on any failure everything already started is removed before the error propagates.

    Raises:
        LabError: a part did not come up; the message says which and where its log is.
    """
    t0 = time.monotonic()
    directory = lab_dir_for(lab_id)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.chmod(directory, 0o700)
    prepared = Prepared.load()
    if use_docker and prepared is None:
        raise LabError("the lab is not prepared (no job image); run: python -m harness lab prepare")
    engine: engines.Engine | None = None
    lab: Lab | None = None
    pool = ThreadPoolExecutor(max_workers=8)
    # Forgejo's schema and admin do not need the engine: they run while dockerd starts; the address
    # (the bridge, where job containers reach the host) is filled in once the engine answers.
    server = ForgejoServer(forgejo_binary, directory / "forgejo", "127.0.0.1", 0, lab_id, zombie or ZombieSettings())
    phases: dict[str, float] = {}

    def start_seeding() -> Future[tuple[list[Seeded], float]]:
        def timed() -> tuple[list[Seeded], float]:
            return _ready_then_seed(server, admin, seed_sources, seed_refs), time.monotonic() - t0

        return pool.submit(timed)

    engine_future: Future[engines.Engine] | None = None

    try:
        engine_future = pool.submit(_engine, directory, lab_id, notify) if use_docker else None
        server.configure()
        notify(f"Forgejo {forgejo_binary.version}: migrate")
        server.migrate()
        admin = pool.submit(server.create_admin)
        # Registration needs only the database: it runs now, beside the admin and the engine's start.
        job_image = prepared.job_image if prepared and use_docker else None
        identities = {spec.key: (f"regress-{spec.key}", secrets.token_hex(20),
                                 labels_for(spec.binary.version, job_image, spec.config_name)) for spec in specs}
        registrations = [pool.submit(server.register_runner, name, secret, list(labels.values()))
                         for name, secret, labels in identities.values()]
        # A dockerd reuses an existing docker0 and its address: Forgejo can start on it right away, and
        # the actions are seeded while the engine still starts.
        guess = engines.existing_bridge_ip() if use_docker else "127.0.0.1"
        seeding = None
        if guess is not None:
            server.set_address(guess, free_port(guess))
            server.start()
            seeding = start_seeding()
        engine = engine_future.result() if engine_future else None
        host = engine.bridge_ip if engine else "127.0.0.1"
        if guess != host:
            if seeding is not None:  # what it seeds stays in the database and on disk
                seeding.result()
                server.stop()
            server.set_address(host, free_port(host))
            server.start()
        runners: dict[str, LabRunner] = {}
        plugin_copies: list[Future[object]] = []
        lab = Lab(lab_id, directory, server, engine, runners, prepared, boot_phases=phases)
        for spec in specs:
            name, secret, labels = identities[spec.key]
            runner = LabRunner(
                name=name, binary=spec.binary, dir=directory / "runners" / spec.key, instance_url=server.url,
                labels=dict(labels), lab_id=lab_id, capacity=capacity, bridge_ip=host,
                docker_host=engine.host if engine else None, cache_port=free_port(host), proxy_port=free_port(host),
                overrides=spec.overrides, without_tools=spec.without_tools, secret=secret,
            )
            runner.prepare()
            if prepared and prepared.buildx and engine:
                plugins = runner.home / ".docker" / "cli-plugins"
                plugins.mkdir(parents=True, exist_ok=True)
                # a copy (~95 MB), not a link: a job may rewrite its plugin in place (the real
                # setup-buildx-action installs one), which must not reach the prepared file
                plugin_copies.append(pool.submit(shutil.copy2, prepared.buildx, plugins / "docker-buildx"))
            runners[spec.key] = runner
        caches = [pool.submit(r.start_cache_server) for r in runners.values()]
        if confine:
            ports = [server.port] + [p for r in runners.values() for p in (r.cache_port, r.proxy_port)]
            if firewall.available():
                lab.firewall_rules = firewall.install(lab_id, ports, forward=bool(engine and engine.ours))
            else:
                lab.firewall_note = "iptables unavailable: ports not confined"
        version = server.wait_ready()
        phases["forgejo_ready"] = time.monotonic() - t0
        # the job images matter to jobs, not to the runners' start: checked (imported) off its critical path
        images = pool.submit(_import_images, engine, prepared) if engine and prepared else None
        notify(f"Forgejo {version} answers at {server.url}")
        admin.result()
        if seeding is None:
            seeding = start_seeding()
        for future in registrations + caches:
            future.result()

        def start(runner: LabRunner) -> None:
            runner.create_runner_file()  # it pings Forgejo: only once Forgejo answers
            runner.start()
            runner.wait_online()

        for key, future in [(k, pool.submit(start, r)) for k, r in runners.items()]:
            future.result()
            notify(f"runner {key} polls with labels {', '.join(runners[key].labels.values())}")
        phases["runners_polling"] = time.monotonic() - t0
        if images is not None:
            images.result()
        for copy in plugin_copies:
            copy.result()
        lab.seeded, phases["actions_seeded"] = seeding.result()
        server.unboost()
        lab.boot_seconds = time.monotonic() - t0
        lab.save()
        return lab
    except BaseException:
        if lab is not None:
            lab.down(keep_dir=True)
        else:
            server.stop()
            if engine is None and engine_future is not None:  # a dockerd still starting is ours to release too
                with contextlib.suppress(BaseException):
                    engine = engine_future.result(timeout=BUDGETS.dockerd_ready + 10)
            if engine is not None and engine.ours:
                engines.release_dockerd(engine, lab_id)
            procs.sweep(lab_id)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _engine(directory: Path, lab_id: str, notify: Notify) -> engines.Engine:
    engine = engines.find_existing()
    if engine is None:
        notify("no Docker engine answers; starting our own dockerd")
        engine = engines.acquire_dockerd(lab_id)
    return engine


def _import_images(engine: engines.Engine, prepared: Prepared) -> None:
    engines.ensure_image(engine, prepared.job_image, Path(prepared.job_tar))
    engines.ensure_image(engine, prepared.binfmt_image, Path(prepared.binfmt_tar))


def _ready_then_seed(server: ForgejoServer, admin: Future[None], sources: Mapping[str, Path] | None,
                     refs: Mapping[str, set[str]] | None) -> list[Seeded]:
    """Seed every stand-in (and the user's copies), tagged as the scenarios reference them: placed on
    disk at once, adopted once Forgejo answers with the admin's token (created here, over the API)."""
    merged = {**stand_in_sources(), **(sources or {})}
    try:
        refs = {**refs_from_uses(u for s in load_all() for u in s.uses()), **(refs or {})}
        placed = place(merged, refs, server.work / "data" / "repos")
        server.wait_ready()
        admin.result()
        token = server.create_token()
        adopt(ForgejoClient(server.url, token, trust_env=False), placed)
        return placed
    except HarnessError:
        raise
    except Exception as exc:  # git, file or HTTP failure while seeding: name it
        raise LabError(f"seeding actions failed: {type(exc).__name__}: {exc}") from exc
