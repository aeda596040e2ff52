"""A slow action server: a reverse proxy on loopback that delays every request to Forgejo.

The ``slow_actions`` fault of a scenario: its workflow fetches an action through this proxy
(``uses: __SLOW_ACTIONS_URL__/owner/name@ref``), so each HTTP request of the runner's git fetch
waits ``delay`` seconds before it reaches the real Forgejo, as with a distant or overloaded git
server. The runner spends that time in "Set up job", which is what the setup budget must catch.

Runs in the suite's own process (a thread per connection), bound to 127.0.0.1 only; lab runners
fetch actions from the host, so loopback reaches them. Every request is logged for the bundle.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.budgets import BUDGETS
from harness.errors import PollTimeout
from harness.waiting import wait_for

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "host", "expect"}


@dataclass(frozen=True)
class Forwarded:
    """One request that went through the proxy."""

    method: str
    path: str
    status: int  # 502 when the upstream could not be reached
    response_bytes: int
    delay: float
    seconds: float  # delay + upstream time

    def line(self) -> str:
        """``GET /regress/x.git/info/refs?service=git-upload-pack → 200, 1234 bytes, 4.01s (delay 4s)``."""
        return (f"{self.method} {self.path} → {self.status}, {self.response_bytes} bytes, {self.seconds:.2f}s "
                f"(delay {self.delay:g}s)")


class SlowHttpProxy:
    """Forward every request to ``upstream`` after ``delay`` seconds; ``url`` is where it listens."""

    def __init__(self, upstream: str, delay: float, *, timeout: float = 60.0, bandwidth: float | None = None) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"the slow action server forwards to http:// URLs only, not {upstream!r}")
        self.upstream_host = parsed.hostname
        self.upstream_port = parsed.port or 80
        self.delay = delay
        self.bandwidth = bandwidth  # bytes per second of each answer's body (None: as fast as loopback goes)
        self.timeout = timeout
        self.forwarded: list[Forwarded] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (after :meth:`start`)."""
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SlowHttpProxy:
        """Listen on a free loopback port and serve in a daemon thread."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as git clients expect

            def log_message(self, format: str, *args: Any) -> None:
                pass  # requests are kept in proxy.forwarded instead

            def _forward(self) -> None:
                with proxy._lock:
                    proxy._in_flight += 1
                try:
                    self._forward_late()
                finally:
                    with proxy._lock:
                        proxy._in_flight -= 1

            def _forward_late(self) -> None:
                t0 = time.monotonic()
                body = self._read_body()
                time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                try:
                    conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=proxy.timeout)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        response = conn.getresponse()
                        payload = response.read()
                        status, reason, reply_headers = response.status, response.reason, response.getheaders()
                    finally:
                        conn.close()
                except OSError as exc:
                    status, reason, reply_headers = 502, "Bad Gateway", [("Content-Type", "text/plain")]
                    payload = f"slow action server: upstream unreachable: {exc}\n".encode()
                self.send_response(status, reason)
                for key, value in reply_headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    proxy._send(self.wfile, payload)
                with proxy._lock:
                    proxy.forwarded.append(Forwarded(self.command, self.path, status, len(payload), proxy.delay,
                                                     round(time.monotonic() - t0, 3)))

            def _read_body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_POST = do_HEAD = _forward  # http.server dispatches by these names

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # an idle keep-alive connection must not hold stop() up
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="slow-action-server", daemon=True)
        self._thread.start()
        return self

    def _send(self, out: Any, payload: bytes) -> None:
        """Write an answer's body, at ``bandwidth`` bytes per second when one is set (in 16 KB slices)."""
        if not self.bandwidth:
            out.write(payload)
            return
        t0, step = time.monotonic(), 16384
        for offset in range(0, len(payload), step):
            out.write(payload[offset:offset + step])
            ahead = t0 + (offset + step) / self.bandwidth - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def stop(self) -> None:
        """Stop listening (idempotent), after the requests in flight are answered (at most the
        ``proxy_settle`` budget beyond their delay), so the log is complete."""
        if self._server is not None:
            with contextlib.suppress(PollTimeout):  # stop anyway; the log then lacks the unanswered ones
                wait_for("the slow action server's requests in flight", "proxy_settle", lambda: self._in_flight,
                         lambda n: n == 0, budget=self.delay + BUDGETS.proxy_settle, wait=lambda _: 0.02)
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def log(self) -> str:
        """Every forwarded request, one line each."""
        with self._lock:
            return "".join(f.line() + "\n" for f in self.forwarded)

    def summary(self) -> dict[str, Any]:
        """Delay, request count and the time the delays added (for the cell's observations)."""
        with self._lock:
            return {"delay": self.delay, "bandwidth": self.bandwidth, "requests": len(self.forwarded),
                    "added_seconds": round(self.delay * len(self.forwarded), 2),
                    "statuses": sorted({f.status for f in self.forwarded})}

    def __enter__(self) -> SlowHttpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
