"""harness.observe.cache: store sizes (each store named apart) and the action-cache lookup of runner 11.x and 12.x."""

from __future__ import annotations

import hashlib

from harness.observe.cache import STORES, StoreSize, action_cached, action_clones, measure, runner_stores


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


def _file(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_runner_stores_names_each_copy_apart(tmp_path):
    work, cache, home = tmp_path / "work", tmp_path / "cache", tmp_path / "home"
    _file(cache / "blob" / "1", 48_200_000 // 100)  # the cache server's copy of an image
    _file(work / "tool_cache" / "binfmt" / "image.tar", 1000)  # the hosted tool cache's copy
    _file(work / "ab" / "cdef" / "action.yml", 30)  # an action clone
    _file(work / "1f3a9c" / "hostexecutor" / "x", 7)  # a job's own dir: neither clone nor tool cache
    _file(home / ".docker" / ".cache" / "image.tar", 500)
    stores = runner_stores(work, cache, home)
    assert list(stores) == list(STORES)
    assert {k: v.bytes for k, v in stores.items()} == {"cache_server": 482_000, "tool_cache": 1000,
                                                       "action_clones": 30, "home": 500}


def test_action_clones_counts_hash_dirs_only(tmp_path):
    _file(tmp_path / "ab" / "x", 10)
    _file(tmp_path / "0f" / "y", 5)
    _file(tmp_path / "tool_cache" / "z", 99)
    _file(tmp_path / "abc" / "w", 99)
    (tmp_path / "cd").write_bytes(b"not a dir")
    assert action_clones(tmp_path) == StoreSize(15, 2)
    assert action_clones(tmp_path / "absent") == StoreSize(0, 0)
