"""The terminal progress of ``ost backfill``: one bar per stream."""

from __future__ import annotations

import pytest

from ost.progress import terminal_progress


def test_a_stream_with_nothing_missing_shows_complete(capsys: pytest.CaptureFixture[str]):
    """A stream whose range is all stored shows 1/1, and a filling one its count."""
    streams = [("BTCUSDT", "1d"), ("BTCUSDT", "1h")]
    with terminal_progress(streams) as progress:
        assert progress is not None
        progress("BTCUSDT", "1d", 0, 0)
        progress("BTCUSDT", "1h", 12, 23)
    lines = capsys.readouterr().out.splitlines()
    assert any("BTCUSDT 1d" in line and "1/1" in line for line in lines)
    assert any("BTCUSDT 1h" in line and "12/23" in line for line in lines)
