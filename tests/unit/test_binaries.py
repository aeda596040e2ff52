"""harness.runners.binaries: resolve() order with a tmp bin dir and fake executables; never the network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from harness.errors import BinaryNotFound, ConfigError
from harness.runners import binaries
from harness.runners.binaries import Binary, available, reported_version, resolve
from harness.versions import Version

V12 = Version(12, 1, 2)


def fake_binary(path: Path, output: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{output}"\n')
    path.chmod(mode)
    return path


def runner_binary(directory: Path, version: str = "12.1.2", prints: str | None = None) -> Path:
    return fake_binary(directory / f"forgejo-runner-{version}", prints or f"forgejo-runner version v{version}")


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path_factory):
    """The remembered versions live in a cache of the test's own (outside the bin dirs tests list)."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("REGRESS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any HTTP call fails the test; the env cannot enable downloads behind its back."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(binaries.requests, "get", refuse)
    monkeypatch.delenv("REGRESS_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("REGRESS_FORGEJO_RUNNER_URL", raising=False)
    monkeypatch.delenv("REGRESS_FORGEJO_URL", raising=False)


# -- order -----------------------------------------------------------------------------------------------


def test_explicit_path_wins_over_bin_dir(tmp_path):
    bin_dir = tmp_path / "bin"
    runner_binary(bin_dir)
    explicit = fake_binary(tmp_path / "mine" / "runner", "forgejo-runner version v12.1.2")
    found = resolve("forgejo-runner", V12, explicit={V12: explicit}, directory=bin_dir)
    assert found == Binary("forgejo-runner", V12, explicit, "path")


def test_explicit_for_another_version_is_ignored(tmp_path):
    bin_dir = tmp_path / "bin"
    expected = runner_binary(bin_dir)
    other = fake_binary(tmp_path / "other", "forgejo-runner version v11.3.1")
    found = resolve("forgejo-runner", V12, explicit={Version(11, 3, 1): other}, directory=bin_dir)
    assert (found.path, found.source) == (expected, "bin-dir")


def test_explicit_path_not_executable(tmp_path):
    path = fake_binary(tmp_path / "runner", "forgejo-runner version v12.1.2", mode=0o644)
    with pytest.raises(ConfigError, match="not an executable file"):
        resolve("forgejo-runner", V12, explicit={V12: path}, directory=tmp_path / "bin")
    with pytest.raises(ConfigError, match="not an executable file"):
        resolve("forgejo-runner", V12, explicit={V12: tmp_path / "absent"}, directory=tmp_path / "bin")


def test_bin_dir_found(tmp_path):
    path = runner_binary(tmp_path)
    found = resolve("forgejo-runner", V12, directory=tmp_path, download=False)
    assert found == Binary("forgejo-runner", V12, path, "bin-dir")


def test_bin_dir_from_env(tmp_path, monkeypatch):
    path = runner_binary(tmp_path / "envbin")
    monkeypatch.setenv("REGRESS_BIN_DIR", str(tmp_path / "envbin"))
    assert resolve("forgejo-runner", V12).path == path


def test_forgejo_kind(tmp_path):
    path = fake_binary(tmp_path / "forgejo-11.0.15",
                       "Forgejo version 11.0.15+gitea-1.22.0 built with GNU Make 4.4.1, go1.24.5 : bindata, sqlite")
    assert resolve("forgejo", Version(11, 0, 15), directory=tmp_path).path == path


def test_unknown_kind(tmp_path):
    with pytest.raises(ConfigError, match="unknown binary kind 'gitea'"):
        resolve("gitea", V12, directory=tmp_path)


# -- version checks --------------------------------------------------------------------------------------


def test_version_mismatch_in_bin_dir(tmp_path):
    runner_binary(tmp_path, "12.1.2", prints="forgejo-runner version v12.1.1")
    with pytest.raises(ConfigError) as info:
        resolve("forgejo-runner", V12, directory=tmp_path, download=True)
    assert not isinstance(info.value, BinaryNotFound)
    assert "reports version 12.1.1, not 12.1.2; refusing a mismatch" in str(info.value)
    assert "(from bin-dir)" in str(info.value)


def test_version_mismatch_explicit(tmp_path):
    path = fake_binary(tmp_path / "r", "forgejo-runner version v11.3.1")
    with pytest.raises(ConfigError, match=r"\(from path\) reports version 11.3.1"):
        resolve("forgejo-runner", V12, explicit={V12: path}, directory=tmp_path)


def test_binary_printing_no_version(tmp_path):
    runner_binary(tmp_path, prints="hello")
    with pytest.raises(ConfigError, match="reports version none"):
        resolve("forgejo-runner", V12, directory=tmp_path)


def test_reported_version(tmp_path):
    path = fake_binary(tmp_path / "r", "forgejo-runner version v12.1.2")
    assert reported_version("forgejo-runner", path) == V12


def test_reported_version_unrunnable(tmp_path):
    path = tmp_path / "r"
    path.write_text("not a script")
    path.chmod(0o755)
    with pytest.raises(ConfigError, match="cannot be run"):
        reported_version("forgejo-runner", path)


# -- not found -------------------------------------------------------------------------------------------


def test_missing_lists_every_place_tried(tmp_path):
    with pytest.raises(BinaryNotFound) as info:
        resolve("forgejo-runner", V12, directory=tmp_path, download=False)
    message = str(info.value)
    assert "no forgejo-runner binary for version 12.1.2" in message
    assert "explicit path: none given (--runner-binary 12.1.2=PATH)" in message
    assert f"bin dir: {tmp_path / 'forgejo-runner-12.1.2'} does not exist" in message
    assert "download: not allowed (--allow-download or REGRESS_ALLOW_DOWNLOAD=1" in message
    assert "releases/download/v{version}/forgejo-runner-{version}-linux-amd64" in message
    assert f"put it in the bin dir as {tmp_path / 'forgejo-runner-12.1.2'}" in message
    assert "REGRESS_BIN_DIR" in message


def test_missing_forgejo_names_its_option(tmp_path):
    with pytest.raises(BinaryNotFound, match=r"--forgejo-binary PATH"):
        resolve("forgejo", Version(11, 0, 15), directory=tmp_path, download=False)


def test_non_executable_in_bin_dir_is_not_found(tmp_path):
    fake_binary(tmp_path / "forgejo-runner-12.1.2", "forgejo-runner version v12.1.2", mode=0o644)
    with pytest.raises(BinaryNotFound):
        resolve("forgejo-runner", V12, directory=tmp_path, download=False)


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_env_does_not_allow_download(tmp_path, monkeypatch, value):
    monkeypatch.setenv("REGRESS_ALLOW_DOWNLOAD", value)
    with pytest.raises(BinaryNotFound, match="download: not allowed"):
        resolve("forgejo-runner", V12, directory=tmp_path)


# -- download (with a fake requests) ---------------------------------------------------------------------


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"", text: str = "") -> None:
        self.status_code = status
        self.body = body
        self.text = text

    def iter_content(self, size):
        yield self.body


def fake_get(monkeypatch, responses: dict[str, FakeResponse]):
    seen = []

    def get(url, **kwargs):
        seen.append(url)
        return responses.get(url, FakeResponse(404))

    monkeypatch.setattr(binaries.requests, "get", get)
    return seen


SCRIPT = b'#!/bin/sh\necho "forgejo-runner version v12.1.2"\n'


def test_download_allowed_by_env_and_verified(tmp_path, monkeypatch):
    url = "https://example.test/runner-12.1.2"
    seen = fake_get(monkeypatch, {url: FakeResponse(200, SCRIPT),
                                  url + ".sha256": FakeResponse(200, text=hashlib.sha256(SCRIPT).hexdigest())})
    monkeypatch.setenv("REGRESS_ALLOW_DOWNLOAD", "1")
    found = resolve("forgejo-runner", V12, directory=tmp_path, url_template="https://example.test/runner-{version}")
    assert found == Binary("forgejo-runner", V12, tmp_path / "forgejo-runner-12.1.2", "download")
    assert os.access(found.path, os.X_OK)
    assert seen == [url, url + ".sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forgejo-runner-12.1.2"]


def test_download_sha_mismatch(tmp_path, monkeypatch):
    url = "https://example.test/runner-12.1.2"
    fake_get(monkeypatch, {url: FakeResponse(200, SCRIPT), url + ".sha256": FakeResponse(200, text="0" * 64)})
    with pytest.raises(BinaryNotFound, match="SHA-256 mismatch"):
        resolve("forgejo-runner", V12, directory=tmp_path, url_template="https://example.test/runner-{version}",
                download=True)
    assert list(tmp_path.iterdir()) == []


def test_download_http_error_and_url_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("REGRESS_FORGEJO_RUNNER_URL", "https://mirror.test/r-{version}")
    seen = fake_get(monkeypatch, {})
    with pytest.raises(BinaryNotFound, match=r"download: https://mirror.test/r-12.1.2: HTTP 404"):
        resolve("forgejo-runner", V12, directory=tmp_path, download=True)
    assert seen == ["https://mirror.test/r-12.1.2"]


def test_download_partial_file_is_per_version(tmp_path, monkeypatch):
    url = "https://example.test/runner-12.1.2"
    partials = []

    class Recording(FakeResponse):
        def iter_content(self, size):
            partials.extend(p.name for p in tmp_path.iterdir())
            yield self.body

    fake_get(monkeypatch, {url: Recording(200, SCRIPT)})
    resolve("forgejo-runner", V12, directory=tmp_path, url_template="https://example.test/runner-{version}",
            download=True)
    assert partials == ["forgejo-runner-12.1.2.part"]


# -- available -------------------------------------------------------------------------------------------


def test_available_lists_executable_versions_sorted(tmp_path):
    runner_binary(tmp_path, "12.1.2")
    runner_binary(tmp_path, "11.3.1")
    runner_binary(tmp_path, "12.0.10")
    fake_binary(tmp_path / "forgejo-runner-9.9.9", "x", mode=0o644)
    fake_binary(tmp_path / "forgejo-runner-12.1.3.part", "x")
    fake_binary(tmp_path / "forgejo-11.0.15", "x")
    assert available("forgejo-runner", tmp_path) == [Version(11, 3, 1), Version(12, 0, 10), Version(12, 1, 2)]
    assert available("forgejo", tmp_path) == [Version(11, 0, 15)]
    assert available("forgejo", tmp_path / "absent") == []


def test_version_is_asked_once_per_file_and_again_when_it_changes(tmp_path):
    counter = tmp_path / "calls"
    path = tmp_path / "bin" / "forgejo-runner-12.1.2"
    path.parent.mkdir()
    path.write_text(f'#!/bin/sh\necho x >> {counter}\necho "forgejo-runner version v12.1.2"\n')
    path.chmod(0o755)
    for _ in range(3):
        assert resolve("forgejo-runner", V12, directory=path.parent).version == V12
    assert counter.read_text().count("x") == 1
    path.write_text(f'#!/bin/sh\necho x >> {counter}\necho "forgejo-runner version v12.1.3"\n')  # rebuilt
    with pytest.raises(ConfigError, match=r"reports version 12\.1\.3, not 12\.1\.2"):
        resolve("forgejo-runner", V12, directory=path.parent)
    assert counter.read_text().count("x") == 2


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '"text"', '{"x": 1}'])
def test_a_corrupt_version_cache_is_ignored(tmp_path, own_cache, content):
    (own_cache / "versions.json").write_text(content)
    assert resolve("forgejo-runner", V12, directory=runner_binary(tmp_path / "bin").parent).version == V12


# -- a build of a release (a key with a suffix) ------------------------------------------------------------

FIX = Version(12, 1, 2, "fix")


def test_a_build_with_a_suffix_is_checked_against_its_release(tmp_path):
    path = fake_binary(tmp_path / "patched" / "forgejo-runner", "forgejo-runner version v12.1.2")
    found = resolve("forgejo-runner", FIX, explicit={FIX: path}, directory=tmp_path)
    assert found == Binary("forgejo-runner", FIX, path, "path")
    assert resolve("forgejo-runner", V12, explicit={FIX: path, V12: path}, directory=tmp_path).version == V12


def test_a_build_reporting_another_release_is_refused(tmp_path):
    path = fake_binary(tmp_path / "patched", "forgejo-runner version v12.1.1")
    with pytest.raises(ConfigError, match=r"reports version 12\.1\.1, not 12\.1\.2 \(the release of the build "
                                          r"12\.1\.2\+fix\); refusing a mismatch"):
        resolve("forgejo-runner", FIX, explicit={FIX: path}, directory=tmp_path)


def test_a_build_is_never_downloaded(tmp_path):
    with pytest.raises(BinaryNotFound) as info:
        resolve("forgejo-runner", FIX, directory=tmp_path, download=True)  # no_network: a request would fail
    message = str(info.value)
    assert "12.1.2+fix is a build of 12.1.2 (a suffix): only a release is published" in message
    assert "--runner-binary 12.1.2+fix=PATH" in message
