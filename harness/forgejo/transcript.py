"""An API transcript: every HTTP exchange as one redacted JSON line.

Besides the exchanges it holds requests that got no answer (``status`` null, ``error``) and events
of the write retries (``event``: ``write-failed``, ``write-lookup``, ``write-recovered``,
``write-gave-up``), so a bundle shows every retry and why it was (not) made.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import requests

from harness.redact import redact, redact_obj

_BODY_LIMIT = 20_000


class Transcript:
    """Collects exchanges in memory; :meth:`write` dumps them (redacted) as JSON lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._t0 = time.monotonic()

    def record(self, response: requests.Response) -> None:
        """Store one exchange (hooked into ``requests`` as a response hook)."""
        request = response.request
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text[:_BODY_LIMIT]
        req_body: Any = None
        if request.body:
            raw = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
            try:
                req_body = json.loads(raw)
            except ValueError:
                req_body = "<form or binary body>"
        with self._lock:
            self._records.append(
                {
                    "seq": len(self._records) + 1,
                    "t": round(time.monotonic() - self._t0, 3),
                    "method": request.method,
                    "url": redact(request.url or ""),
                    "request_json": redact_obj(req_body),
                    "status": response.status_code,
                    "elapsed": round(response.elapsed.total_seconds(), 3),
                    "response_body": redact_obj(body),
                }
            )

    def record_error(self, method: str, url: str, body: Any, error: str) -> None:
        """Store a request that got no answer (connection refused or reset, timeout)."""
        self._append(
            {
                "method": method.upper(),
                "url": redact(url),
                "request_json": redact_obj(body),
                "status": None,
                "error": redact(error),
            }
        )

    def note(self, event: str, **fields: Any) -> None:
        """Store an event that is not an exchange (a write retry, a lookup and what it found)."""
        self._append({"event": event, **{k: redact_obj(v) for k, v in fields.items()}})

    def _append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append({"seq": len(self._records) + 1, "t": round(time.monotonic() - self._t0, 3), **record})

    def mark(self) -> int:
        """The current length, to slice what one test produced."""
        with self._lock:
            return len(self._records)

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """A copy of the records from index ``since``."""
        with self._lock:
            return list(self._records[since:])

    def write(self, path: Path, since: int = 0) -> None:
        """Write the records from ``since`` as JSON lines (already redacted)."""
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records(since)))
