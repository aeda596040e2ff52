"""Bad input for the lab ends with a clear error naming what was awaited and where the log is."""

from __future__ import annotations

import base64
import os
import socket
import stat
from pathlib import Path

import psutil
import pytest

from harness.errors import LabError
from harness.lab import engine, prepare
from harness.lab.forgejo import BOOST_NICE, ForgejoServer, ZombieSettings
from harness.runners.binaries import Binary
from harness.runners.process import LabRunner
from harness.versions import Version
from harness.waiting import wait_for


def fake_binary(tmp_path: Path, name: str, script: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def server(tmp_path, script, port=0):
    binary = Binary("forgejo", Version(13, 0, 5), fake_binary(tmp_path, "forgejo-13.0.5", script), "test")
    return ForgejoServer(binary, tmp_path / "work", "127.0.0.1", port, "errtest", ZombieSettings())


def test_forgejo_that_exits_during_start_names_its_log(tmp_path):
    srv = server(tmp_path, 'echo "fatal: something broke at start"; exit 1\n')
    srv.configure()
    srv.start()
    with pytest.raises(LabError) as info:
        srv.wait_ready()
    assert "forgejo web exited during start" in str(info.value)
    assert str(srv.log_file) in str(info.value) and "something broke at start" in str(info.value)


def test_a_taken_port_is_refused_before_starting(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        srv = server(tmp_path, "exit 0\n", port=port)
        srv.configure()
        with pytest.raises(LabError, match=f"port {port} on 127.0.0.1 is already taken"):
            srv.start()


def test_failing_cli_call_shows_its_output(tmp_path):
    srv = server(tmp_path, 'echo "migration 42 failed: disk full" >&2; exit 3\n')
    srv.configure()
    with pytest.raises(LabError, match=r"forgejo migrate failed \(exit 3\):\nmigration 42 failed: disk full"):
        srv.migrate()


def test_runner_that_exits_during_start_names_its_log(tmp_path):
    binary = Binary("forgejo-runner", Version(12, 1, 2),
                    fake_binary(tmp_path, "forgejo-runner-12.1.2", 'echo "level=fatal msg=\\"no .runner\\""; exit 1\n'),
                    "test")
    runner = LabRunner("r", binary, tmp_path / "runner", "http://127.0.0.1:9", {"native": "x:host"}, "errtest", 1,
                       "127.0.0.1", None, 1, 2)
    runner.prepare()
    runner.start()
    with pytest.raises(LabError) as info:
        runner.wait_online()
    assert "runner r (12.1.2) exited during start" in str(info.value)
    assert str(runner.log_file) in str(info.value) and "no .runner" in str(info.value)


def test_no_dockerd_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(engine.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match=r"dockerd is not installed; run: apt-get install docker\.io"):
        engine.start_dockerd(tmp_path)


def test_job_image_without_debootstrap(monkeypatch, tmp_path):
    monkeypatch.setattr(prepare.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="debootstrap is not installed"):
        prepare.prepare(tmp_path, with_buildx=False, notify=lambda s: None)


def test_prepare_step_failure_names_the_step_and_log(tmp_path):
    with pytest.raises(LabError) as info:
        prepare._run(["sh", "-c", "echo 'E: Unable to locate package nodejs'; exit 100"], "debootstrap of bookworm",
                     tmp_path / "prepare.log")
    text = str(info.value)
    assert "debootstrap of bookworm failed (exit 100)" in text and str(tmp_path / "prepare.log") in text
    assert "Unable to locate package nodejs" in text


def _server_at(tmp_path, httpserver) -> ForgejoServer:
    srv = server(tmp_path, "exit 0\n", port=httpserver.port)
    srv.configure()
    srv.password_file.write_text("pw-canary-123\n")
    return srv


def test_admin_token_is_asked_with_the_password_and_kept_private(tmp_path, httpserver):
    token = "a" * 40
    expected = "Basic " + base64.b64encode(b"regress-admin:pw-canary-123").decode()
    httpserver.expect_request("/api/v1/users/regress-admin/tokens", method="POST",
                              headers={"Authorization": expected}).respond_with_json({"sha1": token}, status=201)
    srv = _server_at(tmp_path, httpserver)
    assert srv.create_token() == token
    assert srv.token_file.read_text() == token + "\n"
    assert stat.S_IMODE(srv.token_file.stat().st_mode) == 0o600
    assert httpserver.log[0][0].get_json()["scopes"] == ["all"]


@pytest.mark.parametrize(("status", "body"), [(401, {"message": "user's password is invalid"}), (201, {"sha1": ""})])
def test_admin_token_refused_names_the_status_and_log(tmp_path, httpserver, status, body):
    httpserver.expect_request("/api/v1/users/regress-admin/tokens", method="POST").respond_with_json(body, status=status)
    srv = _server_at(tmp_path, httpserver)
    with pytest.raises(LabError, match=f"answered HTTP {status} without a token; Forgejo's log: {srv.log_file}"):
        srv.create_token()
    assert not srv.token_file.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a process's priority needs root")
def test_forgejo_starts_boosted_and_is_set_back(tmp_path):
    srv = server(tmp_path, "exec sleep 30\n")
    srv.configure()
    srv.start()
    try:
        wait_for("the fake forgejo to exec sleep", "forgejo_ready",
                 lambda: psutil.Process(srv.pid).name(), lambda name: name == "sleep", wait=lambda s: 0.02)
        assert psutil.Process(srv.pid).nice() == BOOST_NICE
        srv.unboost()
        assert psutil.Process(srv.pid).nice() == 0
    finally:
        srv.stop()


def test_forgejo_started_without_boost_keeps_the_normal_priority(tmp_path):
    srv = server(tmp_path, "exec sleep 30\n")
    srv.configure()
    srv.start(boost=False)
    try:
        assert psutil.Process(srv.pid).nice() == 0
    finally:
        srv.stop()


def test_registration_returns_the_uuid_among_forgejos_log_lines(tmp_path):
    from .lab_fakes import fake_forgejo_binary

    srv = ForgejoServer(fake_forgejo_binary(tmp_path), tmp_path / "work", "127.0.0.1", 0, "errtest", ZombieSettings())
    srv.configure()
    assert srv.register_runner("r", "ab" * 20, ["x:host"]) == "61626162-4141-4141-4141-414141414141"


def test_registration_without_a_uuid_is_an_error(tmp_path):
    srv = server(tmp_path, 'echo "[E] You are running Forgejo using the root user"\n')
    srv.configure()
    with pytest.raises(LabError, match=r"forgejo-cli actions register \(r\) printed no runner UUID: .*root user"):
        srv.register_runner("r", "41" * 20, ["x:host"])


def test_the_uuid_run_into_forgejos_root_warning_is_still_found():
    from harness.lab.forgejo import UUID

    out = ("61636266-3739-3563-3733-3931643836662026/12/01 03:04:52 ...s/setting/setting.go:188:loadRunModeFrom() "
           "[E] You are running Forgejo using the root user")  # measured: stdout's UUID, then stderr without a newline
    assert UUID.findall(out) == ["61636266-3739-3563-3733-393164383666"]
    assert UUID.findall("61636266-3739-3563-3733-39316438366612\n") == []
