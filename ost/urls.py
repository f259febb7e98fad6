"""How a configured URL is shown: its label, ``scheme://host[:port]``, and never its credentials.

A base URL may carry credentials (``http://svc:PASSWORD@proxy:3128``, a proxy in front of
Binance). Everything that names a URL (messages, metric labels, the ledger, ``ost status``, gap
files, artifacts, the flows' logs) names it by :func:`url_label`, the one function that turns a
URL into what may be shown; :func:`host_of` is that label without its scheme (the ``host`` label
of the metrics). The credentials themselves are taken apart by :func:`split_credentials`, so that
the HTTP client is given a URL without them (httpx would print them in its own log lines and
errors) and sends them as basic auth.

Standard library only: the ledger and ``ost status`` import it.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

#: The port each scheme uses when none is written; a label names only another one.
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def url_label(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no user, password, path, query or fragment.

    The port is named only when it is not the scheme's default. Text that is not a URL at all
    (no ``scheme://``) is shown as ``***``: it could be a secret as a whole.
    """
    parts = urllib.parse.urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return "***"
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is no number: not shown (it could be anything)
        port = None
    shown_port = f":{port}" if port is not None and port != DEFAULT_PORTS.get(scheme) else ""
    host = parts.hostname or ""
    return f"{scheme}://{f'[{host}]' if ':' in host else host}{shown_port}"


def host_of(url: str) -> str:
    """The host and port of ``url`` (``host[:port]``): its :func:`url_label` without the scheme."""
    return url_label(url).partition("://")[2] or "***"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its user and password, and them (decoded), or None if it has none.

    The rest of the URL (scheme, host, port, path) is kept as written.
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password))
