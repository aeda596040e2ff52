"""A lab runner: one forgejo-runner daemon per version (and config), registered offline.

Each has its own dir (``.runner``, config, ``HOME``, ``DOCKER_CONFIG``, workdir, cache store), its
own cache server started from its own binary (bound by firewall rules the lab adds), stdout and
stderr captured from the first line, and a PATH with ``git`` and ``node``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    pid: int | None = None
    cache_pid: int | None = None
    secret: str = ""
    cache_secret: str = ""
    starts: int = 0

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
        self.cache_pid = procs.spawn([str(self.binary.path), "-c", str(self.dir / "cache-server.yaml"), "cache-server"],
                                     log_file=self.cache_log_file, lab_id=self.lab_id, env=self._env(), cwd=self.dir)
        import socket

        def probe() -> bool:
            if not procs.alive(self.cache_pid):
                raise LabError(f"cache server of {self.name} exited; log {self.cache_log_file}: "
                               + self.cache_log_file.read_text(errors="replace")[-400:])
            with socket.socket() as sock:
                sock.settimeout(0.5)
                return sock.connect_ex((self.bridge_ip, self.cache_port)) == 0

        wait_for(f"the cache server of runner {self.name} on {self.bridge_ip}:{self.cache_port}",
                 "cache_server_ready", probe, bool, describe=lambda v: "port closed",
                 evidence=str(self.cache_log_file), wait=adaptive_wait(fast=0.05, slow=0.1))

    def start(self) -> None:
        """Start the daemon detached; a line marks each start in its log."""
        self.starts += 1
        with self.log_file.open("a") as out:
            out.write(f"=== regress: daemon start #{self.starts} ===\n")
        self.pid = procs.spawn([str(self.binary.path), "-c", str(self.config_file), "daemon"],
                               log_file=self.log_file, lab_id=self.lab_id, env=self._env(), cwd=self.dir)

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
        """Send a signal to the daemon (runner control)."""
        if not procs.alive(self.pid):
            raise LabError(f"runner {self.name} is not running (pid {self.pid})")
        assert self.pid is not None
        os.kill(self.pid, sig)

    def stop(self) -> str:
        """Graceful stop: SIGTERM, SIGKILL after ``runner_stop``."""
        return procs.stop(self.pid, budget=BUDGETS.runner_stop)

    def stop_cache_server(self) -> str:
        """Stop the cache server."""
        return procs.stop(self.cache_pid, budget=BUDGETS.runner_stop)

    def restart(self) -> None:
        """Stop (if alive) and start again, waiting until it polls."""
        if procs.alive(self.pid):
            assert self.pid is not None
            os.kill(self.pid, signal.SIGCONT)
            self.stop()
        self.start()
        self.wait_online()

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
            "cache_server": {"pid": self.cache_pid, "port": self.cache_port, "proxy_port": self.proxy_port,
                             "dir": str(self.cache_dir), "log": str(self.cache_log_file)},
            "workdir": str(self.workdir),
            "home": str(self.home),
            "config": str(self.config_file),
            "overrides": dict(self.overrides),
            "env_overrides": dict(self.env_overrides),
            "without_tools": list(self.without_tools),
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
