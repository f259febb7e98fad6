"""A Binance simulator: the spot REST API and the data.binance.vision archive, on 127.0.0.1.

* :func:`ost.sim.market.klines` — the reference candles, a pure function;
* :func:`ost.sim.server.running_sim` — the server in a thread, for tests;
* :func:`ost.sim.server.serve_cli` — the server, blocking, for ``ost sim``;
* :mod:`ost.sim.faults` — fault kinds and their SPEC syntax;
* :mod:`ost.sim.archive` — archive paths and when files are published;
* :mod:`ost.sim.render` — the JSON and CSV bodies, rendered with numpy, byte for byte.

Importing this package does not start anything (and never imports Prefect).
"""

from ost.sim.config import SimConfig
from ost.sim.market import exchange_gaps, klines, page
from ost.sim.server import SimHandle, running_sim, serve, serve_cli

__all__ = [
    "SimConfig",
    "SimHandle",
    "exchange_gaps",
    "klines",
    "page",
    "running_sim",
    "serve",
    "serve_cli",
]
