"""A real HTTP server on 127.0.0.1 that replays one recorded Forgejo scenario (test helper, not a test).

The recordings (``tests/data/recordings/forgejo-*/runner-*/<scenario>/exchanges.jsonl``, see the README
there) hold every exchange of a real Forgejo × runner session. :class:`ReplayServer` answers each request
with the next recorded exchange of the same method and path (one cursor per method + path; when a path's
records are used up it keeps answering with the last one), so a client polling the job view walks through
the recorded states in order.

What the recordings do not hold is added the way Forgejo does it:

- cookies: every cookie name the recording lists is set with a fresh value; ``_csrf`` is always set on
  ``GET /`` and ``GET /user/login``, ``i_like_gitea`` on ``POST /user/login``. A successful login deletes
  ``_csrf`` and invalidates every CSRF token issued before it (the token is bound to the user).
- CSRF: a web ``POST`` (every non-``/api/`` path but ``/user/login``) must carry an ``X-Csrf-Token`` header
  equal to a currently valid token, else 400 ``Invalid CSRF token.``.
- with ``csrf_in_html`` the ``<redacted>`` placeholders of HTML pages are replaced by the live CSRF token, as
  a real page carries it (``csrfToken: '…'``, ``x-csrf-token``, ``<input name="_csrf" value="…">``).
- gates: a recorded exchange that came after a recorded gate request (by default the run cancel) is only
  served once the client has sent that request; until then the path repeats its previous answer. Without
  this a never-picked job would turn ``cancelled`` by itself after a few polls.

Faults (:class:`Fault`) are applied on top: an error status, a connection reset, or a delay, on the n-th
request whose path matches a regex. A faulted request (status or reset) does not advance the cursor,
unless the fault is ``lost``: then the server does the request (the recorded answer is used up, as a
write that happened) and only the answer is lost on the way back (the status or reset is sent instead).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.budgets import BUDGETS, Budgets

RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recordings"

JOB_VIEW = re.compile(r"^/[^/]+/[^/]+/actions/runs/\d+/jobs/\d+(?:/attempt/\d+)?$")
CANCEL = r"/actions/runs/\d+/cancel$"
REDACTED = "<redacted>"


def fast_sleep(seconds: float) -> None:
    """Real but short sleeps for ``watch_job(sleep=...)``: tenacity's stop_after_delay reads the real clock."""
    time.sleep(min(seconds, 0.01))


def small_budgets(**changes: float) -> Budgets:
    """Budgets of a few seconds, so a stuck watch fails fast instead of hanging the suite."""
    values = {"run_appears": 3.0, "pickup": 3.0, "job_done": 8.0}
    values.update(changes)
    return replace(BUDGETS, **values)


def scenario_dir(forgejo: str, runner: str, scenario: str) -> Path:
    """``tests/data/recordings/forgejo-<forgejo>/runner-<runner>/<scenario>``."""
    return RECORDINGS / f"forgejo-{forgejo}" / f"runner-{runner}" / scenario


def load_exchanges(directory: Path) -> list[dict[str, Any]]:
    """The recorded exchanges of one scenario, in order."""
    lines = (directory / "exchanges.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_meta(directory: Path) -> dict[str, Any]:
    """The scenario's ``meta.json``."""
    return dict(json.loads((directory / "meta.json").read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Fault:
    """Break the ``nth`` (1-based) request whose path matches ``path`` (and ``method``, when given).

    Exactly one of ``status`` (answer this status instead of the recording), ``reset`` (close the socket
    without answering) or ``delay`` (seconds to wait before answering normally) should be set. With
    ``lost`` the request is served first (its recorded answer used up) and the status or reset replaces
    only the answer: the server did it, the client does not know.
    """

    path: str
    nth: int = 1
    method: str | None = None
    status: int | None = None
    body: str = ""
    reset: bool = False
    delay: float = 0.0
    lost: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and re.search(self.path, path) is not None


@dataclass
class Seen:
    """One request the server received and what it did with it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # None: the connection was reset
    seq: int | None = None  # the recorded exchange served, None for faults and misses
    fault: Fault | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Reply:
    status: int
    content_type: str = ""
    location: str = ""
    cookies: list[str] = field(default_factory=list)
    body: bytes = b""


class ReplayServer:
    """Replays ``exchanges`` on ``http://127.0.0.1:<free port>``; use as a context manager or start/stop."""

    def __init__(
        self,
        exchanges: Sequence[Mapping[str, Any]],
        *,
        faults: Iterable[Fault] = (),
        gates: Iterable[str] = (CANCEL,),
        csrf_in_html: bool = False,
    ) -> None:
        self.exchanges = [dict(e) for e in exchanges]
        self.faults = list(faults)
        self.csrf_in_html = csrf_in_html
        self.seen: list[Seen] = []
        self.issued_cookies: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in self.exchanges:
            self._by_key.setdefault((record["method"].upper(), record["url_path"]), []).append(record)
        self._cursor: dict[tuple[str, str], int] = {}
        self._fault_counts = [0] * len(self.faults)
        gate_res = [re.compile(g) for g in gates]
        self._gates = [
            r for r in self.exchanges if r["method"].upper() == "POST" and any(g.search(r["url_path"]) for g in gate_res)
        ]
        self._gate_seqs = {int(g["seq"]) for g in self._gates}
        self._gates_passed: set[int] = set()
        self._valid_csrf: set[str] = set()
        self._csrf = ""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def from_dir(cls, directory: Path, **kwargs: Any) -> ReplayServer:
        return cls(load_exchanges(directory), **kwargs)

    def start(self) -> ReplayServer:
        server = self

        class Handler(_Handler):
            replay = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="replay-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- queries for tests -------------------------------------------------------------------------
    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """Requests seen, optionally filtered by method and a path regex."""
        with self._lock:
            seen = list(self.seen)
        return [
            s for s in seen if (method is None or s.method == method.upper()) and (path is None or re.search(path, s.path))
        ]

    def served(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """Requests the server carried out (a recorded exchange was used up), lost answers included."""
        return [s for s in self.requests(method, path) if s.seq is not None]

    def misses(self) -> list[Seen]:
        """Requests for which nothing was recorded (answered 404 by the replay itself)."""
        return [s for s in self.requests() if s.seq is None and s.fault is None and s.status == 404]

    def cookie_values(self) -> list[str]:
        """Every non-empty cookie value the server handed out."""
        with self._lock:
            return [v for values in self.issued_cookies.values() for v in values if v]

    # -- the replay --------------------------------------------------------------------------------
    def _fault_for(self, method: str, path: str) -> Fault | None:
        hit = None
        for i, fault in enumerate(self.faults):
            if fault.matches(method, path):
                self._fault_counts[i] += 1
                if self._fault_counts[i] == fault.nth and hit is None:
                    hit = fault
        return hit

    def _available(self, record: Mapping[str, Any]) -> bool:
        return all(g["seq"] in self._gates_passed for g in self._gates if g["seq"] < record["seq"])

    def _next(self, method: str, path: str) -> dict[str, Any] | None:
        records = self._by_key.get((method, path))
        if not records:
            return None
        cursor = self._cursor.get((method, path), 0)
        if cursor < len(records) and (cursor == 0 or self._available(records[cursor])):
            record = records[cursor]
            self._cursor[(method, path)] = cursor + 1
        else:
            record = records[min(cursor, len(records)) - 1]
        if record["seq"] in self._gate_seqs:
            self._gates_passed.add(record["seq"])
        return record

    def _cookie(self, name: str) -> str:
        value = secrets.token_urlsafe(20) if name == "_csrf" else f"{name}-{secrets.token_hex(8)}"
        self.issued_cookies.setdefault(name, []).append(value)
        if name == "_csrf":
            self._valid_csrf.add(value)
            self._csrf = value
        return f"{name}={value}; Path=/; HttpOnly; SameSite=Lax"

    def _cookies_for(self, method: str, path: str, status: int, recorded: Iterable[str]) -> list[str]:
        names = list(dict.fromkeys(recorded))
        login = method == "POST" and path == "/user/login" and status in (302, 303)
        if method == "GET" and path in ("/", "/user/login") and "_csrf" not in names:
            names.append("_csrf")
        if login and "i_like_gitea" not in names:
            names.append("i_like_gitea")
        headers = []
        if login:  # the session now belongs to the user: older CSRF tokens are void, the cookie is deleted
            self._valid_csrf.clear()
            self._csrf = ""
        for name in names:
            if login and name == "_csrf":
                headers.append("_csrf=; Path=/; Max-Age=0")
            else:
                headers.append(self._cookie(name))
        return headers

    def _body(self, record: Mapping[str, Any], content_type: str) -> bytes:
        body = record.get("response_body")
        if body is None:
            return b""
        if isinstance(body, str):
            if self.csrf_in_html and "html" in content_type and self._csrf:
                body = body.replace(REDACTED, self._csrf)
            return body.encode("utf-8")
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def handle(self, seen: Seen) -> _Reply | None:
        """The reply for one request (None: reset the connection). Called by the handler threads."""
        fault: Fault | None
        with self._lock:
            self.seen.append(seen)
            fault = self._fault_for(seen.method, seen.path)
            seen.fault = fault
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        with self._lock:
            if fault is not None and fault.lost:  # the server does it; only the answer is lost
                done = self._next(seen.method, seen.path)
                seen.seq = int(done["seq"]) if done is not None else None
            if fault is not None and fault.reset:
                return None
            if fault is not None and fault.status is not None:
                seen.status = fault.status
                return _Reply(
                    fault.status,
                    "text/plain; charset=utf-8",
                    body=(fault.body or f"replay fault: HTTP {fault.status}\n").encode(),
                )
            web_post = seen.method == "POST" and not seen.path.startswith("/api/") and seen.path != "/user/login"
            if web_post and seen.headers.get("x-csrf-token", "") not in self._valid_csrf:
                seen.status = 400
                return _Reply(400, "text/plain; charset=utf-8", body=b"Invalid CSRF token.\n")
            record = self._next(seen.method, seen.path)
            if record is None:
                seen.status = 404
                return _Reply(
                    404,
                    "text/plain; charset=utf-8",
                    body=f"replay: nothing recorded for {seen.method} {seen.path}\n".encode(),
                )
            headers = record.get("response_headers") or {}
            content_type = str(headers.get("Content-Type") or "")
            status = int(record["status"])
            reply = _Reply(
                status,
                content_type,
                str(headers.get("Location") or ""),
                self._cookies_for(seen.method, seen.path, status, headers.get("Set-Cookie") or ()),
            )
            reply.body = self._body(record, content_type)
            seen.status, seen.seq = status, int(record["seq"])
            return reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    replay: ReplayServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms a request
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        seen = Seen(self.command.upper(), parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}, body)
        reply = self.replay.handle(seen)
        if reply is None:
            # RST instead of FIN: SO_LINGER with a zero timeout, then close without a byte of answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            if reply.location:
                self.send_header("Location", reply.location)
            for cookie in reply.cookies:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:  # the client gave up (a delay longer than its read timeout)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve
