"""harness.observe.aftermath: the runner's behaviour after a fault, from its log and the proxy's traffic."""

from __future__ import annotations

from datetime import UTC, datetime

from harness.faults.proxy import Exchange
from harness.observe.aftermath import behaviour, decided, stamp

T0 = datetime(2026, 12, 1, 5, 0, 0, tzinfo=UTC).timestamp()


def line(offset: float, level: str, msg: str) -> str:
    when = datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'time="{when}" level={level} msg="{msg}"'


V12_BLACKHOLE = "\n".join([
    line(-5, "info", "[w/j] ⭐ Run Post regress/slow-post@v1"),
    line(61, "warning", 'ReportLog error: deadline_exceeded: Post "http://x/UpdateLog": (Client.Timeout exceeded)'),
    line(121, "warning", "ReportState error: deadline_exceeded: (Client.Timeout exceeded while awaiting headers)"),
    line(150, "warning", "uploading final logs failed, but will be retried: unavailable"),
    line(151, "warning", "uploading final logs failed, but will be retried: unavailable"),
    line(152, "error", "unable to send final job logs and status: All attempts fail"),
])


def test_stamp_reads_logrus_time() -> None:
    assert stamp(line(3, "info", "x")) == T0 + 3
    assert stamp("no time here") is None


def test_v12_blackhole_behaviour_counted_from_the_fault_on() -> None:
    found = behaviour(V12_BLACKHOLE, [], T0, T0 + 40, alive=True)
    assert (found.report_errors, found.timeouts, found.final_retries) == (2, 2, 2)
    assert found.first_reaction_s == 61.0 and "ReportLog error" in (found.first_reaction or "")
    assert found.gave_up is not None and not found.exited
    assert "gave up" in found.sentence() and "process alive" in found.sentence()
    assert decided(found, [], T0 + 40, T0 + 41, quiet=15) == "the runner gave up its final report"


def test_v11_silence_then_the_servers_result_after_the_release() -> None:
    text = line(190, "info", "UpdateTask returned task result RESULT_FAILURE for a task that was in local state "
                             "RESULT_SUCCESS - beginning local task termination")
    found = behaviour(text, [], T0, T0 + 187, alive=True)
    assert found.report_errors == 0 and found.gave_up is None
    assert found.server_result == "RESULT_FAILURE (local RESULT_SUCCESS)"
    assert found.first_reaction_s == 190.0
    assert decided(found, [], T0 + 187, T0 + 191, quiet=15) is None  # it may still retry its final report
    assert decided(found, [], T0 + 187, T0 + 203, quiet=15) == "no report about the task for 15s after the release"


def test_quiet_after_release_decides_and_reports_keep_it_open() -> None:
    nothing = behaviour("", [], T0, T0 + 40, alive=True)
    assert nothing.sentence().startswith("logged nothing about it")
    report = Exchange(T0 + 50, "UpdateLog", 10, "forwarded", 500, 0, 0.01, {"no_more": True})
    assert decided(nothing, [report], T0 + 40, T0 + 60, quiet=15) is None  # a report 10 s ago
    assert decided(nothing, [report], T0 + 40, T0 + 66, quiet=15) == "no report about the task for 15s after the release"
    delivered = Exchange(T0 + 50, "UpdateLog", 10, "forwarded", 200, 2, 0.01, {"no_more": True})
    found = behaviour("", [report, delivered], T0, T0 + 40, alive=False)
    assert found.final_report_after_release and found.exited
    assert found.final_attempts == {"200": 1, "500": 1}
    assert "final UpdateLog sent 2 times (1× 200, 1× 500)" in found.sentence()
    assert decided(found, [delivered], T0 + 40, T0 + 51, quiet=15) == "the runner exited"
