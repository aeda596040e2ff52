"""harness.html_report: report.html, self-contained and escaped, rendered from the records."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path

import pytest

from harness import html_report
from harness.compare import REGRESSION, SAME, Cell, GateFinding, gate_line, load_records
from harness.report import read_gate
from tests import chromium

from .test_report_view import record

SCRIPT = "<script>alert(1)</script>"


def passing(**extra):
    return {**record(), "runner": "11.3.1", "outcome": "pass", "reason": "", "class": None, "class_evidence": None,
            **extra}


def test_untrusted_text_is_escaped_and_the_policy_forbids_loading_anything(tmp_path):
    bad = record(reason=f"job log said {SCRIPT}")
    bad["observations"]["signatures"][0]["line"] = f'level=error msg="{SCRIPT}"'
    page = html_report.render([bad], None, None, None)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert policy is not None
    policy = html.unescape(policy.group(1))
    assert "default-src 'none'" in policy and "script-src 'none'" in policy
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy  # the one inline style, by its hash
    assert not re.search(r'(src|href)="(https?:)?//', page) and "@import" not in page and "url(" not in page


def test_the_gate_comes_first_then_the_matrix_then_every_cell():
    records = [passing(), record()]
    findings = [GateFinding("slow-post-job", REGRESSION, "11.3.1 passed, 12.1.2 failed", "abort-12")]
    page = html_report.render(records, findings, "11.3.1", "12.1.2")
    gate = page.index('id="gate-line"')
    assert 'class="gate FAILED" id="gate-line">gate FAILED (regressed under abort-12: slow-post-job)' in page
    assert gate < page.index('id="matrix"') < page.index('id="cells"')
    assert "<h3>under abort-12</h3>" in page and "◆" in page and "[finalization-lost]" in page
    assert page.count("<svg ") == 2 * 3 + 2  # setup, cpu, cache for each cell (a passing one too); 2 fault timelines
    assert 'href="#cell-0-slow-post-job-11.3.1-abort-12"' in page and 'id="cell-1-slow-post-job-12.1.2-abort-12"' in page
    assert 'data-outcome="pass"' in page and 'data-class="finalization-lost"' in page
    assert 'href="file:///runs/r1/test_scenario_slow-post-job-12.1.2_abort-12/repro.md"' in page


def test_without_a_gate_the_page_says_so_and_a_passed_gate_shows_its_line():
    assert "no gate: the session had no --baseline/--candidate" in html_report.render([passing()], None, None, None)
    page = html_report.render([passing()], [GateFinding("x", SAME, "passes on both")], "11.3.1", "12.1.2")
    assert 'class="gate passed" id="gate-line">gate passed (nothing regressed)' in page


def test_the_matrix_has_a_column_per_runner_and_repeats_link_each_cell():
    cells = [Cell.from_json(passing(condition="")), Cell.from_json(passing(condition="")),
             Cell.from_json(record(condition=""))]
    (plain,) = html_report.matrices(cells, ["a", "b", "c"])
    assert plain.runners == ("11.3.1", "12.1.2") and plain.rows[0].differs
    base, cand = plain.rows[0].cells
    assert base is not None and (base.outcome, base.anchors) == ("pass 2/2", ("a", "b"))
    assert cand is not None and (cand.outcome, cand.classes) == ("FAIL", "finalization-lost")


def test_write_puts_report_html_beside_the_records_with_relative_bundle_links(tmp_path):
    path = html_report.write(tmp_path, [record(bundle=str(tmp_path / "test_x"))])
    assert path == tmp_path / "report.html"
    text = path.read_text()
    assert 'href="test_x/repro.md"' in text and text.startswith("<!doctype html>")


# -- in a browser: Debian's chromium, headless, on recorded real runs --------------------------------------------

RUNS = Path(__file__).resolve().parents[1] / "data" / "report-runs"


def need_chromium() -> str:
    found = chromium.find()
    if found is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium with apt-get when run as root)")
    return found


def render_run(run: Path, out: Path) -> tuple[Path, list[dict], str]:
    """report.html of a recorded run dir, as its session would have written it (gate and all)."""
    records, problems = load_records(run / "cells")
    assert records and not problems, problems
    findings, baseline, candidate = read_gate(run / "gate.json")
    out.mkdir(parents=True, exist_ok=True)
    page = out / html_report.REPORT_HTML
    page.write_text(html_report.render(records, findings, baseline, candidate, root=run))
    return page, records, gate_line(findings)


@pytest.mark.parametrize("run", ["fault-gate-failed", "warm-up", "selfcheck"])
def test_the_page_of_a_real_run_in_chromium(run, tmp_path):
    binary = need_chromium()
    page, records, line = render_run(RUNS / run, tmp_path)
    chromium.check_report(page, records, line, tmp_path / "report.png", binary=binary)


def test_the_request_check_sees_a_page_that_loads_something(tmp_path):
    binary = need_chromium()
    page = tmp_path / "leaky.html"
    page.write_text('<!doctype html><p>x</p><img src="http://127.0.0.1:9/pixel.png">')
    loaded = chromium.open_page(page, tmp_path / "leaky.png", binary=binary)
    assert loaded.requests == (page.as_uri(), "http://127.0.0.1:9/pixel.png")
