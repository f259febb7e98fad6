"""A real local HTTP receiver for apprise's ``json://`` notifications, shared by the alert tests.

It runs a stdlib ``ThreadingHTTPServer`` on a free port of 127.0.0.1 in a thread and records every
POST it gets; apprise's ``json://127.0.0.1:PORT/path`` target sends it ``{"title", "message",
"type", ...}``. It can answer the next POSTs with error statuses, to test retries.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PASSWORD = "pAssW0rd-S3cret"  # noqa: S105  # a fake token, to prove it never leaks
SECRET_PATH = "tok3n-in-the-path"  # noqa: S105  # a fake webhook token, likewise


@dataclass(frozen=True)
class Post:
    """One notification as the receiver got it."""

    path: str
    body: dict[str, Any]
    #: When it arrived: ``time.monotonic()``, and the wall clock (Unix time).
    at: float
    wall: float


class Receiver:
    """A tiny HTTP server in a thread that records the POSTs apprise's json:// sends it."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        #: Statuses to answer the next POSTs with (then 200).
        self.failures: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = receiver.failures.pop(0) if receiver.failures else 200
                    receiver.posts.append(
                        Post(self.path, json.loads(body), time.monotonic(), time.time())
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: no access log on stderr."""

        return Handler

    def url(self, path: str = "/hook") -> str:
        """An apprise json:// URL to ``path`` on this receiver."""
        return f"json://127.0.0.1:{self.port}{path}"

    def secret_url(self) -> str:
        """A json:// URL carrying a password and a path token, like a real webhook's."""
        return f"json://ops:{SECRET_PASSWORD}@127.0.0.1:{self.port}/hooks/{SECRET_PATH}"

    def titles(self, path: str | None = None) -> list[str]:
        """The titles received (on ``path`` only, when given), in order."""
        return [post.body["title"] for post in self.posts if path in (None, post.path)]

    def types(self) -> list[str]:
        """The apprise types received, in order: warning (alert), failure (escalate), success."""
        return [post.body["type"] for post in self.posts]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
