"""harness.diagnose.render: sizes and ages for a human; the report and JSON pass through redaction."""

from __future__ import annotations

from harness.diagnose import diagnose, layout
from harness.diagnose.render import age, as_json, size, text
from harness.redact import register_secret


def test_sizes_and_ages():
    assert [size(n) for n in (0, 999, 1000, 102_694_912, 3 * 10**9)] == ["0 B", "999 B", "1.0 kB", "102.7 MB", "3.0 GB"]
    assert [age(s) for s in (5, 120, 7200, 3 * 86400)] == ["5 s", "2 min", "2 h", "3 d"]


def test_a_registered_secret_never_shows(tmp_path):
    secret = "s3cr3t-" + "9" * 30
    register_secret(secret)
    where = tmp_path / secret
    where.mkdir()
    found = diagnose(layout.from_dirs(where, where, where))
    assert secret not in text(found) and secret not in as_json(found)
