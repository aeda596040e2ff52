"""harness.observe.cache: store sizes and the action-cache lookup of runner 11.x and 12.x."""

from __future__ import annotations

import hashlib

from harness.observe.cache import StoreSize, action_cached, measure


def test_measure(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 500)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    size = measure(tmp_path)
    assert size.entries == 3
    assert size.bytes == 1500 + (tmp_path / "link").lstat().st_size
    assert StoreSize(2_500_000, 1).mb == 2.5


def test_measure_missing(tmp_path):
    assert measure(tmp_path / "absent") == StoreSize(0, 0)


def _store(workdir, key):
    digest = hashlib.sha256(key.encode()).hexdigest()
    (workdir / digest[:2] / digest[2:]).mkdir(parents=True)


def test_action_cached_by_uses_runner_11(tmp_path):
    assert not action_cached(tmp_path, "actions/checkout@v4", "http://h/actions/checkout")
    _store(tmp_path, "actions/checkout@v4")
    assert action_cached(tmp_path, "actions/checkout@v4", "http://h/actions/checkout")


def test_action_cached_by_clone_url_runner_12(tmp_path):
    _store(tmp_path, "http://h/actions/checkout")
    assert action_cached(tmp_path, "actions/checkout@v4", "http://h/actions/checkout")
    assert not action_cached(tmp_path, "actions/setup-node@v4", "http://h/actions/setup-node")
