"""``lab prepare``'s buildkit image: recorded in prepared.json, its failure a reason (never raised, never a
silent fallback), an older manifest prepared again, the module dir read from ``go mod download -json``
(fakes only: no go, apt-get or Docker)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cell import NotRunnable, check_runnable
from harness.errors import LabError
from harness.lab import prepare
from harness.lab.prepare import Prepared
from harness.scenarios import load
from tests.unit.lab_fakes import stand_in


@pytest.fixture
def built(monkeypatch):
    """Every build step replaced by one that writes its file; the buildkit step configurable."""
    def write(tar: Path, *args: object) -> None:
        tar.write_text("tar")

    monkeypatch.setattr(prepare, "_rootfs_tar", lambda packages, tar, logf: write(tar))
    monkeypatch.setattr(prepare, "_binfmt_rootfs", write)
    monkeypatch.setattr(prepare, "_build_buildx", write)
    monkeypatch.setattr(prepare, "_buildkit_rootfs", write)
    monkeypatch.setattr(prepare, "stand_in_sources", lambda: {})
    return monkeypatch


def test_the_buildkit_image_is_recorded_under_the_real_name(built, tmp_path):
    prepared = prepare.prepare(tmp_path, notify=lambda s: None)
    assert prepared.buildkit_image and prepared.buildkit_image.startswith("regress-buildkit:")
    assert prepared.buildkit_tag == "moby/buildkit:buildx-stable-1" and prepared.buildkit_error is None
    assert Path(prepared.buildkit_tar or "").is_file()
    manifest = json.loads((tmp_path / "prepared.json").read_text())
    assert manifest["buildkit_image"] == prepared.buildkit_image and manifest["buildkit_tag"] == prepared.buildkit_tag
    assert Prepared.load(tmp_path) == prepared


def test_a_failed_buildkit_build_is_a_reason_and_the_scenario_says_it(built, tmp_path):
    def fails(tar, logf):
        raise LabError(f"go build of buildkitd and buildctl v0.34.2 failed (exit 1); log: {logf}\nundefined: x")

    built.setattr(prepare, "_buildkit_rootfs", fails)
    notes: list[str] = []
    prepared = prepare.prepare(tmp_path, notify=notes.append)
    assert prepared.buildkit_image is None and prepared.buildkit_tar is None
    assert prepared.buildkit_error == ("go build of buildkitd and buildctl v0.34.2 failed (exit 1); "
                                       f"log: {tmp_path / 'prepare.log'}")
    assert any(n.startswith("buildkit image not available: go build") for n in notes)
    assert prepared.buildx and Prepared.load(tmp_path) == prepared  # the rest is usable

    lab = SimpleNamespace(prepared=prepared, engine=object())
    handle = SimpleNamespace(runs_on=lambda kind: "regress-12.1.2-native", lab_runner=object(), key="12.1.2")
    with pytest.raises(NotRunnable) as info:
        check_runnable(SimpleNamespace(lab=lab), load("qemu-buildx"), handle)
    assert "needs the buildkit image (moby/buildkit:buildx-stable-1)" in str(info.value)
    assert prepared.buildkit_error in str(info.value)


def test_without_go_builds_the_reason_says_so(built, tmp_path):
    prepared = prepare.prepare(tmp_path, with_buildx=False, notify=lambda s: None)
    assert prepared.buildkit_image is None and prepared.buildkit_error == "not built (lab prepare --no-buildx)"


def test_a_manifest_of_an_older_recipe_is_prepared_again(built, tmp_path):
    prepared = prepare.prepare(tmp_path, notify=lambda s: None)
    manifest = json.loads((tmp_path / "prepared.json").read_text())
    older = {k: v for k, v in manifest.items() if not k.startswith("buildkit")}
    (tmp_path / "prepared.json").write_text(json.dumps(older))
    assert Prepared.load(tmp_path) is None
    (tmp_path / "prepared.json").write_text(json.dumps(manifest))
    Path(prepared.buildkit_tar or "").unlink()
    assert Prepared.load(tmp_path) is None  # its image file is gone


def fake_go(tmp_path: Path, stdout: str, code: int) -> str:
    return stand_in(tmp_path / "go", f"#!{sys.executable}\nimport sys\nsys.stdout.write({stdout!r})\n"
                    f"sys.stderr.write('go: noise\\n')\nsys.exit({code})\n")


def test_the_module_dir_comes_from_go_mod_download(tmp_path):
    go = fake_go(tmp_path, json.dumps({"Path": "github.com/moby/buildkit", "Dir": "/mod/buildkit@v0.34.2"}), 0)
    assert prepare._module_dir(go, "github.com/moby/buildkit", "v0.34.2", tmp_path / "log") == \
        Path("/mod/buildkit@v0.34.2")
    assert "go: noise" in (tmp_path / "log").read_text()


def test_a_module_that_cannot_be_downloaded_names_goes_error(tmp_path):
    error = "github.com/moby/buildkit@v9.9.9: invalid version: unknown revision v9.9.9"
    go = fake_go(tmp_path, json.dumps({"Path": "github.com/moby/buildkit", "Error": error}), 1)
    with pytest.raises(LabError) as info:
        prepare._module_dir(go, "github.com/moby/buildkit", "v9.9.9", tmp_path / "log")
    assert str(info.value) == f"go mod download github.com/moby/buildkit@v9.9.9 failed: {error}; log: {tmp_path / 'log'}"
