"""The phases of a lab boot, overlapped where they allow it (:func:`boot` runs them).

Forgejo's schema, admin and the runners' registrations need only the database: they run while our
dockerd starts. Forgejo starts on the address job containers reach (the default bridge) as soon as
that is known; the actions are seeded and the job images imported off the runners' critical path.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError, LabError
from harness.forgejo.client import ForgejoClient
from harness.lab import engine as engines
from harness.lab import firewall
from harness.lab.forgejo import ForgejoServer, ZombieSettings, free_port
from harness.lab.lab import Lab, RunnerSpec, lab_dir_for, release_unhandled
from harness.lab.prepare import BUILDKIT_CHANGES, Prepared
from harness.lab.seed import Seeded, adopt, place, refs_from_uses, stand_in_sources
from harness.runners.binaries import Binary
from harness.runners.process import LabRunner, labels_for
from harness.scenarios import load_all

Notify = Callable[[str], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootOptions:
    """How to boot: runner capacity, what to seed, zombie settings, Docker and firewall on or off."""

    capacity: int = 2
    seed_sources: Mapping[str, Path] | None = None
    seed_refs: Mapping[str, set[str]] | None = None
    zombie: ZombieSettings = field(default_factory=ZombieSettings)
    use_docker: bool = True
    confine: bool = True
    actions_url: str | None = None  # DEFAULT_ACTIONS_URL: a user's mirror; nothing is seeded then


class Boot:
    """One boot in progress; :attr:`lab` holds everything started so far (for the clean-up of a failure)."""

    def __init__(self, lab_id: str, directory: Path, forgejo_binary: Binary, specs: list[RunnerSpec],
                 options: BootOptions, notify: Notify) -> None:
        self.t0 = time.monotonic()
        self.specs, self.options, self.notify = specs, options, notify
        self.pool = ThreadPoolExecutor(max_workers=8)
        prepared = Prepared.load()
        if options.use_docker and prepared is None:
            raise LabError("the lab is not prepared (no job image); run: python -m harness lab prepare")
        # the address (the bridge, where job containers reach the host) is set once the engine answers
        server = ForgejoServer(forgejo_binary, directory / "forgejo", "127.0.0.1", 0, lab_id, options.zombie,
                               actions_url=options.actions_url or "self")
        self.lab = Lab(lab_id, directory, server, None, {}, prepared)
        self.engine_future: Future[engines.Engine] | None = None
        self.admin: Future[None] | None = None
        self.identities: dict[str, tuple[str, str, dict[str, str]]] = {}
        self.guess: str | None = None  # docker0's address before the engine answers (None: no docker0 yet)
        self.host = "127.0.0.1"  # where Forgejo and the cache servers listen: the bridge address, once known
        self.seeding: Future[tuple[list[Seeded], float]] | None = None
        self.registrations: dict[str, Future[str]] = {}
        self.pending: list[Future[object]] = []  # plugin copies, cache servers
        self.images: Future[None] | None = None

    @property
    def server(self) -> ForgejoServer:
        """The lab's Forgejo."""
        return self.lab.forgejo

    def run(self) -> Lab:
        """Every phase in order; returns the saved lab."""
        self.start_forgejo_and_engine()
        self.settle_address()
        self.make_runners()
        self.confine()
        self.wait_forgejo()
        self.start_runners()
        return self.finish()

    def phase(self, name: str) -> None:
        """Record when a phase ended (seconds from the start of the boot)."""
        self.lab.boot_phases[name] = time.monotonic() - self.t0

    def start_forgejo_and_engine(self) -> None:
        """Engine start, schema, admin and registrations side by side; Forgejo on docker0 when it exists."""
        if self.options.use_docker:
            self.engine_future = self.pool.submit(_engine, self.lab.id, self.notify)
        self.server.configure()
        self.notify(f"Forgejo {self.server.binary.version}: migrate")
        self.server.migrate()
        self.admin = self.pool.submit(self.server.create_admin)
        job_image = self.lab.prepared.job_image if self.lab.prepared and self.options.use_docker else None
        self.identities = {spec.key: (f"regress-{spec.key}", secrets.token_hex(20),
                                      labels_for(spec.binary.version, job_image, spec.config_name))
                           for spec in self.specs}
        self.registrations = {key: self.pool.submit(self.server.register_runner, name, secret, list(labels.values()))
                              for key, (name, secret, labels) in self.identities.items()}
        # A dockerd reuses an existing docker0 and its address: Forgejo can start on it right away, and
        # the actions are seeded while the engine still starts.
        self.guess = engines.existing_bridge_ip() if self.options.use_docker else "127.0.0.1"
        if self.guess is not None:
            self.server.set_address(self.guess, free_port(self.guess))
            self.server.start()
            self.start_seeding()

    def start_seeding(self) -> None:
        """Seed the actions in the background (placed on disk at once, adopted once Forgejo answers)."""

        admin = self.admin
        assert admin is not None

        def timed() -> tuple[list[Seeded], float]:
            seeded = _ready_then_seed(self.server, admin, self.options.seed_sources, self.options.seed_refs,
                                      with_stand_ins=not self.options.actions_url)
            return seeded, time.monotonic() - self.t0

        self.seeding = self.pool.submit(timed)

    def settle_address(self) -> None:
        """Wait for the engine; (re)start Forgejo on the bridge address when the guess was wrong."""
        self.lab.engine = self.engine_future.result() if self.engine_future else None
        self.host = self.lab.engine.bridge_ip if self.lab.engine else "127.0.0.1"
        if self.guess != self.host:
            if self.seeding is not None:  # what it seeded stays in the database and on disk
                self.seeding.result()
                self.server.stop()
            self.server.set_address(self.host, free_port(self.host))
            self.server.start()

    def make_runners(self) -> None:
        """Each runner's dir, config and cache server; the buildx plugin copied into its HOME."""
        engine, prepared = self.lab.engine, self.lab.prepared
        for spec in self.specs:
            name, secret, labels = self.identities[spec.key]
            runner = LabRunner(
                name=name, binary=spec.binary, dir=self.lab.dir / "runners" / spec.key, instance_url=self.server.url,
                labels=dict(labels), lab_id=self.lab.id, capacity=self.options.capacity, bridge_ip=self.host,
                docker_host=engine.host if engine else None, cache_port=free_port(self.host),
                proxy_port=free_port(self.host), overrides=spec.overrides, without_tools=spec.without_tools,
                env_overrides=dict(spec.env),
                secret=secret,
            )
            runner.prepare()
            if prepared and prepared.buildx and engine:
                self.pending.append(self.pool.submit(copy_buildx, Path(prepared.buildx), runner))
            self.lab.runners[spec.key] = runner
        self.pending += [self.pool.submit(r.start_cache_server) for r in self.lab.runners.values()]

    def confine(self) -> None:
        """The firewall chain for Forgejo's and every cache server's ports."""
        if not self.options.confine:
            return
        ports = [self.server.port] + [p for r in self.lab.runners.values() for p in (r.cache_port, r.proxy_port)]
        if firewall.available():
            engine = self.lab.engine
            self.lab.firewall_rules = firewall.install(self.lab.id, ports, forward=bool(engine and engine.ours))
        else:
            self.lab.firewall_note = "iptables unavailable: ports not confined"

    def wait_forgejo(self) -> None:
        """Forgejo answers; the job images are imported beside the runners' start."""
        version = self.server.wait_ready()
        self.phase("forgejo_ready")
        if self.lab.engine and self.lab.prepared:  # they matter to jobs, not to the runners' start
            self.images = self.pool.submit(_import_images, self.lab.engine, self.lab.prepared)
        self.notify(f"Forgejo {version} answers at {self.server.url}")
        assert self.admin is not None
        self.admin.result()
        if self.seeding is None:
            self.start_seeding()

    def start_runners(self) -> None:
        """Every runner started once its registration and cache server are done; each declares and polls."""
        for key, future in self.registrations.items():
            self.lab.runners[key].registration = future.result()
        for pending in self.pending:
            pending.result()

        def start(runner: LabRunner) -> None:
            runner.create_runner_file()  # it pings Forgejo: only once Forgejo answers
            runner.start()
            runner.wait_online()

        for key, future in [(k, self.pool.submit(start, r)) for k, r in self.lab.runners.items()]:
            future.result()
            self.notify(f"runner {key} polls with labels {', '.join(self.lab.runners[key].labels.values())}")
        self.phase("runners_polling")

    def finish(self) -> Lab:
        """Images and seeding done, Forgejo back to the normal priority, ``lab.json`` written."""
        if self.images is not None:
            self.images.result()
        assert self.seeding is not None
        self.lab.seeded, self.lab.boot_phases["actions_seeded"] = self.seeding.result()
        self.server.unboost()
        self.lab.boot_seconds = time.monotonic() - self.t0
        self.lab.save()
        return self.lab

    def settle(self) -> None:
        """After a failure: let the threads still running end (each is bounded by its budget) and
        take the engine they may have started, so the clean-up sees every process."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        future = self.engine_future
        if self.lab.engine is None and future is not None and not future.cancelled() and future.exception() is None:
            self.lab.engine = future.result()


def copy_buildx(plugin: Path, runner: LabRunner) -> None:
    """A copy (~95 MB), not a link, of the buildx plugin into the runner's HOME: a job may rewrite its
    plugin in place (the real setup-buildx-action installs one), which must not reach the prepared file."""
    target = runner.home / ".docker" / "cli-plugins"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(plugin, target / "docker-buildx")


def _engine(lab_id: str, notify: Notify) -> engines.Engine:
    engine = engines.find_existing()
    if engine is None:
        notify("no Docker engine answers; starting our own dockerd")
        engine = engines.acquire_dockerd(lab_id)
    return engine


def _import_images(engine: engines.Engine, prepared: Prepared) -> None:
    engines.ensure_image(engine, prepared.job_image, Path(prepared.job_tar))
    engines.ensure_image(engine, prepared.binfmt_image, Path(prepared.binfmt_tar))
    if prepared.buildkit_image and prepared.buildkit_tar:
        engines.ensure_image(engine, prepared.buildkit_image, Path(prepared.buildkit_tar), changes=BUILDKIT_CHANGES,
                             alias=prepared.buildkit_tag)


def _ready_then_seed(server: ForgejoServer, admin: Future[None], sources: Mapping[str, Path] | None,
                     refs: Mapping[str, set[str]] | None, *, with_stand_ins: bool = True) -> list[Seeded]:
    """Seed every stand-in (none when the actions come from ``--actions-url``) and the user's copies, tagged
    as the scenarios reference them: placed on disk at once, adopted once Forgejo answers with the admin's
    token (created here, over the API)."""
    merged = {**(stand_in_sources() if with_stand_ins else {}), **(sources or {})}
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
    actions_url: str | None = None,
    notify: Notify = lambda s: None,
) -> Lab:
    """Boot a lab (usable as ``with boot(...) as lab:``, which takes it down on exit).

    On any failure everything already started (Forgejo, runners, cache servers, firewall rules, our
    dockerd when no other lab uses it) is stopped before the error propagates; the lab dir is kept
    with the logs the error names (and dockerd's log when it stopped ours).

    Raises:
        LabError: a part did not come up; the message says which and where its log is.
    """
    directory = lab_dir_for(lab_id)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    options = BootOptions(capacity, seed_sources, seed_refs, zombie or ZombieSettings(), use_docker, confine,
                          actions_url)
    run: Boot | None = None
    try:
        run = Boot(lab_id, directory, forgejo_binary, list(specs), options, notify)
        return run.run()
    except BaseException as exc:
        if run is not None:
            run.settle()
        leaks = _abort(run.lab if run else None, lab_id)
        if leaks and isinstance(exc, HarnessError):
            raise LabError(f"{exc}\n(the failed boot's clean-up left: {', '.join(leaks)}; logs in {directory})") \
                from exc
        if leaks:
            log.error("the failed boot of lab %s left: %s", lab_id, ", ".join(leaks))
        raise
    finally:
        if run is not None:
            run.pool.shutdown(wait=False, cancel_futures=True)


def _abort(lab: Lab | None, lab_id: str) -> list[str]:
    """The clean-up of a failed boot (the dir stays: its logs explain the failure); what is left."""
    try:
        if lab is not None:
            return lab.down(keep_dir=True)
        return release_unhandled(lab_id)
    except Exception as exc:  # the boot's own error matters more; name this one beside it
        log.exception("clean-up of the failed boot of lab %s", lab_id)
        return [f"(clean-up failed: {type(exc).__name__}: {exc})"]
