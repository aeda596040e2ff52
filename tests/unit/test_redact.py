"""harness.redact: every kind of secret the suite handles is removed by redact() and redact_obj()."""

from __future__ import annotations

import base64
import json

import pytest

from harness import redact as redact_module
from harness.redact import MASK, known_secrets, redact, redact_obj, register_secret

RUNNER_SECRET = "0123456789abcdef0123456789abcdef01234567"  # 40 hex, as forgejo-cli actions register takes
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWdyZXNzIn0.c2lnbmF0dXJlLWNhbmFyeQ"
BASIC = base64.b64encode(b"regress-admin:Basic-Canary-Pw").decode()


@pytest.fixture(autouse=True)
def isolated_secrets(monkeypatch):
    monkeypatch.setattr(redact_module, "_known", set())


def test_registered_token_and_password():
    register_secret("tok-canary-8f3a1c")
    register_secret("pw-Canary-91xz")
    text = "token tok-canary-8f3a1c used; login with pw-Canary-91xz."
    out = redact(text)
    assert "tok-canary-8f3a1c" not in out and "pw-Canary-91xz" not in out
    assert out.count(MASK) == 2


def test_runner_secret_and_its_first_half():
    register_secret(RUNNER_SECRET)
    assert {RUNNER_SECRET, RUNNER_SECRET[:16]} <= known_secrets()
    out = redact(f"secret-stdin={RUNNER_SECRET} uuid-part {RUNNER_SECRET[:16]} end")
    assert RUNNER_SECRET not in out and RUNNER_SECRET[:16] not in out
    assert out.endswith(" end")


def test_short_values_are_not_registered():
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert known_secrets() == frozenset()
    assert redact("abc abc") == "abc abc"


@pytest.mark.parametrize(
    ("text", "canary"),
    [
        ("Authorization: token 0a1b2c3d4e5f6a7b8c9d", "0a1b2c3d4e5f6a7b8c9d"),
        ("authorization=token shorttok", "shorttok"),
        ('{"Authorization": "token abcdefabcdef"}', "abcdefabcdef"),
        ("Authorization: Bearer bearer-canary-1234567890", "bearer-canary-1234567890"),
        ("sent bearer bearer-canary-abcdefghijkl to the server", "bearer-canary-abcdefghijkl"),
        (f"Authorization: Basic {BASIC}", BASIC),
        (f"jwt={JWT} in the log", JWT),
        (f"runtime token {JWT}", JWT),
        ("Set-Cookie: i_like_gitea=cookie-canary-42; Path=/; HttpOnly", "cookie-canary-42"),
        ("Cookie: _csrf=csrf-canary-Zz9; lang=en-US", "csrf-canary-Zz9"),
        ("X-Csrf-Token: hdr-csrf-canary-77", "hdr-csrf-canary-77"),
        ('csrfToken: "page-csrf-canary-88",', "page-csrf-canary-88"),
        ('{"password": "json-pw-canary", "user": "regress"}', "json-pw-canary"),
        ("password=form-pw-canary&user_name=regress", "form-pw-canary"),
        ("runner_token: yaml-runner-canary", "yaml-runner-canary"),
        ('"uuid": "uuid-canary-0000"', "uuid-canary-0000"),
        ("clone http://regress:url-pw-canary@172.17.0.1:3111/o/r.git", "url-pw-canary"),
        ("https://oauth2:url-tok-canary@codeberg.org/x", "url-tok-canary"),
    ],
)
def test_patterns_remove_unknown_secrets(text, canary):
    out = redact(text)
    assert canary not in out
    assert MASK in out


def test_url_user_kept_password_masked():
    assert redact("http://user:pass123@host/path") == f"http://user:{MASK}@host/path"


def test_cookie_value_only_is_masked():
    out = redact("i_like_gitea=abc123def; Path=/")
    assert out == f"i_like_gitea={MASK}; Path=/"


def test_redaction_is_idempotent_and_keeps_plain_text():
    text = 'Authorization: token 0a1b2c3d4e5f {"password": "x-y-z"} i_like_gitea=abc'
    once = redact(text)
    assert redact(once) == once
    plain = "⭐ Run Main echo a\n🏁  Job succeeded"
    assert redact(plain) == plain
    assert redact("") == ""


def test_already_redacted_recordings_stay_clean(recording_at):
    text = recording_at("forgejo-11.0.15/runner-12.1.2/native-ok").runner_log
    assert redact(text).count(MASK) >= text.count(MASK)


def test_redact_obj_masks_secret_keys_and_strings():
    register_secret("registered-canary-xyz")
    data = {
        "headers": {"Authorization": "token abc", "Cookie": "i_like_gitea=c1", "X-Csrf-Token": "zz",
                    "Content-Type": "application/json"},
        "form": {"user_name": "regress", "password": "pw-canary-1", "_csrf": "csrf-canary-2"},
        "body": ['{"token": "body-canary-3"}', "said registered-canary-xyz", 42, None],
        "tuple": ("Authorization: token tuple-canary-4",),
        "empty": {"password": "", "token": None},
    }
    out = redact_obj(data)
    dumped = json.dumps(out)
    for canary in ("abc", "c1", "pw-canary-1", "csrf-canary-2", "body-canary-3", "registered-canary-xyz",
                   "tuple-canary-4"):
        assert canary not in dumped.replace(MASK, ""), canary
    assert out["headers"]["Authorization"] == MASK and out["headers"]["Content-Type"] == "application/json"
    assert out["form"]["user_name"] == "regress"
    assert out["body"][2:] == [42, None]
    assert isinstance(out["tuple"], list)
    assert out["empty"] == {"password": "", "token": None}
    assert data["form"]["password"] == "pw-canary-1", "redact_obj must not modify its input"


def test_longest_secret_replaced_first():
    register_secret("abcdef")
    register_secret("abcdefghij")
    assert redact("x abcdefghij y") == f"x {MASK} y"


def test_json_password_with_space():
    out = redact('{"password": "correct horse battery"}')
    assert "horse" not in out and "battery" not in out
