"""Shared fixtures: the Binance simulator, one server per session, restored before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from processes import Processes

from ost.binance import BinanceClient
from ost.sim import SimHandle, running_sim


@pytest.fixture(scope="session", autouse=True)
def no_inherited_terminal_size() -> Iterator[None]:
    """The children of a test see no COLUMNS/LINES that pytest-xdist's workers set (80x24)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("COLUMNS", "LINES"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect server for the module using it, with its own PREFECT_HOME (restored)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimHandle]:
    """One simulator for the whole session, on a free port of 127.0.0.1."""
    with running_sim() as handle:
        yield handle


@pytest.fixture
def sim(sim_server: SimHandle) -> SimHandle:
    """The session's simulator with default settings, no faults, and fresh counters."""
    sim_server.restore()
    return sim_server


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Retries without backoff, at most 3 attempts (stamina's test mode)."""
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


@pytest.fixture
def client(sim: SimHandle) -> Iterator[BinanceClient]:
    """A client of the simulator's API."""
    with BinanceClient([sim.url], timeout_s=10.0) as binance:
        yield binance


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Start a test's children through this: each one's process group dies with the test."""
    with Processes() as owned:
        yield owned
