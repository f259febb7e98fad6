"""Shared fixtures: the Binance simulator, one server per session, restored before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ost.sim import SimHandle, running_sim


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
