"""``python -m alerts.receiver``: a local HTTP receiver that prints what apprise sends it.

For drills (the runbook's *Simulacro*), where no chat or pager should hear of a rehearsed
outage: point ``OST_APPRISE_URLS`` at ``json://127.0.0.1:PORT/simulacro`` and every alert,
escalation and recovery is printed as it arrives, one block per notification::

    12:00:31 WARNING  ost-ingest ALERT: Binance ingestion down for 31 s
    Binance candle ingestion has been down for 31 s, since ...

It answers every POST with 200 and keeps nothing. It listens on 127.0.0.1 only: a drill tool,
never a production target. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from ost.timefmt import arrival_time

HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8999


class _Handler(BaseHTTPRequestHandler):
    """Prints each POSTed apprise ``json://`` notification: time, type, title, message."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            notice = json.loads(body)
        except ValueError:
            notice = {"type": "?", "title": "(not JSON)", "message": body.decode(errors="replace")}
        when = arrival_time(dt.datetime.now(dt.UTC))
        kind = str(notice.get("type", "?")).upper()
        sys.stdout.write(
            f"{when} {kind:<8} {notice.get('title', '')}\n{notice.get('message', '')}\n\n"
        )
        sys.stdout.flush()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """No access log: the notifications are the output."""


def main(argv: list[str] | None = None) -> None:
    """Serve until Ctrl-C, printing every notification received."""
    parser = argparse.ArgumentParser(
        prog="python -m alerts.receiver",
        description="Print the notifications that apprise's json:// sends to 127.0.0.1:PORT.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1")
    port = parser.parse_args(argv).port
    with ThreadingHTTPServer((HOST, port), _Handler) as server:
        sys.stdout.write(
            f"listening: OST_APPRISE_URLS=json://{HOST}:{server.server_port}/simulacro\n"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()
