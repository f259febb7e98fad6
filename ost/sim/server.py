"""Running the simulator: blocking (the ``ost sim`` command) or in a thread (tests).

``serve_cli(port=8900, faults="", weight_limit=6000, weight_window_s=60, latency_ms=0.0, ...)``
serves until Ctrl-C. ``with running_sim(SimConfig(...)) as sim:`` starts it on a free port of
127.0.0.1 in a thread, waits until it answers, and stops it at the end of the block; ``sim.url``
is its base URL (for both the API and the archive) and its methods drive the admin API.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, cast

import httpx
import uvicorn

from ost.sim.app import create_app
from ost.sim.config import SimConfig
from ost.sim.faults import Fault
from ost.sim.state import SimState

DEFAULT_PORT: Final = 8900
_STARTUP_TIMEOUT_S: Final = 10.0
_STOP_GRACE_S: Final = 1.0


def _uvicorn_server(config: SimConfig, host: str, port: int) -> tuple[uvicorn.Server, SimState]:
    app, state = create_app(config)
    settings = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(settings), state


def serve(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, config: SimConfig | None = None
) -> None:
    """Serve the simulator on ``host:port`` until interrupted (blocking)."""
    config = config or SimConfig()
    sys.stderr.write(
        f"ost sim: Binance simulator on http://{host}:{port} "
        f"(weight {config.weight_limit}/{config.weight_window_s}s, "
        f"latency {config.latency_ms:g} ms, CPU {config.cpu_per_request_ms:g} ms a request, "
        f"faults: {config.faults or 'none'})\n"
    )
    server, _ = _uvicorn_server(config, host, port)
    server.run()


def serve_cli(
    *,
    port: int = DEFAULT_PORT,
    faults: str = "",
    weight_limit: int = 6000,
    weight_window_s: int = 60,
    latency_ms: float = 0.0,
    host: str = "127.0.0.1",
    clock_offset_ms: int = 0,
    seed: int = 0,
    cpu_per_request_ms: float = 0.0,
) -> None:
    """``ost sim``: serve with these options until Ctrl-C; a bad option raises BadInput first."""
    config = SimConfig(
        weight_limit=weight_limit,
        weight_window_s=weight_window_s,
        latency_ms=latency_ms,
        clock_offset_ms=clock_offset_ms,
        faults=faults,
        seed=seed,
        cpu_per_request_ms=cpu_per_request_ms,
    )
    serve(host=host, port=port, config=config)


class SimHandle:
    """A running simulator: its URL, and a small client of its admin API."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Plain http: skip building an SSL context, which costs about 0.1 s per client.
        self._admin = httpx.Client(base_url=url, timeout=10.0, verify=False)  # noqa: S501 -- http only

    def client(self, **options: Any) -> httpx.Client:
        """A new httpx client for the simulator (the caller closes it)."""
        options.setdefault("verify", False)  # plain http: no SSL context to build
        return httpx.Client(base_url=self.url, **options)

    def set_faults(self, faults: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Arm faults (a SPEC string or a list of fault objects), replacing the armed ones."""
        if isinstance(faults, str):
            response = self._admin.post(
                "/_sim/faults", content=faults, headers={"content-type": "text/plain"}
            )
        else:
            response = self._admin.post("/_sim/faults", json=faults)
        return cast("list[dict[str, Any]]", _checked(response))

    def clear_faults(self) -> None:
        """Disarm every fault."""
        _checked(self._admin.delete("/_sim/faults"))

    def faults(self) -> list[Fault]:
        """The armed faults, with how many more times each may fire."""
        return [Fault(**item) for item in _checked(self._admin.get("/_sim/faults"))]

    def stats(self) -> dict[str, Any]:
        """Counters: per path and status, 429s, 418s, weight used, faults fired."""
        return cast("dict[str, Any]", _checked(self._admin.get("/_sim/stats")))

    def answers(self, path_prefix: str) -> dict[str, int]:
        """Answers per status to the paths that start with ``path_prefix`` (e.g. ``/data/``)."""
        counts: dict[str, int] = {}
        for path, outcomes in self.stats()["requests"].items():
            if path.startswith(path_prefix):
                for status, count in outcomes.items():
                    counts[status] = counts.get(status, 0) + count
        return counts

    def klines_of(self, symbol: str) -> int:
        """How many klines requests for ``symbol`` reached the simulator since the last reset."""
        return int(self.stats()["klines_by_symbol"].get(symbol, 0))

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings: weight_limit, weight_window_s, latency_ms, now_ms, stopped..."""
        return cast("dict[str, Any]", _checked(self._admin.post("/_sim/config", json=changes)))

    def ping(self) -> None:
        """Raise unless the simulator answers (its admin ping: no weight, never faulted)."""
        _checked(self._admin.get("/_sim/ping"))

    def now_ms(self) -> int:
        """The server's clock (read without spending request weight)."""
        return int(_checked(self._admin.get("/_sim/config"))["server_time"])

    def reset(self) -> None:
        """Forget counters, used weight and bans."""
        _checked(self._admin.post("/_sim/reset"))

    def restore(self, config: SimConfig | None = None) -> None:
        """Back to ``config`` (default settings when None): faults, settings, counters, bans."""
        config = config or SimConfig()
        self.set_faults(config.faults)
        settings = config.as_dict()
        del settings["faults"]
        self.configure(**settings)
        self.reset()

    def close(self) -> None:
        """Close the admin client."""
        self._admin.close()


def _checked(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


@contextmanager
def running_sim(config: SimConfig | None = None, host: str = "127.0.0.1") -> Iterator[SimHandle]:
    """Run the simulator in a thread on a free port for the duration of the block."""
    server, state = _uvicorn_server(config or SimConfig(), host, 0)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=f"ost-sim-{port}", daemon=True
    )
    thread.start()
    handle = SimHandle(f"http://{host}:{port}")
    try:
        _wait_until_ready(server, thread, handle)
        yield handle
    finally:
        handle.close()
        state.stopping = True
        server.should_exit = True
        thread.join(_STOP_GRACE_S)
        if thread.is_alive():  # a slow fault may still be sleeping: do not wait for it
            server.force_exit = True
            thread.join(_STOP_GRACE_S)
        listener.close()


def _wait_until_ready(server: uvicorn.Server, thread: threading.Thread, handle: SimHandle) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the simulator's server thread stopped during start-up")
        if server.started:
            try:
                handle.ping()
            except httpx.HTTPError:
                pass
            else:
                return
        time.sleep(0.01)
    raise RuntimeError(f"the simulator did not answer within {_STARTUP_TIMEOUT_S} s")
