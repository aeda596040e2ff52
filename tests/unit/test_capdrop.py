"""harness.lab.capdrop: the OCI runtime wrapper that drops capabilities missing from the bounding set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.lab import capdrop
from harness.lab.capdrop import CAP_NAMES, bounding_set, filter_spec, missing_caps

STATUS = "Name:\tdockerd\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nNoNewPrivs:\t0\n"
FULL = (1 << len(CAP_NAMES)) - 1


class Exec(Exception):
    """Raised by the fake execvp instead of replacing the test process."""


@pytest.fixture
def execvp(monkeypatch):
    calls = []

    def fake(file, args):
        calls.append((file, args))
        raise Exec

    monkeypatch.setattr(capdrop.os, "execvp", fake)
    return calls


def spec(*names):
    caps = list(names)
    return {"ociVersion": "1.0.2", "process": {"args": ["sh"], "capabilities": {
        "bounding": caps[:], "effective": caps[:], "permitted": caps[:], "inheritable": caps[:], "ambient": caps[:]}}}


def test_cap_names_numbering():
    assert CAP_NAMES[0] == "CAP_CHOWN" and CAP_NAMES[21] == "CAP_SYS_ADMIN" and CAP_NAMES[24] == "CAP_SYS_RESOURCE"
    assert CAP_NAMES[40] == "CAP_CHECKPOINT_RESTORE" and len(set(CAP_NAMES)) == 41


def test_bounding_set_parses_status():
    assert bounding_set(STATUS) == 0x1fffeffffff


def test_bounding_set_without_line_is_full():
    assert bounding_set("Name:\tx\n") == FULL


def test_bounding_set_reads_proc_by_default():
    assert bounding_set() == bounding_set(Path("/proc/self/status").read_text())


def test_missing_caps_sys_resource():
    assert missing_caps(0x1fffeffffff) == ["CAP_SYS_RESOURCE"]


def test_missing_caps_full_and_empty():
    assert missing_caps(FULL) == []
    assert missing_caps(0) == list(CAP_NAMES)
    assert missing_caps(FULL & ~(1 << 21) & ~(1 << 0)) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]


def test_filter_spec_removes_from_every_set():
    data = spec("CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN")
    assert filter_spec(data, ["CAP_SYS_RESOURCE"]) is True
    for values in data["process"]["capabilities"].values():
        assert values == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert filter_spec(data, ["CAP_SYS_RESOURCE"]) is False


def test_filter_spec_without_capabilities():
    assert filter_spec({}, ["CAP_SYS_RESOURCE"]) is False
    assert filter_spec({"process": {"args": ["sh"]}}, ["CAP_SYS_RESOURCE"]) is False


@pytest.mark.parametrize("bundle_args", [["--bundle", "{dir}"], ["-b", "{dir}"], ["--bundle={dir}"]])
def test_main_rewrites_bundle_and_execs_runc(tmp_path, monkeypatch, execvp, bundle_args):
    (tmp_path / "config.json").write_text(json.dumps(spec("CAP_KILL", "CAP_SYS_RESOURCE")))
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    monkeypatch.setenv("REGRESS_REAL_RUNC", "/usr/bin/runc.real")
    argv = ["--root", "/run/x", "create", *[a.format(dir=tmp_path) for a in bundle_args], "cid"]
    with pytest.raises(Exec):
        capdrop.main(argv)
    rewritten = json.loads((tmp_path / "config.json").read_text())
    assert all(v == ["CAP_KILL"] for v in rewritten["process"]["capabilities"].values())
    assert execvp == [("/usr/bin/runc.real", ["/usr/bin/runc.real", *argv])]


def test_main_run_subcommand_also_rewrites(tmp_path, monkeypatch, execvp):
    (tmp_path / "config.json").write_text(json.dumps(spec("CAP_SYS_RESOURCE")))
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    monkeypatch.delenv("REGRESS_REAL_RUNC", raising=False)
    with pytest.raises(Exec):
        capdrop.main(["run", "--bundle", str(tmp_path), "cid"])
    assert json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]["bounding"] == []
    assert execvp[0][0] == "runc"


def test_main_bundle_defaults_to_cwd(tmp_path, monkeypatch, execvp):
    (tmp_path / "config.json").write_text(json.dumps(spec("CAP_SYS_RESOURCE", "CAP_KILL")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    with pytest.raises(Exec):
        capdrop.main(["create", "cid"])
    assert json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]["effective"] == ["CAP_KILL"]


def test_main_other_commands_leave_spec_alone(tmp_path, monkeypatch, execvp):
    original = json.dumps(spec("CAP_SYS_RESOURCE"))
    (tmp_path / "config.json").write_text(original)
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    with pytest.raises(Exec):
        capdrop.main(["state", "cid", "--bundle", str(tmp_path)])
    assert (tmp_path / "config.json").read_text() == original
    assert execvp[0][1][1:] == ["state", "cid", "--bundle", str(tmp_path)]


def test_main_nothing_missing_leaves_spec_alone(tmp_path, monkeypatch, execvp):
    original = json.dumps(spec("CAP_SYS_RESOURCE"))
    (tmp_path / "config.json").write_text(original)
    monkeypatch.setattr(capdrop, "missing_caps", lambda: [])
    with pytest.raises(Exec):
        capdrop.main(["create", "--bundle", str(tmp_path), "cid"])
    assert (tmp_path / "config.json").read_text() == original


def test_main_without_config_still_execs(tmp_path, monkeypatch, execvp):
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    with pytest.raises(Exec):
        capdrop.main(["create", "--bundle", str(tmp_path / "none"), "cid"])
    assert len(execvp) == 1


@pytest.mark.parametrize("form", [["--process", "{file}"], ["-p", "{file}"], ["--process={file}"]])
def test_main_exec_rewrites_the_process_file(tmp_path, monkeypatch, execvp, form):
    """`docker exec` into a --privileged container: runc exec --process FILE carries the full sets too."""
    process = spec("CAP_KILL", "CAP_SYS_RESOURCE")["process"]
    file = tmp_path / "process.json"
    file.write_text(json.dumps(process))
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    argv = ["--root", "/run/x", "exec", *[a.format(file=file) for a in form], "--detach", "cid"]
    with pytest.raises(Exec):
        capdrop.main(argv)
    assert all(v == ["CAP_KILL"] for v in json.loads(file.read_text())["capabilities"].values())
    assert execvp[0][1][1:] == argv


def test_main_exec_without_a_process_file_still_execs(tmp_path, monkeypatch, execvp):
    monkeypatch.setattr(capdrop, "missing_caps", lambda: ["CAP_SYS_RESOURCE"])
    with pytest.raises(Exec):
        capdrop.main(["exec", "cid", "sh"])
    assert len(execvp) == 1
