"""Redaction: the one place that keeps secrets out of bundles, logs, the terminal and JUnit.

Two layers: every secret the suite knows (registered with :func:`register_secret`) is replaced
wherever it appears, and patterns catch the kinds it may not know (Authorization headers, JWTs,
Forgejo session and CSRF cookies, runner tokens, ``token``/``password``/``secret`` fields).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "<redacted>"
_lock = threading.Lock()
_known: set[str] = set()

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Authorization headers: token, bearer, basic
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:token|bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\b((?:token|bearer|basic)\s+)[A-Za-z0-9._~+/=-]{16,}"),
    # JWTs
    re.compile(r"()\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    # Forgejo cookies and CSRF tokens
    re.compile(r"(?i)((?:i_like_gitea|_csrf|gitea_incredible|csrftoken|x-csrf-token)[\"']?\s*[=:]\s*[\"']?)[^;\s\"',]+"),
    re.compile(r"(?i)(csrfToken[\"']?\s*[:=]\s*[\"'])[^\"']+"),
    # hidden form fields: <input type="hidden" name="_csrf" value="…">
    re.compile(r"(?i)(name=[\"']_csrf[\"'][^>]*?value=[\"'])[^\"']+"),
    re.compile(r"(?i)(value=[\"'])[^\"']+(?=[\"'][^>]*?name=[\"']_csrf[\"'])"),
    # key/value secrets in JSON, YAML, ini, env and URLs: quoted values to the closing quote, then bare ones
    re.compile(
        r"(?i)([\"']?\b(?:password|passwd|secret|token|sha1|access_token|runner_token|"
        r"x-runner-token|registration_token|internal_token|jwt_secret|secret_key)[\"']?\s*[:=]\s*\")"
        r"(?!<redacted>)[^\"]+"
    ),
    re.compile(
        r"(?i)([\"']?\b(?:password|passwd|secret|token|sha1|access_token|runner_token|"
        r"x-runner-token|registration_token|internal_token|jwt_secret|secret_key|uuid)[\"']?\s*[:=]\s*[\"']?)"
        r"(?!<redacted>)[^\s\"',&}]+"
    ),
    # credentials in URLs
    re.compile(r"(://[^/\s:@]+:)[^@/\s]+(@)"),
)


def register_secret(value: str | None) -> None:
    """Remember a secret so every later :func:`redact` removes it (values shorter than 6 are ignored)."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)
            if len(value) >= 32:  # runner secrets are also used as halves (uuid bytes, token parts)
                _known.add(value[:16])
                _known.add(value[16:])


def known_secrets() -> frozenset[str]:
    """The registered secrets (for tests that grep written files)."""
    with _lock:
        return frozenset(_known)


def redact(text: str) -> str:
    """Text with every known secret and every secret-looking pattern masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: m.group(1) + MASK + m.group(2), text)
        else:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


_SECRET_KEYS = re.compile(
    r"(?i)^(authorization|cookie|set-cookie|password|passwd|secret|token|sha1|x-csrf-token|_csrf|"
    r"runner_token|x-runner-token|internal_token|jwt_secret|secret_key)$"
)


def redact_obj(value: Any) -> Any:
    """A deep copy of a JSON-like value with secret keys masked and every string redacted."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if _SECRET_KEYS.match(str(k)) and v not in (None, "") else redact_obj(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
