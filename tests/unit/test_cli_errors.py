"""``python -m harness lab …`` with bad input: one clear error, exit 2, no traceback (no binaries needed)."""

from __future__ import annotations

import subprocess
import sys


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "lab", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_lab_up_without_binary_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_BIN_DIR", str(tmp_path))
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path / "cache"))
    proc = cli("up", "--lab", "never", "--forgejo-version", "13.0.5", "--runner-version", "12.1.2")
    assert proc.returncode == 2
    assert "no forgejo binary for version 13.0.5" in proc.stderr
    assert str(tmp_path / "forgejo-13.0.5") in proc.stderr and "--forgejo-binary" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_lab_id_that_could_escape_the_labs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path))
    proc = cli("status", "--lab", "../etc")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "lab id '../etc': use 1–48 letters" in proc.stderr


def test_lab_up_refuses_a_bad_actions_url_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path))
    proc = cli("up", "--lab", "never", "--actions-url", "ftp://mirror.invalid/")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--actions-url: 'ftp://mirror.invalid' must be an http:// or https:// URL" in proc.stderr
    both = cli("up", "--lab", "never", "--actions-url", "http://127.0.0.1:1/", "--seed-action", "a/b=/tmp")
    assert both.returncode == 2 and "--actions-url and --seed-action exclude each other" in both.stderr
    assert not (tmp_path / "labs" / "never").exists()


def test_lab_up_refuses_a_bad_zombie_timeout_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(tmp_path))
    proc = cli("up", "--lab", "never", "--zombie-timeout", "soon")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--zombie-timeout 'soon' (lab up): a Go duration such as 30s or 10m" in proc.stderr
    assert not (tmp_path / "labs" / "never").exists()
