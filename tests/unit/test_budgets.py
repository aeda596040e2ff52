"""harness.budgets: the named waits and their REGRESS_BUDGET_<NAME> overrides."""

from __future__ import annotations

from dataclasses import fields

import pytest

from harness.budgets import Budgets


def test_defaults_are_positive():
    budgets = Budgets()
    assert all(getattr(budgets, f.name) > 0 for f in fields(Budgets))
    assert (budgets.setup_cold, budgets.setup_warm) == (60.0, 20.0)
    assert budgets.setup_warm < budgets.setup_cold


def test_env_overrides_only_named_budgets():
    budgets = Budgets.from_env({"REGRESS_BUDGET_PICKUP": "5", "REGRESS_BUDGET_RUNNER_STALLED": "2.5",
                                "REGRESS_BUDGET_NOT_A_BUDGET": "x", "PATH": "/bin"})
    assert budgets.pickup == 5.0 and budgets.runner_stalled == 2.5
    assert budgets.job_done == Budgets().job_done


@pytest.mark.parametrize(("raw", "message"), [("soon", "is not a number"), ("0", "must be positive"),
                                              ("-3", "must be positive")])
def test_env_rejects_bad_values(raw, message):
    with pytest.raises(ValueError, match=f"REGRESS_BUDGET_JOB_DONE='{raw}' {message}"):
        Budgets.from_env({"REGRESS_BUDGET_JOB_DONE": raw})


def test_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv("REGRESS_BUDGET_HTTP_READ", "7")
    assert Budgets.from_env().http_read == 7.0
