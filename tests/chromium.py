"""Open a local page in Debian's headless chromium and see what it did, over the DevTools protocol (websocket-client).

For the report.html tests: every request the page made (the page's own ``file://`` load first), the rendered size of
every ``<svg>``, the DOM after load and a full-page screenshot. Runs as root with ``--no-sandbox``.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket  # websocket-client
from PIL import Image

NAMES = ("chromium", "chromium-browser")
SIZES = ("JSON.stringify([...document.querySelectorAll('svg')].map(s => {const r = s.getBoundingClientRect(); "
         "return [s.getAttribute('class') || '', r.width, r.height];}))")


CALL_TIMEOUT = 120.0  # seconds for one DevTools call (a full-page screenshot of a long report on a busy machine)


def find() -> str | None:
    """The chromium binary on PATH (None when it is not installed)."""
    return next((path for path in map(shutil.which, NAMES) if path), None)


@dataclass(frozen=True)
class Loaded:
    """What the page did when opened."""

    requests: tuple[str, ...]  # every URL it asked for, in order, blocked ones too
    svgs: tuple[tuple[str, float, float], ...]  # (class, width, height) as laid out
    dom: str  # document.documentElement.outerHTML after load
    screenshot: Path


class _Session:
    """One DevTools connection to a page target."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=30)
        self.seq = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.seq += 1
        self.ws.settimeout(CALL_TIMEOUT)  # drain() and wait_for() shorten it: a tall page's screenshot takes a while
        self.ws.send(json.dumps({"id": self.seq, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.seq:
                if "error" in message:
                    raise RuntimeError(f"chromium: {method} failed: {message['error']}")
                return message.get("result") or {}
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"chromium: no {method} within {timeout:.0f}s")
            self.ws.settimeout(max(deadline - time.monotonic(), 0.1))
            self.events.append(json.loads(self.ws.recv()))

    def drain(self, seconds: float) -> None:
        """Collect what arrives for ``seconds`` more (a late request after the load event)."""
        self.ws.settimeout(seconds)
        with contextlib.suppress(websocket.WebSocketTimeoutException):
            while True:
                self.events.append(json.loads(self.ws.recv()))


@contextlib.contextmanager
def _browser(binary: str, width: int, height: int) -> Iterator[str]:
    """A headless chromium on a free DevTools port; yields the page target's websocket URL."""
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-background-networking", "--disable-component-update",
                                 "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                 f"--window-size={width},{height}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.is_file() and "\n" in port_file.read_text()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not open its DevTools port (exit {proc.poll()})")
                time.sleep(0.05)
            port = port_file.read_text().split("\n", 1)[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                targets = json.load(answer)
            yield next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the chromium we started and its helper processes (its own process group), before its profile is removed:
    a helper still writing there would make the removal fail."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait  # the helpers outlive the browser process by a moment
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def open_page(page: Path, screenshot: Path, *, binary: str | None = None, width: int = 1280,
              height: int = 900) -> Loaded:
    """Load ``page`` (a local file), record its requests, lay it out and keep a full-page PNG at ``screenshot``.

    Raises:
        RuntimeError: no chromium, or it failed to start or answer.
    """
    binary = binary or find()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    with _browser(binary, width, height) as url:
        session = _Session(url)
        try:
            session.call("Network.enable")
            session.call("Page.enable")
            session.call("Page.navigate", url=page.resolve().as_uri())
            session.wait_for("Page.loadEventFired", 30)
            session.drain(0.5)
            svgs = json.loads(session.call("Runtime.evaluate", expression=SIZES, returnByValue=True)["result"]["value"])
            dom = session.call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                               returnByValue=True)["result"]["value"]
            shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        finally:
            session.ws.close()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    requests = tuple(e["params"]["request"]["url"] for e in session.events
                     if e.get("method") == "Network.requestWillBeSent")
    return Loaded(requests, tuple((str(c), float(w), float(h)) for c, w, h in svgs), dom, screenshot)


def ink(png: Path) -> tuple[int, float]:
    """How far from blank a screenshot is: its number of distinct colours and the share of its pixels that differ
    from its most common colour (the background)."""
    with Image.open(png) as image:
        pixels = image.convert("RGB")
        counts = pixels.getcolors(maxcolors=pixels.width * pixels.height) or []
    total = sum(n for n, _ in counts)
    background = max((n for n, _ in counts), default=0)
    return len(counts), (total - background) / total if total else 0.0


def check_report(page: Path, records: Sequence[Mapping[str, Any]], gate_line: str, screenshot: Path,
                 *, binary: str | None = None) -> Loaded:
    """Open a report.html and check it: nothing but the page loaded, the gate line, each record's section with its
    outcome and class (records in the order the page was rendered from), every chart laid out with a size, and a
    screenshot (kept at ``screenshot``) that is not blank."""
    from harness.report_view import anchor

    loaded = open_page(page, screenshot, binary=binary)
    where = f"(page {page}, screenshot {screenshot})"
    assert loaded.requests == (page.as_uri(),), f"a request left the page: {loaded.requests} {where}"
    dom = html.unescape(loaded.dom)
    assert f'id="gate-line">{html.unescape(gate_line)}</p>' in dom, f"no gate line {gate_line!r} {where}"
    for i, record in enumerate(records):
        section = re.search(rf'<article class="cell" id="{re.escape(anchor(record, i))}" data-outcome="([^"]*)" '
                            r'data-class="([^"]*)">\s*<h3>(.*?)</h3>', dom, re.S)
        assert section is not None, f"no section for {record.get('nodeid')} {where}"
        outcome, failure_class = str(record.get("outcome")), str(record.get("class") or "")
        assert section.groups()[:2] == (outcome, failure_class), f"{section.groups()} {where}"
        assert f">{outcome}</span>" in section.group(3), f"{section.group(3)} {where}"
        assert not failure_class or f"[{failure_class}]" in section.group(3), f"{section.group(3)} {where}"
    kinds = [kind for kind, _, _ in loaded.svgs]
    for kind in ("svg-setup", "svg-cpu", "svg-cache"):
        assert kinds.count(kind) == len(records), f"{kind}: {kinds.count(kind)} for {len(records)} cells {where}"
    fired = sum(1 for r in records if ((r.get("observations") or {}).get("fault") or {}).get("fired"))
    assert kinds.count("svg-timeline") == fired, f"{kinds.count('svg-timeline')} timelines, {fired} faults {where}"
    assert all(w > 100 and h > 10 for _, w, h in loaded.svgs), f"an SVG without size: {loaded.svgs} {where}"
    colours, share = ink(screenshot)
    assert colours > 16 and share > 0.02, f"the screenshot looks blank ({colours} colours, {share:.1%} ink) {where}"
    return loaded
