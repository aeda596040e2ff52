"""harness.faults.slow_http: every request reaches the upstream, late by the delay, and is logged."""

from __future__ import annotations

import socket
import time

import pytest
import requests
from werkzeug.wrappers import Response

from harness.faults.slow_http import SlowHttpProxy


def test_get_and_post_are_forwarded_late_with_their_bodies(httpserver):
    httpserver.expect_request("/o/r.git/info/refs", query_string="service=git-upload-pack").respond_with_data(
        b"001e# service=git-upload-pack\n", content_type="application/x-git-upload-pack-advertisement")
    httpserver.expect_request("/o/r.git/git-upload-pack", method="POST", data=b"0032want abc\n").respond_with_data(
        b"PACK-bytes", content_type="application/x-git-upload-pack-result")
    with SlowHttpProxy(httpserver.url_for("/"), delay=0.3) as proxy:
        session = requests.Session()
        t0 = time.monotonic()
        refs = session.get(proxy.url + "/o/r.git/info/refs?service=git-upload-pack", timeout=10)
        pack = session.post(proxy.url + "/o/r.git/git-upload-pack", data=b"0032want abc\n", timeout=10)
        elapsed = time.monotonic() - t0
    assert refs.status_code == 200 and refs.content.startswith(b"001e# service")
    assert refs.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert pack.content == b"PACK-bytes"
    assert elapsed >= 0.6
    assert proxy.summary() == {"delay": 0.3, "bandwidth": None, "requests": 2, "added_seconds": 0.6, "statuses": [200]}
    lines = proxy.log().splitlines()
    assert lines[0].startswith("GET /o/r.git/info/refs?service=git-upload-pack → 200, 30 bytes")
    assert lines[1].startswith("POST /o/r.git/git-upload-pack → 200, 10 bytes") and "(delay 0.3s)" in lines[1]


def test_a_chunked_request_body_is_forwarded_whole(httpserver):
    seen = []

    def handler(request):
        seen.append(request.get_data())
        return Response(b"ok")

    httpserver.expect_request("/upload", method="POST").respond_with_handler(handler)
    with SlowHttpProxy(httpserver.url_for("/"), delay=0) as proxy:
        reply = requests.post(proxy.url + "/upload", data=iter([b"first-", b"second"]), timeout=10)  # chunked
    assert reply.content == b"ok" and seen == [b"first-second"]


def test_an_unreachable_upstream_answers_502_and_is_logged():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with SlowHttpProxy(f"http://127.0.0.1:{port}", delay=0) as proxy:
        reply = requests.get(proxy.url + "/x", timeout=10)
    assert reply.status_code == 502 and b"upstream unreachable" in reply.content
    assert proxy.summary()["statuses"] == [502]


def test_only_http_upstreams():
    with pytest.raises(ValueError, match="http:// URLs only"):
        SlowHttpProxy("https://example.test", delay=1)


def test_stop_closes_the_port(httpserver):
    proxy = SlowHttpProxy(httpserver.url_for("/"), delay=0).start()
    url = proxy.url
    proxy.stop()
    proxy.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/x", timeout=2)


def test_bandwidth_paces_the_answer_body(httpserver, monkeypatch):
    body = bytes(range(256)) * 400  # 100 KB
    httpserver.expect_request("/pack").respond_with_data(body)
    clock = {"now": 1000.0, "slept": 0.0}

    class FakeTime:  # a clock that moves only when the proxy sleeps: no real waiting, an exact figure
        @staticmethod
        def monotonic() -> float:
            return clock["now"]

        @staticmethod
        def sleep(seconds: float) -> None:
            clock["now"] += seconds
            clock["slept"] += seconds

    monkeypatch.setattr("harness.faults.slow_http.time", FakeTime)
    with SlowHttpProxy(httpserver.url_for("/"), delay=0, bandwidth=50_000) as proxy:
        reply = requests.get(proxy.url + "/pack", timeout=10)
    assert reply.content == body  # whole, in order, across the 16 KB slices
    slices = -(-len(body) // 16384)
    assert clock["slept"] == pytest.approx(slices * 16384 / 50_000)  # 100 KB at 50 KB/s: ~2 s of pacing asked
    assert proxy.summary()["bandwidth"] == 50_000
