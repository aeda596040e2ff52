"""harness.bolt: the bbolt reader on real ``bolt.db`` files made by real runners' cache servers
(tests/data/diagnose/README.md), and on broken copies."""

from __future__ import annotations

import gzip
import json
import struct
import tarfile
from pathlib import Path

import pytest

from harness.bolt import BoltError, BoltFile

DATA = Path(__file__).resolve().parent.parent / "data" / "diagnose"


def extract(name: str, tmp_path: Path) -> Path:
    with tarfile.open(DATA / name) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


@pytest.fixture
def upgrade_db(tmp_path) -> Path:
    return extract("inplace-upgrade-11.3.1-12.1.2.tar.gz", tmp_path) / "cache" / "bolt.db"


def test_the_cache_bucket_of_a_real_bolt_db(upgrade_db):
    db = BoltFile(upgrade_db)
    assert db.page_size == 4096 and db.buckets() == [b"Cache", b"_index:Cache:Repo"]
    items = db.items(b"Cache")
    assert [k for k, _v in items] == [b"1", b"2", b"3"]  # bolthold's json-encoded NextSequence keys
    first = json.loads(items[0][1])
    assert first["repo"] == "regress-admin/inplace-upgrade-11-3-1-dde28112" and first["cacheSize"] == 262144
    assert db.items(b"absent") == [] and db.items(b"Cache", b"absent") == []


def test_an_empty_store_has_no_bucket(tmp_path):
    db = extract("moved-tag-11.3.1.tar.gz", tmp_path) / "cache" / "bolt.db"
    assert BoltFile(db).buckets() == []


def test_the_newer_valid_meta_page_is_read_when_one_is_torn(upgrade_db):
    data = bytearray(upgrade_db.read_bytes())
    txids = [struct.unpack_from("<Q", data, offset + 16 + 48)[0] for offset in (0, 4096)]
    newer = 0 if txids[0] > txids[1] else 4096
    data[newer + 16 + 56] ^= 0xFF  # its checksum no longer matches
    upgrade_db.write_bytes(bytes(data))
    db = BoltFile(upgrade_db)  # the older meta page is still a consistent state
    assert db.page_size == 4096


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda b: b[:60], "not a bbolt database (no valid meta page)"),
    (lambda b: b"\0" * len(b), "not a bbolt database (no valid meta page)"),
    (lambda b: b[:3 * 4096], "past the end of the file"),
])
def test_a_broken_file_is_one_line_naming_it(upgrade_db, mangle, message):
    upgrade_db.write_bytes(mangle(upgrade_db.read_bytes()))
    with pytest.raises(BoltError) as caught:
        BoltFile(upgrade_db).items(b"Cache")
    assert message in str(caught.value) and str(upgrade_db) in str(caught.value) and "\n" not in str(caught.value)


def test_branch_pages_a_nested_bucket_and_an_overflow_value(tmp_path):
    path = tmp_path / "bbolt-format.db"
    path.write_bytes(gzip.decompress((DATA / "bbolt-format.db.gz").read_bytes()))
    db = BoltFile(path)
    items = db.items(b"Cache")
    assert sorted(int(k) for k, _v in items) == list(range(1, 2001))
    assert json.loads(dict(items)[b"1234"])["cacheSize"] == 1234
    assert db.buckets(b"Cache") == [b"nested"]
    assert db.items(b"Cache", b"nested") == [(b"big", b"x" * 10000), (b"small", b"y")]
