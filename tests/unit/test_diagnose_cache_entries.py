"""harness.diagnose.cache_entries on the real bolt.db of a --warm-up qemu-buildx cell (tests/data/diagnose):
entries and bytes per repository, and setup-qemu's image saved once per repository (three copies)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.diagnose import cache_entries
from harness.errors import ConfigError

DATA = Path(__file__).resolve().parent.parent / "data" / "diagnose"
IMAGE = 102694912


@pytest.fixture
def store(tmp_path) -> Path:
    shutil.copy(DATA / "warm-up-qemu-buildx-12.1.2.bolt.db", tmp_path / "bolt.db")
    return tmp_path


def test_the_image_saved_once_per_repository(store):
    entries = cache_entries.read_entries(store)
    assert [(e.id, e.key, e.size, e.complete) for e in entries] == [
        (i, "docker.io--regress--binfmt-regress-binfmt-latest-x64", IMAGE, True) for i in (1, 2, 3)]
    totals = cache_entries.per_repository(entries)
    assert [(t.entries, t.bytes) for t in totals] == [(1, IMAGE)] * 3 and len({t.repo for t in totals}) == 3
    (same,) = cache_entries.same_key(entries)
    assert (len(same.repos), same.bytes, same.extra_bytes) == (3, 3 * IMAGE, 2 * IMAGE)
    assert same.to_json()["copies"] == 3


def test_the_data_file_s_size_counts_when_it_is_there(store):
    data = cache_entries.data_file(store, 2)
    assert data == store / "cache" / "02" / "2"  # act/artifactcache/storage.go: <id % 0xff as %02x>/<id>
    data.parent.mkdir(parents=True)
    data.write_bytes(b"x" * 10)
    entries = {e.id: e for e in cache_entries.read_entries(store)}
    assert (entries[2].bytes, entries[2].file_bytes, entries[1].file_bytes) == (10, 10, None)
    assert entries[1].bytes == IMAGE and entries[1].to_json()["file_missing"]
    assert cache_entries.data_file(store, 255) == store / "cache" / "00" / "255"


def test_no_bolt_db_no_entries_and_a_broken_one_is_one_line(store, tmp_path):
    assert cache_entries.read_entries(tmp_path / "absent") == []
    (store / "bolt.db").write_bytes(b"\0" * 8192)
    with pytest.raises(ConfigError, match=r"bolt.db: not a bbolt database \(no valid meta page\)$"):
        cache_entries.read_entries(store)
