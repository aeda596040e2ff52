"""harness.cache_growth: stores per repository, the per-repository finding, a runner's stores over the session."""

from __future__ import annotations

import pytest

from harness.cache_growth import RepoStores, growth_finding, per_repo_mb, repo_stores, runner_series

IMAGE = 48.2


def stores(cache_after, cache_growth, at, *, tool=0.0, clones=0.0, home=0.0, name="runner-12"):
    """A run's store observations as the Stores observer records them (MB)."""
    after = {"cache_server": cache_after, "tool_cache": 177.6, "action_clones": 3.0, "home": 95.0}
    return {"stores_after": {k: {"mb": v, "entries": 1} for k, v in after.items()},
            "store_growth_mb": {"cache_server": cache_growth, "tool_cache": tool, "action_clones": clones, "home": home},
            "stores_measured_at": at, "runner_from_log": {"name": name, "version": "v12.1.2"}}


def record(scenario, runner, repo, obs, warm_ups=()):
    observations = dict(obs)
    if warm_ups:  # a cell record names its measured repository in warm_up only
        observations["warm_up"] = {"repos": len(warm_ups) + 1, "measured_repo": repo,
                                   "runs": [{"repo": r, "stores": s} for r, s in warm_ups]}
        return {"scenario": scenario, "runner": runner, "observations": observations}
    return {"scenario": scenario, "runner": runner, "repo": repo, "observations": observations}


def points(*growths):
    return [RepoStores("qemu-buildx", "12.1.2", "r", f"o/repo-{i}", float(i), {"cache_server": 0.0},
                       {"cache_server": g, "tool_cache": 0.0, "action_clones": 0.5, "home": 0.0})
            for i, g in enumerate(growths)]


def test_repo_stores_are_the_warm_ups_then_the_measured_run():
    rec = record("qemu-buildx", "12.1.2", "o/c", stores(3 * IMAGE, IMAGE, 30.0),
                 warm_ups=[("o/a", stores(IMAGE, IMAGE, 10.0)), ("o/b", stores(2 * IMAGE, IMAGE, 20.0))])
    found = repo_stores(rec)
    assert [p.repo for p in found] == ["o/a", "o/b", "o/c"]
    assert [p.after_mb["cache_server"] for p in found] == [IMAGE, 2 * IMAGE, 3 * IMAGE]
    assert {p.runner_name for p in found} == {"runner-12"}


def test_a_run_without_stores_has_no_point():
    assert repo_stores({"scenario": "s", "runner": "12.1.2", "observations": {}}) == []
    assert RepoStores.from_observations("s", "12.1.2", "o/x", {"store_growth_mb": {}}) is None


def test_a_private_runner_is_its_own_runner():
    obs = {**stores(IMAGE, IMAGE, 1.0), "private_runner": "private-12-1"}
    assert repo_stores(record("s", "12.1.2", "o/x", obs))[0].runner_name == "private-12-1"


def test_per_repo_is_the_mean_growth_of_each_store():
    assert per_repo_mb(points(48.0, 48.4)) == {"cache_server": 48.2, "tool_cache": 0.0, "action_clones": 0.5,
                                               "home": 0.0}
    assert per_repo_mb([]) == {}


def test_finding_when_every_repository_added_a_copy():
    finding = growth_finding(points(IMAGE, IMAGE, IMAGE), ["docker/setup-qemu-action@v3"])
    assert finding is not None and finding.rule == "cache-growth" and finding.severity == "report"
    assert finding.message.startswith("3 repositories using docker/setup-qemu-action added 3 × 48.2 MB (144.6 MB)")
    assert "tool_cache +0.0 MB, action_clones +0.5 MB, home +0.0 MB" in finding.message


@pytest.mark.parametrize("growths", [(IMAGE, 0.0, 0.0), (IMAGE,), (0.2, 0.3, 0.1)])
def test_no_finding_when_the_store_did_not_grow_with_each_repository(growths):
    assert growth_finding(points(*growths), ["docker/setup-qemu-action@v3"]) is None


def test_runner_series_orders_the_session_per_runner():
    records = [
        record("qemu-buildx", "12.1.2", "o/q3", stores(3 * IMAGE, IMAGE, 50.0),
               warm_ups=[("o/q1", stores(IMAGE, IMAGE, 30.0)), ("o/q2", stores(2 * IMAGE, IMAGE, 40.0))]),
        record("native-checkout", "12.1.2", "o/n", stores(0.0, 0.0, 10.0)),  # ran first
        record("qemu-buildx", "11.3.1", "o/old", stores(IMAGE, IMAGE, 20.0, name="runner-11")),
        {"scenario": "docker-checkout", "runner": "12.1.2", "observations": {}},  # no stores: left out
    ]
    series = runner_series(records)
    assert set(series) == {"runner-12", "runner-11"}
    new = series["runner-12"]
    assert new.repos == ("o/n", "o/q1", "o/q2", "o/q3")
    assert new.scenarios == ("native-checkout", "qemu-buildx", "qemu-buildx", "qemu-buildx")
    assert new.cache_store_after_repo_mb == (0.0, IMAGE, 2 * IMAGE, round(3 * IMAGE, 2))
    assert new.per_repo_mb["cache_server"] == round(3 * IMAGE / 4, 2)
    assert new.to_json()["cache_store_after_repo_mb"] == [0.0, IMAGE, 2 * IMAGE, round(3 * IMAGE, 2)]
    assert "after each of 4 repositories: 0.0, 48.2, 96.4, 144.6 MB" in new.line()
    assert series["runner-11"].cache_store_after_repo_mb == (IMAGE,)
