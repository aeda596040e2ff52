"""Open a local page in Debian's headless chromium and see what it did, over the DevTools protocol (websocket-client).

For the report.html tests: every request the page made (the page's own ``file://`` load first), the rendered size of
every ``<svg>``, the DOM after load and a full-page screenshot. Runs as root with ``--no-sandbox``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websocket  # websocket-client
from PIL import Image

NAMES = ("chromium", "chromium-browser")
SIZES = ("JSON.stringify([...document.querySelectorAll('svg')].map(s => {const r = s.getBoundingClientRect(); "
         "return [s.getAttribute('class') || '', r.width, r.height];}))")


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
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-background-networking", "--disable-component-update",
                                 "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                 f"--window-size={width},{height}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
