"""Replay tier: run_cell end to end over the loopback replay server, with a fake lab runner beside it.

The fake lab runner is a real sleeping process (so the CPU sampler and stall capture have a pid) with a
log file the test writes the recorded runner log into, as a runner would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from replay_server import JOB_VIEW, Fault, load_exchanges, load_meta, scenario_dir, small_budgets

from harness import cell as cell_mod
from harness import cell_bundle, classify
from harness.bundle_class import classify_bundle
from harness.cell import run_cell
from harness.forgejo.client import ForgejoClient
from harness.forgejo.transcript import Transcript
from harness.forgejo.web import WebSession
from harness.observe import observers as obs_mod
from harness.outcome import Outcome
from harness.runners.binaries import Binary
from harness.scenarios import load
from harness.target import RunnerHandle, Target
from harness.versions import Version

TOKEN = "tok-canary-123456"
SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "cell-scenarios"


@dataclass
class FakeLabRunner:
    """What the observers read of a lab runner; ``pid`` is a real process of ours."""

    root: Path
    name: str = "regress-12.1.2"
    pid: int | None = None
    cache_pid: int | None = None
    restarted: int = 0
    without_tools: tuple[str, ...] = ()
    overrides: dict[str, object] = field(default_factory=dict)
    env_overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sub in ("work", "cache", "home", "dir"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        self.config_file.write_text("runner:\n  capacity: 2\n")

    @property
    def log_file(self) -> Path:
        return self.root / "runner.log"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def dir(self) -> Path:
        return self.root / "dir"

    def restart(self) -> None:
        self.restarted += 1

    @property
    def binary(self) -> Binary:
        return Binary("forgejo-runner", Version(12, 1, 2), self.root / "forgejo-runner", "bin-dir")

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}

    def write_log(self, text: str, delay: float = 0.0) -> threading.Thread:
        def write() -> None:
            time.sleep(delay)
            with self.log_file.open("a") as f:
                f.write(text)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def fake_runner(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    runner = FakeLabRunner(tmp_path / "runner", pid=proc.pid)
    yield runner
    proc.kill()
    proc.wait()


@pytest.fixture(autouse=True)
def fast_watch(monkeypatch):
    monkeypatch.setattr(cell_mod, "LAB_WATCH_INTERVAL", 0.05)
    monkeypatch.setattr(cell_mod, "WATCH_INTERVAL", 0.05)


def _target(server, budgets=None) -> Target:
    transcript = Transcript()
    client = ForgejoClient(server.url, TOKEN, transcript=transcript, budgets=budgets or small_budgets())
    version = client.server_version()
    web = WebSession(server.url, version, transcript=transcript)
    web.login("regress", "pw-canary-654321")
    return Target(server.url, client, web, "regress", version, {}, transcript)


def _handle(runner: FakeLabRunner | None, version: str = "12.1.2") -> RunnerHandle:
    return RunnerHandle(version, Version.parse(version), {"native": "native:host"}, runner)  # type: ignore[arg-type]


def _recorded(monkeypatch, forgejo: str, runner: str, name: str) -> tuple[list[dict], dict]:
    """The recorded exchanges (the single-file commit also answering the multi-file contents API) and meta."""
    directory = scenario_dir(forgejo, runner, name)
    meta = load_meta(directory)
    monkeypatch.setattr(cell_mod, "repo_name", lambda scenario, key: meta["repo"].split("/")[1])
    exchanges = load_exchanges(directory)
    for record in list(exchanges):
        if record["method"] == "POST" and "/contents/" in record["url_path"]:
            exchanges.append({**record, "url_path": record["url_path"].split("/contents/")[0] + "/contents"})
    return exchanges, meta


def _runner_log(forgejo: str, runner: str, name: str) -> str:
    return (scenario_dir(forgejo, runner, name) / "runner.log").read_text()


def _deletes(server) -> list:
    return [s for s in server.seen if s.method == "DELETE"]


def test_a_passing_cell_with_every_lab_observer(replay, monkeypatch, fake_runner, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "native-ok")
    server = replay(directory)
    fake_runner.log_file.write_text(_runner_log("11.0.15", "12.1.2", "native-ok"))  # the runner logged it all ...
    monkeypatch.setattr(obs_mod.runner_log, "size", lambda path: 0)  # ... after the cell began (offset 0)
    result = run_cell(_target(server), load("native-ok", SCENARIOS), _handle(fake_runner), tmp_path / "bundle",
                      evidence="always", budgets=small_budgets())
    assert result.outcome is Outcome.PASS, result.error or result.verdict.table()
    obs = result.observations
    assert set(obs["store_growth_mb"]) == {"cache_server", "tool_cache", "action_clones", "home"}
    assert "setup" in obs["cpu"] or obs["cpu"] == {}
    assert 0 < obs["requests"]["push_to_done_seen"] <= obs["requests"]["total"] and obs["requests"]["per_second"] > 0
    assert obs["runner_from_log"]["version"] == "12.1.2"
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["outcome"] == "pass"
    for name in manifest["files"]:  # every file the manifest lists exists
        assert (tmp_path / "bundle" / name).exists(), name
    assert {"job-view.json", "job.log", "runner.log", "tasks.json", "verdict.json"} <= set(manifest["files"])
    assert "Cleaning up container" in (tmp_path / "bundle" / "runner.log").read_text()
    exchanges = [json.loads(line) for line in (tmp_path / "bundle" / "api-transcript.jsonl").read_text().splitlines()]
    assert exchanges and all("native-ok-r12-f11-1795808947" in json.dumps(e) for e in exchanges)  # this cell's only
    assert len(_deletes(server)) == 1 and fake_runner.restarted == 0
    assert result.classification is None and result.to_json()["class"] is None
    assert (tmp_path / "bundle" / "repro.md").read_text().splitlines()[0] == "class: none — every expectation held"


def test_job_done_timeout_keeps_the_last_view_cancels_and_judges(replay, monkeypatch, fake_runner, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "killed-after-last-step")
    server = replay(directory)
    result = run_cell(_target(server), load("killed-after-last-step", SCENARIOS), _handle(fake_runner),
                      tmp_path / "bundle", budgets=small_budgets(job_done=1.0))
    assert result.outcome is Outcome.FAIL, result.error
    assert "gave-up-waiting" in result.verdict.rules() and "job-not-done" in result.verdict.rules()
    assert result.observations["timeout"]["budget"] == "job_done"
    assert server.requests("POST", r"/actions/runs/1/cancel$"), "the run was not cancelled"
    bundle = tmp_path / "bundle"
    assert (bundle / "job-view.json").is_file() and (bundle / "tasks.json").is_file()
    assert json.loads((bundle / "manifest.json").read_text())["outcome"] == "fail"
    assert result.classification.name == classify.GAVE_UP_WAITING
    assert (bundle / "repro.md").read_text().splitlines()[0].startswith("class: gave-up-waiting — the job was still")
    record = result.to_json()
    assert record["class"] == "gave-up-waiting" and record["class_evidence"]["lines"]
    assert classify_bundle(bundle) == result.classification  # from the bundle's files alone


def test_never_picked_with_the_runner_running_is_a_runner_failure(replay, monkeypatch, fake_runner, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "never-picked")
    server = replay(directory)
    result = run_cell(_target(server), load("never-picked", SCENARIOS), _handle(fake_runner), tmp_path / "b",
                      budgets=small_budgets(pickup=1.0))
    assert result.outcome is Outcome.FAIL, result.error
    assert "never-picked" in result.verdict.rules()
    assert server.requests("POST", r"/actions/runs/1/cancel$")
    assert result.classification.name == classify.NEVER_PICKED


def test_never_picked_by_a_runner_we_cannot_see_is_inconclusive_and_the_repo_kept(replay, monkeypatch, tmp_path):
    directory, meta = _recorded(monkeypatch, "11.0.15", "12.1.2", "never-picked")
    server = replay(directory)
    result = run_cell(_target(server), load("never-picked", SCENARIOS), _handle(None), tmp_path / "b",
                      budgets=small_budgets(pickup=1.0))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "cannot see whether that runner is online" in result.error and "pickup=1s" in result.error
    assert not _deletes(server) and result.observations["repo_kept"] == meta["repo"]
    assert result.classification.name == classify.INCONCLUSIVE
    assert (tmp_path / "b" / "manifest.json").is_file()


def test_a_persistent_502_on_repo_creation_is_inconclusive_never_a_failure(replay, monkeypatch, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "native-ok")
    server = replay(directory, faults=[Fault(r"/api/v1/user/repos$", status=502, nth=n) for n in range(1, 50)])
    budgets = replace(small_budgets(), **({"api_write": 1.0} if hasattr(small_budgets(), "api_write") else {}))
    result = run_cell(_target(server, budgets), load("native-ok", SCENARIOS), _handle(None), tmp_path / "b",
                      budgets=budgets)
    assert result.outcome is Outcome.INCONCLUSIVE and "502" in result.error
    assert result.verdict is None and not _deletes(server)
    assert result.classification.name == classify.INCONCLUSIVE and "502" in result.classification.why


def test_bundle_writing_that_raises_never_stops_the_clean_up(replay, monkeypatch, fake_runner, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "native-ok")
    server = replay(directory)

    def broken(path, run):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cell_bundle, "write_bundle", broken)
    result = run_cell(_target(server), load("native-ok", SCENARIOS), _handle(fake_runner), tmp_path / "b",
                      evidence="always", budgets=small_budgets())
    assert result.outcome is Outcome.INCONCLUSIVE and "disk on fire" in result.error
    assert not _deletes(server), "an inconclusive cell keeps its repo for a person to look at"
    assert result.observations["repo_kept"]


def test_an_existing_runner_of_another_version_makes_the_cell_inconclusive(replay, monkeypatch, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "native-ok")
    server = replay(directory)
    result = run_cell(_target(server), load("native-ok", SCENARIOS), _handle(None, "11.3.1"), tmp_path / "b",
                      budgets=small_budgets())
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "version 12.1.2" in result.error and "claims version 11.3.1" in result.error


def test_a_stalled_task_is_captured_and_the_runner_restarted(replay, monkeypatch, fake_runner, tmp_path):
    exchanges, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "killed-after-last-step")
    for record in exchanges:  # the task stays running with the same updated_at: the runner went silent
        if record["url_path"].endswith("/actions/tasks"):
            for task in record["response_body"]["workflow_runs"]:
                task["status"] = "running"
                task["updated_at"] = "2026-11-27T19:55:00Z"
    server = replay(exchanges)
    captured = []
    monkeypatch.setattr(obs_mod, "capture_lab_runner", lambda pid, log: captured.append(pid) or {
        "state": "stopped", "goroutine_dump": "goroutine 1 [running]:"})
    result = run_cell(_target(server), load("killed-after-last-step", SCENARIOS), _handle(fake_runner),
                      tmp_path / "b", evidence="always", budgets=small_budgets(runner_stalled=0.3, job_done=3.0))
    assert "runner-stalled" in result.verdict.rules(), result.verdict.table()
    assert captured == [fake_runner.pid] and fake_runner.restarted == 1
    assert (tmp_path / "b" / "goroutines.txt").read_text().startswith("goroutine 1")
    assert result.observations["stall"]["runner_state"] == "stopped"
    assert result.classification.name == classify.GAVE_UP_WAITING  # job_done ran out first (3 s, before the stop)
    assert (tmp_path / "b" / "repro.md").read_text().startswith("class: gave-up-waiting — ")


def test_runner_control_fires_on_this_jobs_line_in_the_runner_log(replay, monkeypatch, fake_runner, tmp_path):
    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "native-post")
    slow_views = [Fault(JOB_VIEW.pattern, nth=n, delay=0.3) for n in range(2, 6)]  # the job runs ≥ 1 s
    server = replay(directory, faults=slow_views)
    sent = []
    monkeypatch.setattr(obs_mod.control, "send", lambda runner, sig: sent.append((runner.name, sig)))
    fake_runner.write_log("[other/test] ⭐ Run Post actions/post-demo@main\n", delay=0.2)
    fake_runner.write_log("[native-post/test] ⭐ Run Post actions/post-demo@main\n", delay=0.5)
    result = run_cell(_target(server), load("native-post", SCENARIOS), _handle(fake_runner), tmp_path / "b",
                      budgets=small_budgets(trigger_reported=3.0))
    assert sent == [("regress-12.1.2", "STOP")]
    assert result.observations["runner_control"]["server_showed_trigger"] is True
    assert result.observations["runner_control"]["line"].startswith("[native-post/test]")
    assert fake_runner.restarted == 1


def test_a_restart_that_fails_after_the_evidence_is_said_not_raised(replay, monkeypatch, fake_runner, tmp_path):
    from harness.errors import LabError

    directory, _ = _recorded(monkeypatch, "11.0.15", "12.1.2", "native-post")
    server = replay(directory, faults=[Fault(JOB_VIEW.pattern, nth=n, delay=0.3) for n in range(2, 6)])
    monkeypatch.setattr(obs_mod.control, "send", lambda runner, sig: None)

    def broken_restart() -> None:
        raise LabError("runner regress-12.1.2 did not declare within runner_online")

    monkeypatch.setattr(fake_runner, "restart", broken_restart)
    fake_runner.write_log("[native-post/test] ⭐ Run Post actions/post-demo@main\n", delay=0.5)
    result = run_cell(_target(server), load("native-post", SCENARIOS), _handle(fake_runner), tmp_path / "b",
                      evidence="always", budgets=small_budgets(trigger_reported=3.0))
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "clean-up after the cell failed: runner regress-12.1.2 did not declare" in result.error
    assert result.classification.name == classify.INCONCLUSIVE
    assert (tmp_path / "b" / "manifest.json").is_file()
