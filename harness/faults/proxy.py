"""The fault proxy: an HTTP-aware TCP proxy between ONE lab runner and Forgejo, and the faults it injects.

The private runner of a fault cell is registered with the proxy's URL as its instance address, so
every runner RPC (Connect over HTTP/1.1 under ``/api/actions/``: ``FetchTask``, ``UpdateLog``,
``UpdateTask`` …) goes through it; the suite's own API traffic and the runner's action clones (the
server's ``ROOT_URL``) do not. It runs in the suite's process (a thread per connection), bound to
the address Forgejo listens on (the lab adds its port to the lab's firewall chain).

Until armed it forwards transparently. Armed with a :class:`Trigger`, it watches its own traffic
(the request bodies are read, never stored) and, when the trigger is met, applies a :class:`Fault`
until :meth:`FaultProxy.release`:

* ``blackhole``: nothing is forwarded in either direction; connections stay open (requests and
  answers are held, then delivered after the release, as a network that stalls and recovers);
* ``reset``: every open connection is reset (RST) and so is every new one;
* ``delay``: each request to the fault's RPCs waits ``delay`` seconds, then is forwarded (even when the runner
  gave up meanwhile: the server does the work late);
* ``slow-answer``: each request to the fault's RPCs is forwarded at once and its answer held ``delay`` seconds
  (the server did the work in time; the runner hears of it late, or never when it gave up);
* ``abort-upstream``: each request to the fault's RPCs is held ``delay`` seconds, then forwarded; when the
  runner closes its side while it waits, the request is dropped, never forwarded (a reverse proxy in front
  of a slow Forgejo passes the client's abort on: the work is not done);
* ``answer``: requests to ``rpc`` are answered ``status`` (a Connect error) without reaching Forgejo.

The timing modes (``delay``, ``slow-answer``, ``abort-upstream``) hit ``UpdateLog`` and ``UpdateTask`` unless
the fault names its ``rpcs``; ``FetchTask`` never (it runs under the runner's own 5 s fetch timeout).

Traffic is recorded as RPC names, times, sizes and a few protocol fields (task id, row counts,
results) — never bodies, which carry tokens and job output.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODES = ("blackhole", "reset", "delay", "slow-answer", "abort-upstream", "answer")
TIMING_MODES = ("delay", "slow-answer", "abort-upstream")  # they hold requests or answers of ``Fault.rpcs``
DEFAULT_RPCS = ("UpdateLog", "UpdateTask")
HOLDABLE_RPCS = ("UpdateLog", "UpdateTask")  # never FetchTask: it runs under the runner's own 5 s fetch timeout
RPC_PREFIX = "/api/actions/runner.v1.RunnerService/"
RESULTS = {0: "UNSPECIFIED", 1: "SUCCESS", 2: "FAILURE", 3: "CANCELLED", 4: "SKIPPED"}
MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Fault:
    """What the proxy does once triggered: ``mode`` plus its parameter (``delay`` seconds and ``rpcs`` for the
    timing modes; ``status`` and ``rpc`` for ``answer``)."""

    mode: str
    delay: float = 0.0
    status: int = 500
    rpc: str = ""  # answer: the RPC answered ``status`` (``UpdateLog``, ``UpdateTask``, ``FetchTask``)
    rpcs: tuple[str, ...] = DEFAULT_RPCS  # the timing modes: the RPCs whose requests (or answers) are held

    def hits(self, rpc: str) -> bool:
        """True when this fault acts on a request to ``rpc``."""
        if self.mode == "answer":
            return rpc == self.rpc
        if self.mode in TIMING_MODES:
            return rpc in self.rpcs
        return True

    def describe(self) -> str:
        """``blackhole``, ``reset``, ``delay 5s``, ``abort-upstream 12s on UpdateLog+UpdateTask``,
        ``answer 500 to UpdateLog``."""
        if self.mode in TIMING_MODES:
            on = "" if self.rpcs == DEFAULT_RPCS else f" on {'+'.join(self.rpcs)}"
            return f"{self.mode} {self.delay:g}s{on}"
        if self.mode == "answer":
            return f"answer {self.status} to {self.rpc}"
        return self.mode


@dataclass(frozen=True)
class Trigger:
    """When the fault starts, seen in the proxy's own traffic.

    ``log``: the runner sent a job-log line containing ``text`` and the state report of that tick
    (``UpdateLog`` then ``UpdateTask``) went through: Forgejo shows the line and every step result
    before it. ``step``: the same for ``⭐ Run Main <text>`` (a step starting), plus ``seconds`` later
    when given. ``complete_job``: the first ``UpdateLog`` with rows after the last step's result was
    reported ("Complete job"); that request already meets the fault. ``first_report``: the task's
    first ``UpdateLog`` ("Set up job" still running server-side); that request meets the fault.
    """

    kind: str
    text: str = ""
    seconds: float = 0.0

    KINDS = ("log", "step", "complete_job", "first_report")

    def describe(self) -> str:
        """A short phrase for messages and the bundle."""
        if self.kind == "log":
            return f"job-log line {self.text!r} reported"
        if self.kind == "step":
            return f"step {self.text!r} started" + (f", +{self.seconds:g}s" if self.seconds else "")
        if self.kind == "complete_job":
            return "first UpdateLog of 'Complete job'"
        return "first UpdateLog of the task ('Set up job')"

    @property
    def needle(self) -> bytes:
        """The bytes an ``UpdateLog`` body must contain (log and step triggers)."""
        text = f"⭐ Run Main {self.text}" if self.kind == "step" else self.text
        return text.encode()


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy (no bodies): what it was, what the proxy did, what came back."""

    at: float  # wall clock when the request was read
    rpc: str
    request_bytes: int
    action: str  # forwarded | held | reset | answered 500 | delayed 5s
    status: int | None  # None: no answer reached the runner
    response_bytes: int
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """For ``fault-proxy.jsonl``."""
        return {"at": round(self.at, 3), "rpc": self.rpc, "request_bytes": self.request_bytes, "action": self.action,
                "status": self.status, "response_bytes": self.response_bytes, "seconds": round(self.seconds, 3),
                **self.info}


# -- the protocol: just enough protobuf to follow a task ------------------------------------------------------


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The top-level fields of a protobuf message: ``(number, varint or bytes)``; fixed-width ones skipped.

    Raises:
        ValueError: not a protobuf message.
    """
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((number, value))
        elif wire == 2:
            length, i = _varint(buf, i)
            if i + length > len(buf):
                raise ValueError("truncated field")
            out.append((number, buf[i:i + length]))
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _get(found: list[tuple[int, int | bytes]], number: int, default: Any = 0) -> Any:
    return next((v for n, v in found if n == number), default)


def update_log_info(body: bytes) -> dict[str, Any]:
    """``UpdateLogRequest{task_id=1, index=2, rows=3, no_more=4}``: task, first row index, row count, no_more."""
    found = fields(body)
    return {"task": _get(found, 1), "index": _get(found, 2), "rows": sum(1 for n, _ in found if n == 3),
            "no_more": bool(_get(found, 4))}


def task_state_info(state: bytes) -> dict[str, Any]:
    """``TaskState{id=1, result=2, steps=5: StepState{id=1, result=2, log_index=5, log_length=6}}``."""
    found = fields(state)
    steps = []
    for number, value in found:
        if number == 5 and isinstance(value, bytes):
            step = fields(value)
            steps.append({"result": RESULTS.get(_get(step, 2), "?"), "log_index": _get(step, 5),
                          "log_length": _get(step, 6)})
    return {"task": _get(found, 1), "result": RESULTS.get(_get(found, 2), "?"), "steps": steps}


def update_task_info(body: bytes) -> dict[str, Any]:
    """``UpdateTaskRequest{state=1}`` (or the response, whose field 1 is the state too)."""
    state = _get(fields(body), 1, b"")
    return task_state_info(state) if isinstance(state, bytes) else {}


def rpc_name(path: str) -> str:
    """``/api/actions/runner.v1.RunnerService/UpdateLog`` → ``UpdateLog``; other paths as they are."""
    path = path.split("?", 1)[0]
    if path.startswith("/api/actions/"):
        return path.rsplit("/", 1)[-1]
    return path


# -- HTTP/1.1 framing ----------------------------------------------------------------------------------------------


@dataclass
class _Message:
    head: bytes  # start line + headers, as received
    first: str
    headers: dict[str, str]
    body: bytes

    def wire(self) -> bytes:
        """The message re-framed with a Content-Length (chunked bodies de-chunked)."""
        lines = self.head.split(b"\r\n")
        kept = [lines[0]] + [h for h in lines[1:] if h and not h.lower().startswith((b"content-length:",
                                                                                       b"transfer-encoding:"))]
        kept.append(f"Content-Length: {len(self.body)}".encode())
        return b"\r\n".join(kept) + b"\r\n\r\n" + self.body


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_HEADER or not self._fill():
                raise ConnectionError("connection closed mid-message")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def message(self, *, response_to: str = "") -> _Message | None:
        """One HTTP/1.1 message; None when the peer closed cleanly before it."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEADER:
                raise ConnectionError("header too large")
            if not self._fill():
                if self.buf:
                    raise ConnectionError("connection closed mid-header")
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        status = lines[0].split(" ")[1] if response_to else ""
        if response_to == "HEAD" or status in ("204", "304") or status.startswith("1"):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self.line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.line():
                        pass  # trailers
                    break
                parts.append(self.exactly(size))
                self.line()
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self.exactly(int(headers["content-length"]))
        elif response_to:  # no length: the body runs to the close
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        else:
            body = b""
        return _Message(head, lines[0], headers, body)


def plain_body(message: _Message) -> bytes:
    """The body without its Content-Encoding (gzip), for inspection only; the wire keeps the original."""
    if message.headers.get("content-encoding", "").lower() == "gzip":
        try:
            return gzip.decompress(message.body)
        except (OSError, EOFError):
            return b""
    return message.body


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def connect_error(status: int, rpc: str) -> bytes:
    """A Connect unary error response (JSON body) as the proxy answers it."""
    code = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "unimplemented",
            429: "unavailable", 502: "unavailable", 503: "unavailable", 504: "unavailable"}.get(status, "internal")
    body = json.dumps({"code": code, "message": f"regress fault proxy: {rpc} answered {status}"}).encode()
    return (f"HTTP/1.1 {status} Fault\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


# -- the proxy ---------------------------------------------------------------------------------------------------


class FaultProxy:
    """Forward a runner's RPCs to ``upstream``; inject one fault at a trigger; record the traffic.

    ``clock`` and ``wall`` are injectable for tests. ``on_fire`` is called (from a connection thread)
    with the reason when the fault starts.
    """

    def __init__(self, upstream: str, host: str = "127.0.0.1", *, timeout: float = 120.0,
                 wall: Callable[[], float] = time.time) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"the fault proxy forwards to http:// URLs only, not {upstream!r}")
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.host = host
        self.timeout = timeout
        self.wall = wall
        self.exchanges: list[Exchange] = []
        self.fault: Fault | None = None
        self.trigger: Trigger | None = None
        self.fired_at: float | None = None
        self.fired_reason = ""
        self.released_at: float | None = None
        self.on_fire: Callable[[str], None] = lambda reason: None
        self._lock = threading.Lock()
        self._flowing = threading.Event()  # cleared while a blackhole holds the traffic
        self._flowing.set()
        self._clients: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._pending_state = False  # a log/step trigger matched: fire after the tick's UpdateTask
        self._complete_from: int | None = None  # log index where "Complete job" starts (last step reported)
        self._task_reported: set[int] = set()
        self._timer: threading.Timer | None = None
        self._holding = 0  # requests or answers a blackhole or a timing mode holds right now
        self._released = threading.Event()  # set at the release (or the stop): timing holds end at once

    # -- life cycle
    @property
    def port(self) -> int:
        """The port it listens on (after :meth:`start`)."""
        assert self._listener is not None, "start() first"
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://<host>:<port>``: the instance address the runner is given."""
        return f"http://{self.host}:{self.port}"

    def start(self, port: int = 0) -> FaultProxy:
        """Listen on ``host:port`` (0: a free port) and accept in a daemon thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection (idempotent); a held blackhole is let go first."""
        self._stopped.set()
        self._released.set()
        self._flowing.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the fault
    def arm(self, trigger: Trigger, fault: Fault, on_fire: Callable[[str], None] = lambda reason: None) -> None:
        """From now on, start ``fault`` when ``trigger`` is met in the traffic."""
        with self._lock:
            self.trigger, self.fault, self.on_fire = trigger, fault, on_fire

    @property
    def holding(self) -> int:
        """How many requests or answers are held right now (each on its open connection)."""
        with self._lock:
            return self._holding

    def _hold(self) -> None:
        with self._lock:
            self._holding += 1
        try:
            self._flowing.wait()
        finally:
            with self._lock:
                self._holding -= 1

    @property
    def active(self) -> bool:
        """The fault has started and is not released."""
        return self.fired_at is not None and self.released_at is None

    def fire(self, reason: str) -> None:
        """Start the armed fault now (once)."""
        with self._lock:
            if self.fault is None or self.fired_at is not None or self._stopped.is_set():
                return
            self.fired_at, self.fired_reason = self.wall(), reason
            clients = list(self._clients) if self.fault.mode == "reset" else []
            if self.fault.mode == "blackhole":
                self._flowing.clear()
        for sock in clients:
            _reset(sock)
        self.on_fire(reason)

    def release(self) -> None:
        """End the fault (idempotent): traffic flows again, held requests and answers are delivered."""
        with self._lock:
            if self.fired_at is not None and self.released_at is None:
                self.released_at = self.wall()
            self.trigger = None
        if self._timer is not None:
            self._timer.cancel()
        self._released.set()
        self._flowing.set()

    def _wait_or_gone(self, client: socket.socket, seconds: float) -> bool:
        """Hold for ``seconds`` (less when the fault is released or the proxy stops) while watching the runner's
        side; True when the runner closed its connection meanwhile (it gave up waiting)."""
        with self._lock:
            self._holding += 1
        try:
            end = time.monotonic() + seconds
            while not (self._released.is_set() or self._stopped.is_set()):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                readable, _, _ = select.select([client], [], [], min(left, 0.2))
                if readable:
                    try:
                        peeked = client.recv(1, socket.MSG_PEEK)
                    except OSError:
                        return True
                    if not peeked:
                        return True
                    self._released.wait(min(left, 0.2))  # the runner sent more (pipelined): not a close
            return False
        finally:
            with self._lock:
                self._holding -= 1

    # -- connections
    def _accept(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.active and self.fault is not None and self.fault.mode == "reset":
                _reset(client)
                self._record(Exchange(self.wall(), "(connect)", 0, "reset", None, 0, 0.0))
                continue
            client.settimeout(None)
            with self._lock:
                self._clients.add(client)
            threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: list[socket.socket] = []  # the kept-alive connection to Forgejo, when there is one
        reader = _Reader(client)
        try:
            while not self._stopped.is_set():
                request = reader.message()
                if request is None or not self._exchange(client, request, upstream):
                    return
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            with self._lock:
                self._clients.discard(client)
            with contextlib.suppress(OSError):
                client.close()
            for sock in upstream:
                with contextlib.suppress(OSError):
                    sock.close()

    def _forward(self, request: _Message, method: str, upstream: list[socket.socket]) -> _Message | None:
        """Send ``request`` to Forgejo (on the kept connection, else a new one) and read the answer."""
        for _attempt in (0, 1):  # a kept connection Forgejo closed meanwhile: once more on a new one
            if not upstream:
                try:
                    upstream.append(socket.create_connection(self.upstream, timeout=self.timeout))
                except OSError:
                    return None
            try:
                upstream[0].sendall(request.wire())
                response = _Reader(upstream[0]).message(response_to=method)
            except (OSError, ConnectionError, ValueError):
                response = None
            if response is None or response.headers.get("connection", "").lower() == "close":
                with contextlib.suppress(OSError):
                    upstream.pop().close()
            if response is not None:
                return response
        return None

    def _exchange(self, client: socket.socket, request: _Message, upstream: list[socket.socket]) -> bool:
        """Handle one request; False when this client connection is over."""
        t0, at = time.monotonic(), self.wall()
        method, path = [*request.first.split(" "), "", ""][:2]
        rpc = rpc_name(path)
        info = self._inspect(rpc, plain_body(request))
        self._before(rpc, info)
        fault = self.fault if self.active else None
        if fault is not None and fault.mode == "reset":
            _reset(client)
            self._record(Exchange(at, rpc, len(request.body), "reset", None, 0, time.monotonic() - t0, info))
            return False
        if fault is not None and fault.mode == "answer" and fault.hits(rpc):
            answer = connect_error(fault.status, rpc)
            self._record(Exchange(at, rpc, len(request.body), f"answered {fault.status}", fault.status, len(answer),
                                  time.monotonic() - t0, info))
            client.sendall(answer)
            return True
        action = "forwarded"
        timed = fault if fault is not None and fault.mode in TIMING_MODES and fault.hits(rpc) else None
        if timed is not None and timed.mode in ("delay", "abort-upstream"):
            gone = self._wait_or_gone(client, timed.delay)
            if gone and timed.mode == "abort-upstream":
                self._record(Exchange(at, rpc, len(request.body), "dropped (the runner gave up after "
                                      f"{time.monotonic() - t0:.1f}s)", None, 0, time.monotonic() - t0, info))
                return False
            waited = time.monotonic() - t0
            held = f"{timed.delay:g}s" if waited >= timed.delay else f"{waited:.1f}s (released early)"
            action = (f"delayed {held}" if timed.mode == "delay" else f"held {held}") + (
                " (the runner gave up meanwhile)" if gone else "")
        if not self._flowing.is_set():
            action = "held"
            self._hold()
        if self._stopped.is_set():
            return False
        response = self._forward(request, method, upstream)
        if response is None:
            answer = connect_error(502, rpc)
            self._record(Exchange(at, rpc, len(request.body), action + " (upstream lost: 502)", 502, len(answer),
                                  time.monotonic() - t0, info))
            client.sendall(answer)
            return True
        if not self._flowing.is_set():  # the answer came while a blackhole started: hold it too
            action = "held"
            self._hold()
        if timed is not None and timed.mode == "slow-answer":
            gone = self._wait_or_gone(client, timed.delay)
            action = f"answer held {timed.delay:g}s"
            if gone:
                self._record(Exchange(at, rpc, len(request.body), action + " (the runner gave up: answer dropped)",
                                      int(response.first.split(" ")[1]), 0, time.monotonic() - t0, info))
                return False
        if self.active and self.fault is not None and self.fault.mode == "reset":
            _reset(client)
            self._record(Exchange(at, rpc, len(request.body), "reset", None, 0, time.monotonic() - t0, info))
            return False
        status = int(response.first.split(" ")[1])
        if rpc == "UpdateTask" and status == 200:
            with contextlib.suppress(ValueError):
                server = update_task_info(plain_body(response))
                if server.get("result") not in (None, "UNSPECIFIED"):
                    info = {**info, "server_result": server["result"]}
        self._record(Exchange(at, rpc, len(request.body), action, status, len(response.body), time.monotonic() - t0,
                              info))
        self._after(rpc, info, status)  # before the runner has the answer: its next request meets the fault
        client.sendall(response.wire())
        return True

    # -- triggers
    def _inspect(self, rpc: str, body: bytes) -> dict[str, Any]:
        """Protocol fields of a request (and trigger matches), without keeping the body."""
        info: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            if rpc == "UpdateLog":
                info = update_log_info(body)
                trigger = self.trigger
                if trigger is not None and trigger.kind in ("log", "step") and trigger.needle in body:
                    info["trigger_line"] = True
            elif rpc == "UpdateTask":
                state = update_task_info(body)
                info = {"task": state.get("task"), "result": state.get("result"),
                        "steps": "".join(s["result"][0] for s in state.get("steps", [])) or "-"}
                steps = state.get("steps") or []
                if steps and steps[-1]["result"] != "UNSPECIFIED" and self._complete_from is None:
                    self._complete_from = steps[-1]["log_index"] + steps[-1]["log_length"]
        return info

    def _before(self, rpc: str, info: dict[str, Any]) -> None:
        trigger = self.trigger
        if trigger is None or self.fired_at is not None or rpc != "UpdateLog":
            return
        first = trigger.kind == "first_report" and info.get("task") not in self._task_reported
        complete = (trigger.kind == "complete_job" and self._complete_from is not None and bool(info.get("rows"))
                    and info.get("index", 0) + info["rows"] > self._complete_from)
        if first or complete:
            self.fire(trigger.describe())
        if info.get("task"):
            self._task_reported.add(info["task"])

    def _after(self, rpc: str, info: dict[str, Any], status: int) -> None:
        trigger = self.trigger
        if trigger is None or self.fired_at is not None or status != 200:
            return
        if info.get("trigger_line"):
            self._pending_state = True  # fire once this tick's UpdateTask went through
        elif rpc == "UpdateTask" and self._pending_state:
            self._pending_state = False
            if trigger.seconds:
                self._timer = threading.Timer(trigger.seconds, self.fire, args=(trigger.describe(),))
                self._timer.daemon = True
                self._timer.start()
            else:
                self.fire(trigger.describe())

    # -- the record
    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def log(self) -> str:
        """Every exchange as JSON lines, with the fault's start and release in between."""
        with self._lock:
            events = [(e.at, json.dumps(e.to_json())) for e in self.exchanges]
            if self.fired_at is not None:
                events.append((self.fired_at, json.dumps({"at": round(self.fired_at, 3), "event": "fault started",
                                                          "fault": self.fault.describe() if self.fault else "",
                                                          "trigger": self.fired_reason})))
            if self.released_at is not None:
                events.append((self.released_at, json.dumps({"at": round(self.released_at, 3),
                                                             "event": "fault released"})))
        return "".join(line + "\n" for _, line in sorted(events, key=lambda e: e[0]))

    def summary(self) -> dict[str, Any]:
        """Counts per RPC and action, the fault's times, the last result the server answered."""
        with self._lock:
            exchanges = list(self.exchanges)
        per_rpc: dict[str, dict[str, int]] = {}
        for e in exchanges:
            counts = per_rpc.setdefault(e.rpc, {})
            counts[e.action] = counts.get(e.action, 0) + 1
        server = [e.info["server_result"] for e in exchanges if "server_result" in e.info]
        return {"fault": self.fault.describe() if self.fault else None, "fired_at": self.fired_at,
                "trigger": self.fired_reason or None, "released_at": self.released_at, "requests": per_rpc,
                "server_result_seen": server[-1] if server else None}

    def since(self, moment: float) -> list[Exchange]:
        """The exchanges read at or after ``moment`` (wall clock)."""
        with self._lock:
            return [e for e in self.exchanges if e.at >= moment]
