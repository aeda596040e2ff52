"""A lab runner: one forgejo-runner daemon per version (and config), registered offline.

Each has its own dir (``.runner``, config, ``HOME``, ``DOCKER_CONFIG``, workdir, cache store), its
own cache server started from its own binary (bound by firewall rules the lab adds), stdout and
stderr captured from the first line, and a PATH with ``git`` and ``node``.

The pids of the daemon and its cache server live in one place every process reads: ``pids.json``
in the runner's dir (pid and kernel start time of each), rewritten at every start. ``pid`` and
``cache_pid`` re-read it when it changed, so a runner restarted by one pytest-xdist worker is seen
by every other; a signal goes only to a pid just verified to be that runner's process.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from filelock import FileLock

from harness import procs
from harness.budgets import BUDGETS
from harness.errors import LabError
from harness.redact import register_secret
from harness.runners.binaries import Binary
from harness.versions import Version
from harness.waiting import adaptive_wait, wait_for

DECLARED = re.compile(r"declared successfully")
POLLING = re.compile(r"\[poller \d+\] launched")


def labels_for(version: Version, job_image: str | None, config_name: str = "") -> dict[str, str]:
    """Label kind → full label, unique per version (and config axis)."""
    base = f"regress-{version}" + (f"-{config_name}" if config_name else "")
    labels = {"native": f"{base}-native:host"}
    if job_image:
        labels["docker"] = f"{base}-docker:docker://{job_image}"
    return labels


def label_name(label: str) -> str:
    """The ``runs-on`` name of a full label (``a:host`` → ``a``)."""
    return label.split(":", 1)[0]


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


_SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when there


@dataclass(frozen=True)
class ProcessRecord:
    """A process the lab started: its pid and its kernel start time (a pid alone may be reused)."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        """The record of a process just started (0.0 as start time when it is already gone)."""
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return cls(pid, 0.0)

    @classmethod
    def parse(cls, data: Any) -> ProcessRecord | None:
        """From ``{"pid": …, "create_time": …}``; None for anything else."""
        if isinstance(data, dict) and isinstance(data.get("pid"), int):
            return cls(data["pid"], float(data.get("create_time") or 0.0))
        return None


def check_process(record: ProcessRecord | None, cmdline: list[str], what: str) -> int:
    """The pid of ``record`` once verified to be ``what``: alive, started when recorded, running ``cmdline``.

    Raises:
        LabError: never started, gone, or the pid now belongs to another process (reused).
    """
    if record is None:
        raise LabError(f"{what} has no recorded pid (it was never started)")
    try:
        proc = psutil.Process(record.pid)
        status, started, actual = proc.status(), proc.create_time(), proc.cmdline()
    except psutil.Error:
        raise LabError(f"{what} is not running (pid {record.pid} is gone)") from None
    if status == psutil.STATUS_ZOMBIE:
        raise LabError(f"{what} is not running (pid {record.pid} exited)")
    if abs(started - record.create_time) > 0.05:
        raise LabError(f"pid {record.pid} is no longer {what}: that process started at {started:.2f}, {what} at "
                       f"{record.create_time:.2f} (the pid was reused); nothing was signalled")
    if cmdline not in (actual, actual[1:]):  # actual[1:]: a script binary shows its interpreter first
        raise LabError(f"pid {record.pid} is not {what}: it runs {' '.join(actual)!r}, expected "
                       f"{' '.join(cmdline)!r}; nothing was signalled")
    return record.pid
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@dataclass
class LabRunner:
    """One runner daemon of the lab."""

    name: str
    binary: Binary
    dir: Path
    instance_url: str
    labels: dict[str, str]
    lab_id: str
    capacity: int
    bridge_ip: str
    docker_host: str | None
    cache_port: int
    proxy_port: int
    overrides: Mapping[str, Any] = field(default_factory=dict)
    env_overrides: Mapping[str, str | None] = field(default_factory=dict)
    without_tools: tuple[str, ...] = ()
    daemon: ProcessRecord | None = None
    cache_server: ProcessRecord | None = None
    secret: str = ""
    cache_secret: str = ""
    starts: int = 0
    registration: str = ""  # the runner UUID Forgejo answered at registration (when this process registered it)
    fault_proxy_port: int = 0  # a fault cell's runner talks to Forgejo through the fault proxy on this port
    _pids_seen: tuple[int, int] = field(default=(0, 0), init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """``12.1.2``, ``12.1.2-cacheoff`` or ``12.1.2-p1a2b3c``: the runner's id in the lab."""
        return self.name.removeprefix("regress-")

    def runs_on(self, kind: str) -> str | None:
        """The ``runs-on`` value of its label of ``kind`` (``native`` or ``docker``); None when it has none."""
        label = self.labels.get(kind)
        return label_name(label) if label else None

    @property
    def pid(self) -> int | None:
        """The daemon's pid, as last saved by any process (re-read from ``pids.json`` when it changed)."""
        self.refresh()
        return self.daemon.pid if self.daemon else None

    @property
    def cache_pid(self) -> int | None:
        """The cache server's pid, as last saved by any process."""
        self.refresh()
        return self.cache_server.pid if self.cache_server else None

    @property
    def pid_file(self) -> Path:
        """``pids.json``: pid and start time of the daemon and the cache server, and the start count."""
        return self.dir / "pids.json"

    def refresh(self) -> None:
        """Load ``pids.json`` when another process (or this one) rewrote it since the last look."""
        try:
            st = self.pid_file.stat()
        except OSError:
            return
        if (st.st_ino, st.st_mtime_ns) == self._pids_seen:
            return
        try:
            data = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return  # replaced meanwhile: the next look reads the new one
        self.daemon = ProcessRecord.parse(data.get("daemon"))
        self.cache_server = ProcessRecord.parse(data.get("cache_server"))
        self.starts = int(data.get("starts") or 0)
        self._pids_seen = (st.st_ino, st.st_mtime_ns)

    def _save_pids(self) -> None:
        data = {"daemon": self.daemon and self.daemon.__dict__, "cache_server": self.cache_server and
                self.cache_server.__dict__, "starts": self.starts}
        tmp = self.pid_file.with_name(f".pids.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.pid_file)
        st = self.pid_file.stat()
        self._pids_seen = (st.st_ino, st.st_mtime_ns)

    def daemon_cmd(self) -> list[str]:
        """The daemon's command line."""
        return [str(self.binary.path), "-c", str(self.config_file), "daemon"]

    def cache_server_cmd(self) -> list[str]:
        """The cache server's command line."""
        return [str(self.binary.path), "-c", str(self.dir / "cache-server.yaml"), "cache-server"]

    def verified_pid(self) -> int:
        """The daemon's pid, re-read and verified (alive, started when recorded, this runner's command line).

        Raises:
            LabError: not running, or the pid belongs to another process now.
        """
        self.refresh()
        return check_process(self.daemon, self.daemon_cmd(), f"runner {self.name}'s daemon")

    @property
    def version(self) -> Version:
        """The runner's version."""
        return self.binary.version

    @property
    def config_file(self) -> Path:
        """The runner's config.yaml."""
        return self.dir / "config.yaml"

    @property
    def log_file(self) -> Path:
        """stdout+stderr of the daemon, from its first line."""
        return self.dir / "runner.log"

    @property
    def cache_log_file(self) -> Path:
        """stdout+stderr of its cache server."""
        return self.dir / "cache-server.log"

    @property
    def workdir(self) -> Path:
        """``host.workdir_parent``: host workspaces and the action cache."""
        return self.dir / "work"

    @property
    def cache_dir(self) -> Path:
        """The cache server's store."""
        return self.dir / "cache"

    @property
    def home(self) -> Path:
        """The runner's ``HOME`` (the real setup-qemu writes ``~/.docker/.cache`` there)."""
        return self.dir / "home"

    def config(self) -> dict[str, Any]:
        """The runner config (the lab's defaults, then the user's overrides)."""
        cache_url = f"http://{self.bridge_ip}:{self.cache_port}/"
        base: dict[str, Any] = {
            "log": {"level": "debug", "job_level": "info"},
            "runner": {
                "file": str(self.dir / ".runner"),
                "capacity": self.capacity,
                "envs": {},
                "env_file": str(self.dir / ".env"),
                "timeout": "3h",
                "shutdown_timeout": "0s",
                "insecure": False,
                "fetch_timeout": "5s",
                "fetch_interval": "1s",
                "report_interval": "1s",
                "labels": list(self.labels.values()),
            },
            "cache": {
                "enabled": True,
                "dir": str(self.cache_dir),
                "host": self.bridge_ip,
                "proxy_port": self.proxy_port,
                "external_server": cache_url,
                "secret": self.cache_secret,
            },
            "container": {
                "network": "",
                "privileged": False,
                "options": f"--label regress.lab={self.lab_id}",
                "docker_host": "-",
                "force_pull": False,
                "valid_volumes": [],
            },
            "host": {"workdir_parent": str(self.workdir)},
        }
        return _deep_merge(base, self.overrides)

    def env(self) -> dict[str, str]:
        """The environment the daemon (and so its host jobs) runs in: its HOME, DOCKER_CONFIG, PATH."""
        return self._env()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGRESS_", "PYTEST_"))}
        path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        for tool in ("git", "node"):
            found = shutil.which(tool)
            if found and str(Path(found).parent) not in path.split(":"):
                path = f"{Path(found).parent}:{path}"
        env.update(PATH=path, HOME=str(self.home), DOCKER_CONFIG=str(self.home / ".docker"))
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        if any(env.get(k) for k in PROXY_VARS):  # the lab's server and caches are never behind a proxy
            for key in ("NO_PROXY", "no_proxy"):
                env[key] = ",".join(filter(None, [env.get(key), self.bridge_ip, "127.0.0.1", "localhost"]))
        if self.without_tools:
            env["PATH"] = str(self.dir / "path")
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def prepare(self) -> None:
        """Dirs, secrets, config, cache-server config and ``.runner`` (create-runner-file)."""
        for d in (self.dir, self.workdir, self.cache_dir, self.home / ".docker"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if self.docker_host is None:
            self.labels.pop("docker", None)
        self.secret = self.secret or secrets.token_hex(20)
        self.cache_secret = self.cache_secret or secrets.token_hex(20)
        register_secret(self.secret)
        register_secret(self.cache_secret)
        if self.without_tools:
            _masked_path(self.dir / "path", os.environ.get("PATH", "/usr/bin:/bin"), self.without_tools)
        self.config_file.write_text(yaml.dump(self.config(), Dumper=_SAFE_DUMPER, sort_keys=False))
        os.chmod(self.config_file, 0o600)
        cache_cfg = {"log": {"level": "info"},
                     "cache": {"dir": str(self.cache_dir), "host": self.bridge_ip, "port": self.cache_port,
                               "secret": self.cache_secret}}
        (self.dir / "cache-server.yaml").write_text(yaml.dump(cache_cfg, Dumper=_SAFE_DUMPER))
        os.chmod(self.dir / "cache-server.yaml", 0o600)
        self.save_state()

    @property
    def state_file(self) -> Path:
        """``runner.json``: :meth:`to_state`, so any process (``lab down`` of a failed boot) can rebuild it."""
        return self.dir / "runner.json"

    def save_state(self) -> None:
        """Write ``runner.json`` (atomically)."""
        tmp = self.state_file.with_name(f".runner.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_state(), indent=2))
        tmp.replace(self.state_file)

    def create_runner_file(self) -> None:
        """``forgejo-runner create-runner-file`` (offline; writes ``.runner``)."""
        proc = subprocess.run(
            [str(self.binary.path), "-c", str(self.config_file), "create-runner-file", "--instance",
             self.instance_url, "--secret", self.secret, "--name", self.name],
            capture_output=True, text=True, timeout=BUDGETS.forgejo_cli, cwd=self.dir, env=self._env(), check=False,
        )
        if proc.returncode != 0 or not (self.dir / ".runner").is_file():
            raise LabError(f"create-runner-file for {self.name} failed (exit {proc.returncode}): "
                           + (proc.stdout + proc.stderr).strip()[-500:])
        os.chmod(self.dir / ".runner", 0o600)

    def start_cache_server(self) -> None:
        """Start this runner's own cache server (its own binary) and wait for its port."""
        if self.cache_pid and procs.alive(self.cache_pid):
            return
        pid = procs.spawn(self.cache_server_cmd(), log_file=self.cache_log_file, lab_id=self.lab_id, env=self._env(),
                          cwd=self.dir)
        self.cache_server = ProcessRecord.of(pid)
        self._save_pids()
        import socket

        def probe() -> bool:
            if not procs.alive(pid):
                raise LabError(f"cache server of {self.name} exited; log {self.cache_log_file}: "
                               + self.cache_log_file.read_text(errors="replace")[-400:])
            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex((self.bridge_ip, self.cache_port)) == 0

        wait_for(f"the cache server of runner {self.name} on {self.bridge_ip}:{self.cache_port}",
                 "cache_server_ready", probe, bool, describe=lambda v: "port closed",
                 evidence=str(self.cache_log_file), wait=adaptive_wait(fast=0.05, slow=0.1))

    def start(self) -> None:
        """Start the daemon detached; a line marks each start in its log; ``pids.json`` gets its pid."""
        self.refresh()
        self.starts += 1
        with self.log_file.open("a") as out:
            out.write(f"=== regress: daemon start #{self.starts} ===\n")
        pid = procs.spawn(self.daemon_cmd(), log_file=self.log_file, lab_id=self.lab_id, env=self._env(), cwd=self.dir)
        self.daemon = ProcessRecord.of(pid)
        self._save_pids()

    def wait_online(self) -> None:
        """Wait for the declare line and a launched poller of the latest start."""

        def probe() -> str:
            alive = procs.alive(self.pid)
            text = self._current_log()  # read after the liveness check: a dead runner's log is complete
            if not alive:
                raise LabError(f"runner {self.name} ({self.version}) exited during start; log {self.log_file}:\n"
                               + "\n".join(text.splitlines()[-8:]))
            return text

        def describe(text: str | None) -> str:
            lines = (text or "").strip().splitlines()
            return f"last runner log line: {lines[-1][:300]}" if lines else "runner log empty"

        wait_for(f"runner {self.name} ({self.version}) to declare and poll", "runner_online", probe,
                 lambda t: bool(DECLARED.search(t) and POLLING.search(t)), describe=describe,
                 evidence=str(self.log_file), wait=adaptive_wait(fast=0.02, slow=0.1))

    def _current_log(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        marker = f"=== regress: daemon start #{self.starts} ==="
        return text[text.rfind(marker):] if marker in text else text

    def signal(self, sig: int) -> None:
        """Send a signal to the daemon (runner control), once its pid is verified to be this runner's.

        Raises:
            LabError: the daemon is not running, or its recorded pid belongs to another process now.
        """
        os.kill(self.verified_pid(), sig)

    def _stop(self, record: ProcessRecord | None, cmdline: list[str], what: str) -> str:
        if record is None or not procs.alive(record.pid):
            return "not running"
        try:
            pid = check_process(record, cmdline, what)
        except LabError as exc:
            return f"not stopped: {exc}"
        return procs.stop(pid, budget=BUDGETS.runner_stop)

    def stop(self) -> str:
        """Graceful stop: SIGTERM (SIGCONT first), SIGKILL after ``runner_stop``; only a verified pid."""
        self.refresh()
        return self._stop(self.daemon, self.daemon_cmd(), f"runner {self.name}'s daemon")

    def stop_cache_server(self) -> str:
        """Stop the cache server (only a verified pid)."""
        self.refresh()
        return self._stop(self.cache_server, self.cache_server_cmd(), f"runner {self.name}'s cache server")

    def restart(self) -> None:
        """Stop (if alive) and start again, waiting until it polls; the cache server is started again
        when it is gone. Serialized between processes; the new pids are in ``pids.json`` for all."""
        with FileLock(str(self.dir / "control.lock")):
            self.refresh()
            self.stop()
            self.start_cache_server()
            self.start()
            self.wait_online()

    def to_state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs to rebuild this handle in another process (no secrets, no pids:
        those are in ``pids.json``)."""
        return {"name": self.name, "binary": str(self.binary.path), "version": str(self.version), "dir": str(self.dir),
                "instance_url": self.instance_url, "labels": dict(self.labels), "lab_id": self.lab_id,
                "capacity": self.capacity, "bridge_ip": self.bridge_ip, "docker_host": self.docker_host,
                "cache_port": self.cache_port, "proxy_port": self.proxy_port, "overrides": dict(self.overrides),
                "env_overrides": dict(self.env_overrides), "without_tools": list(self.without_tools),
                "registration": self.registration, "fault_proxy_port": self.fault_proxy_port}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> LabRunner:
        """Rebuild a handle saved by :meth:`to_state`; its pids come from ``pids.json``.

        Raises:
            KeyError, ValueError, TypeError: a corrupt state (the caller names the file).
        """
        runner = cls(
            name=data["name"], binary=Binary("forgejo-runner", Version.key(data["version"]), Path(data["binary"]),
                                             "lab.json"),
            dir=Path(data["dir"]), instance_url=data["instance_url"], labels=dict(data["labels"]),
            lab_id=data["lab_id"], capacity=int(data["capacity"]), bridge_ip=data["bridge_ip"],
            docker_host=data["docker_host"], cache_port=int(data["cache_port"]), proxy_port=int(data["proxy_port"]),
            overrides=dict(data.get("overrides") or {}), env_overrides=dict(data.get("env_overrides") or {}),
            without_tools=tuple(data.get("without_tools") or ()), registration=data.get("registration") or "",
            fault_proxy_port=int(data.get("fault_proxy_port") or 0),
        )
        runner.refresh()
        return runner

    def to_json(self) -> dict[str, Any]:
        """What ``lab status`` shows (no secrets)."""
        return {
            "name": self.name,
            "version": str(self.version),
            "binary": str(self.binary.path),
            "labels": self.labels,
            "dir": str(self.dir),
            "log": str(self.log_file),
            "pid": self.pid,
            "alive": procs.alive(self.pid),
            "starts": self.starts,
            "pid_file": str(self.pid_file),
            "cache_server": {"pid": self.cache_pid, "port": self.cache_port, "proxy_port": self.proxy_port,
                             "dir": str(self.cache_dir), "log": str(self.cache_log_file)},
            "workdir": str(self.workdir),
            "home": str(self.home),
            "config": str(self.config_file),
            "overrides": dict(self.overrides),
            "env_overrides": dict(self.env_overrides),
            "without_tools": list(self.without_tools),
            **({"fault_proxy": {"url": self.instance_url, "port": self.fault_proxy_port}} if self.fault_proxy_port
               else {}),
        }


def _masked_path(target: Path, path: str, without: tuple[str, ...]) -> None:
    """A single PATH dir of symlinks to every executable of ``path`` except ``without``.

    This is how a runner environment lacks e.g. ``git`` while keeping ``sh`` and ``node``.
    """
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for directory in path.split(":"):
        d = Path(directory)
        if not d.is_dir():
            continue
        for entry in d.iterdir():
            if entry.name in without or entry.name.startswith(tuple(f"{t}-" for t in without)):
                continue
            link = target / entry.name
            if not link.exists() and os.access(entry, os.X_OK):
                link.symlink_to(entry)
