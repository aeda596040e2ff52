"""The fault proxy against loopback sockets: a fake Forgejo answering Connect RPCs, a client playing the runner."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.faults.proxy import (
    RPC_PREFIX,
    Fault,
    FaultProxy,
    Trigger,
    fields,
    rpc_name,
    update_log_info,
    update_task_info,
)
from harness.waiting import wait_for


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def update_log(task: int, index: int, rows: list[str], no_more: bool = False) -> bytes:
    body = field(1, task) + field(2, index)
    for row in rows:
        body += field(3, field(2, row.encode()))
    return body + (field(4, 1) if no_more else b"")


def update_task(task: int, result: int, steps: list[tuple[int, int, int]]) -> bytes:
    state = field(1, task) + (field(2, result) if result else b"")
    for step_result, log_index, log_length in steps:
        state += field(5, field(2, step_result) + field(5, log_index) + field(6, log_length))
    return field(1, state)


class FakeForgejo:
    """Answers every RPC 200 (UpdateTask echoes a FAILURE result when told to); counts what arrived."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.server_result = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rpc = self.path.rsplit("/", 1)[-1]
                fake.received.append(rpc)
                answer = update_task(1, fake.server_result, []) if rpc == "UpdateTask" else field(1, len(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/proto")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def forgejo() -> Iterator[FakeForgejo]:
    fake = FakeForgejo()
    yield fake
    fake.close()


@pytest.fixture
def proxy(forgejo: FakeForgejo) -> Iterator[FaultProxy]:
    with FaultProxy(forgejo.url) as p:
        yield p


def call(conn: http.client.HTTPConnection, rpc: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", RPC_PREFIX + rpc, body=body, headers={"Content-Type": "application/proto"})
    response = conn.getresponse()
    return response.status, response.read()


def client(proxy: FaultProxy, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)


def test_protocol_fields_are_read_without_the_body() -> None:
    assert rpc_name(RPC_PREFIX + "UpdateLog") == "UpdateLog"
    assert update_log_info(update_log(7, 3, ["a", "b"], no_more=True)) == {"task": 7, "index": 3, "rows": 2,
                                                                          "no_more": True}
    info = update_task_info(update_task(7, 1, [(1, 0, 4), (2, 4, 2)]))
    assert info["result"] == "SUCCESS" and [s["result"] for s in info["steps"]] == ["SUCCESS", "FAILURE"]
    with pytest.raises(ValueError):
        fields(b"\x0a\x05ab")  # a length beyond the message


def test_forwards_transparently_until_triggered_and_records_no_bodies(proxy: FaultProxy,
                                                                      forgejo: FakeForgejo) -> None:
    conn = client(proxy)
    status, _ = call(conn, "UpdateLog", update_log(1, 0, ["secret-ish output"]))
    assert status == 200
    status, _ = call(conn, "UpdateTask", update_task(1, 0, [(0, 0, 0)]))
    assert status == 200
    assert forgejo.received == ["UpdateLog", "UpdateTask"]
    assert [e.action for e in proxy.exchanges] == ["forwarded", "forwarded"]
    assert "secret-ish" not in proxy.log()
    assert proxy.summary()["requests"] == {"UpdateLog": {"forwarded": 1}, "UpdateTask": {"forwarded": 1}}


def test_answer_500_to_one_rpc_at_complete_job(proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    fired: list[str] = []
    proxy.arm(Trigger("complete_job"), Fault("answer", status=500, rpc="UpdateLog"), fired.append)
    conn = client(proxy)
    assert call(conn, "UpdateLog", update_log(1, 0, ["set up", "step"]))[0] == 200
    assert call(conn, "UpdateTask", update_task(1, 0, [(1, 0, 2)]))[0] == 200  # the last step has its result
    status, body = call(conn, "UpdateLog", update_log(1, 2, ["⭐ Run Post x"]))
    assert status == 500 and b"internal" in body
    assert call(conn, "UpdateTask", update_task(1, 1, [(1, 0, 2)]))[0] == 200  # other RPCs still go through
    assert fired == ["first UpdateLog of 'Complete job'"]
    assert forgejo.received == ["UpdateLog", "UpdateTask", "UpdateTask"]
    proxy.release()
    assert call(conn, "UpdateLog", update_log(1, 2, ["⭐ Run Post x"], no_more=True))[0] == 200
    assert proxy.summary()["requests"]["UpdateLog"] == {"forwarded": 2, "answered 500": 1}


def test_log_trigger_fires_after_the_ticks_state_report(proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    proxy.arm(Trigger("log", "⭐ Run Post"), Fault("answer", status=503, rpc="UpdateTask"))
    conn = client(proxy)
    assert call(conn, "UpdateLog", update_log(1, 0, ["⭐ Run Post regress/slow-post@v1"]))[0] == 200
    assert not proxy.active  # the tick's UpdateTask must reach Forgejo first (every step result before the line)
    assert call(conn, "UpdateTask", update_task(1, 0, [(1, 0, 1)]))[0] == 200
    assert proxy.active
    assert call(conn, "UpdateTask", update_task(1, 0, [(1, 0, 1)]))[0] == 503


def test_blackhole_holds_both_ways_keeps_the_connection_and_delivers_after_release(
        proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    proxy.arm(Trigger("first_report"), Fault("blackhole"))
    conn = client(proxy, timeout=0.5)
    with pytest.raises(TimeoutError):
        call(conn, "UpdateLog", update_log(1, 0, ["set up"]))
    assert forgejo.received == [] and proxy.active
    late = client(proxy, timeout=10)
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(call(late, "UpdateTask", update_task(1, 0, []))[0]))
    thread.start()
    wait_for("the proxy to hold the second request too", "fault_quiet", lambda: proxy.holding, lambda n: n == 2,
             budget=5.0)
    assert answers == [] and forgejo.received == []  # held, connection open
    proxy.release()
    thread.join(5)
    assert answers == [200]
    # the first one's client gave up: no answer to wait for, only its delivery upstream
    wait_for("the held requests delivered upstream", "fault_quiet", lambda: sorted(forgejo.received),
             lambda got: len(got) >= 2, budget=5.0)
    assert sorted(forgejo.received) == ["UpdateLog", "UpdateTask"]  # the held request went on after the release
    assert {e.action for e in proxy.exchanges} == {"held"}


def test_reset_resets_open_and_new_connections(proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    conn = client(proxy)
    assert call(conn, "FetchTask", b"")[0] == 200
    proxy.arm(Trigger("first_report"), Fault("reset"))
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        call(conn, "UpdateLog", update_log(1, 0, ["set up"]))
    again = client(proxy)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        call(again, "UpdateTask", update_task(1, 0, []))
    proxy.release()
    assert call(client(proxy), "UpdateTask", update_task(1, 0, []))[0] == 200
    assert forgejo.received == ["FetchTask", "UpdateTask"]


def test_delay_and_the_server_result_seen(proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    forgejo.server_result = 2
    proxy.arm(Trigger("first_report"), Fault("delay", delay=0.4))
    conn = client(proxy)
    t0 = time.monotonic()
    assert call(conn, "UpdateLog", update_log(1, 0, ["x"]))[0] == 200
    assert time.monotonic() - t0 >= 0.4
    assert call(conn, "UpdateTask", update_task(1, 1, []))[0] == 200
    assert proxy.exchanges[0].action == "delayed 0.4s"
    assert proxy.summary()["server_result_seen"] == "FAILURE"


def test_stop_lets_go_of_a_held_request(proxy: FaultProxy) -> None:
    proxy.arm(Trigger("first_report"), Fault("blackhole"))
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    body = update_log(1, 0, ["x"])
    sock.sendall(f"POST {RPC_PREFIX}UpdateLog HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                 + body)
    wait_for("the proxy to hold the request", "fault_quiet", lambda: proxy.holding, lambda n: n == 1, budget=5.0)
    proxy.stop()
    sock.settimeout(2)
    assert sock.recv(100) == b""  # closed, not hanging
    sock.close()


def raw_request(proxy: FaultProxy, rpc: str, body: bytes) -> socket.socket:
    """A request written by hand on its own connection (the test decides when the runner's side closes)."""
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(f"POST {RPC_PREFIX}{rpc} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def test_abort_upstream_drops_a_request_whose_runner_gave_up(proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    proxy.arm(Trigger("first_report"), Fault("abort-upstream", delay=30))
    sock = raw_request(proxy, "UpdateLog", update_log(1, 0, ["x"]))
    wait_for("the proxy to hold the request", "fault_quiet", lambda: proxy.holding, lambda n: n == 1, budget=5.0)
    sock.close()  # the runner's client timeout
    wait_for("the dropped request's record", "fault_quiet", lambda: [e.action for e in proxy.exchanges],
             lambda actions: bool(actions), budget=5.0)
    assert proxy.exchanges[0].action.startswith("dropped (the runner gave up after")
    assert proxy.exchanges[0].status is None
    assert forgejo.received == []  # never forwarded: the work is not done


def test_abort_upstream_forwards_after_the_hold_when_the_runner_waits(proxy: FaultProxy,
                                                                      forgejo: FakeForgejo) -> None:
    proxy.arm(Trigger("first_report"), Fault("abort-upstream", delay=0.5))
    conn = client(proxy)
    t0 = time.monotonic()
    assert call(conn, "UpdateLog", update_log(1, 0, ["x"]))[0] == 200
    assert time.monotonic() - t0 >= 0.5
    assert call(conn, "FetchTask", b"")[0] == 200  # never held
    assert forgejo.received == ["UpdateLog", "FetchTask"]
    assert [e.action for e in proxy.exchanges] == ["held 0.5s", "forwarded"]


def test_slow_answer_forwards_at_once_and_drops_the_answer_of_a_runner_that_gave_up(
        proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    proxy.arm(Trigger("first_report"), Fault("slow-answer", delay=30, rpcs=("UpdateLog",)))
    sock = raw_request(proxy, "UpdateLog", update_log(1, 0, ["x"]))
    wait_for("the proxy to hold the answer", "fault_quiet", lambda: proxy.holding, lambda n: n == 1, budget=5.0)
    assert forgejo.received == ["UpdateLog"]  # the server did the work in time
    sock.close()
    wait_for("the dropped answer's record", "fault_quiet", lambda: [e.action for e in proxy.exchanges],
             lambda actions: bool(actions), budget=5.0)
    assert proxy.exchanges[0].action == "answer held 30s (the runner gave up: answer dropped)"
    assert proxy.exchanges[0].status == 200


def test_a_held_answer_is_delivered_at_the_release(proxy: FaultProxy, forgejo: FakeForgejo) -> None:
    proxy.arm(Trigger("first_report"), Fault("slow-answer", delay=60))
    proxy.fire("test")  # UpdateTask does not trigger first_report: start the fault by hand
    sock = raw_request(proxy, "UpdateTask", update_task(1, 0, []))
    wait_for("the proxy to hold the answer", "fault_quiet", lambda: proxy.holding, lambda n: n == 1, budget=5.0)
    proxy.release()
    sock.settimeout(5)
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    sock.close()
