"""Real-shaped action repositories and a git smart-HTTP server of the test's own on loopback.

``make_action`` builds a git work tree like a real JavaScript action (``action.yml``, ``dist/``) with
tagged releases and a later, untagged head, so a test can tell the commit a tag resolved to from the
default branch. ``GitHttpServer`` serves bare repositories with ``git http-backend`` (smart HTTP: the
11.x runners clone with go-git, which needs it) from a thread of the test process, 127.0.0.1 only.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.test", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.test", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, **GIT_ENV})
    return proc.stdout.strip()


@dataclass(frozen=True)
class Action:
    """A real-shaped action work tree: the commit of each tag and the (untagged) head of ``main``."""

    path: Path
    tags: dict[str, str]
    head: str


def make_action(path: Path, tags: Iterable[str] = ("v1", "v3")) -> Action:
    """Commit one release per tag (``dist/index.js`` prints ``release <tag>``), then an untagged head."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "action.yml").write_text("name: real-shaped\ndescription: a test action\n"
                                     "runs:\n  using: node20\n  main: dist/index.js\n")
    (path / "dist").mkdir()
    found = {}
    for tag in tags:
        (path / "dist" / "index.js").write_text(f"console.log('release {tag} of {path.name}');\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"release {tag}")
        git(path, "tag", tag)
        found[tag] = git(path, "rev-parse", "HEAD")
    (path / "dist" / "index.js").write_text(f"console.log('unreleased head of {path.name}');\n")
    git(path, "commit", "-q", "-am", "work after the last release")
    return Action(path, found, git(path, "rev-parse", "HEAD"))


class _Handler(BaseHTTPRequestHandler):
    server: GitHttpServer  # type: ignore[assignment]

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.requestline)

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(self.server.root),
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_ADDR": self.client_address[0], "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}
        for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, timeout=60,
                              check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHttpServer(ThreadingHTTPServer):
    """``git http-backend`` on 127.0.0.1 (a free port) for the bare repositories under ``root``."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def publish(self, repo: str, work_tree: Path) -> Path:
        """``owner/name`` as a bare clone of ``work_tree`` (every branch and tag)."""
        bare = self.root / f"{repo}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        git(work_tree, "clone", "-q", "--bare", str(work_tree), str(bare))
        return bare

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
