"""harness.runners.upgrade: what a runner's stores hold (11.x work-tree clones beside 12.x bare clones)."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

from harness.runners.upgrade import store_inventory


def test_store_inventory_tells_v11_clones_from_v12_bare_clones(tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    v11 = work / "ab" / ("c" * 62)
    v12 = work / "cd" / ("e" * 62)
    subprocess.run(["git", "init", "-q", str(v11)], check=True)
    (v11 / ".git" / "refs" / "tags" / "v1").write_text("0" * 40 + "\n")
    subprocess.run(["git", "init", "-q", "--bare", str(v12)], check=True)
    (work / "hostexecutor-123").mkdir()  # a job workspace, not the action cache
    cache.mkdir()
    (cache / "bolt.db").write_bytes(b"x" * 2000)
    (tmp_path / ".runner").write_text("{}")
    runner = SimpleNamespace(workdir=work, cache_dir=cache, dir=tmp_path)
    found = store_inventory(runner)
    assert [(e["path"], e["kind"], e["tags"]) for e in found["action_cache"]] == [
        (f"ab/{'c' * 62}", "clone (work tree)", ["v1"]), (f"cd/{'e' * 62}", "bare clone", [])]
    assert found["kinds"] == {"clone (work tree)": 1, "bare clone": 1}
    assert found["cache_store"] == {"mb": 0.002, "files": 1, "names": ["bolt.db"]}
    assert found["runner_files"] == {".runner": True, "config.yaml": False}
    assert store_inventory(SimpleNamespace(workdir=tmp_path / "none", cache_dir=tmp_path / "none", dir=tmp_path))[
        "action_cache"] == []


def test_store_inventory_reads_tags_from_packed_refs(tmp_path):
    clone = tmp_path / "work" / "ab" / ("c" * 62)
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    (clone / ".git" / "packed-refs").write_text("# pack-refs with: peeled\n" + "1" * 40 + " refs/tags/v1\n"
                                               + "2" * 40 + " refs/tags/v2\n")
    (clone / ".git" / "refs" / "tags" / "v3").write_text("3" * 40 + "\n")
    found = store_inventory(SimpleNamespace(workdir=tmp_path / "work", cache_dir=tmp_path / "cache", dir=tmp_path))
    assert found["action_cache"][0]["tags"] == ["v1", "v2", "v3"]
