"""The archive reader: files of the simulator over HTTP, checksums, strict CSV parsing, retries."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from oracle import assert_candles, from_csv, simulator_candles

from ost import intervals, klines
from ost.archive import (
    Archive,
    ArchiveFile,
    daily_file,
    monthly_file,
    parse_checksum,
    parse_csv,
    parse_zip,
)
from ost.errors import ArchiveError
from ost.sim import SimHandle
from ost.sim.realdata import realdata_dir

UNIT_SWITCH_DAYS = (dt.date(2024, 12, 31), dt.date(2025, 1, 1))


pytestmark = pytest.mark.usefixtures("fast_retries")


@pytest.fixture
def archive(sim: SimHandle) -> Iterator[Archive]:
    """An archive reader pointed at the simulator."""
    with httpx.Client(timeout=10.0) as http:
        yield Archive(sim.url, http, max_attempts=3)


def reference(sim: SimHandle, file: ArchiveFile) -> pd.DataFrame:
    """What the simulator's API serves for the file's period, read by the tests' oracle."""
    return simulator_candles(file.symbol, file.interval, file.start_ms, file.end_ms, sim.now_ms())


def fetched(archive: Archive, file: ArchiveFile) -> pd.DataFrame:
    """The file's candles, as the backfill reads them: downloaded and checked, then parsed."""
    data = archive.download(file)
    assert data is not None, file.name
    return parse_zip(data, file)


def data_requests(sim: SimHandle) -> dict[str, int]:
    """Archive answers per status since the counters were reset."""
    return sim.answers("/data/")


def zipped(csv_name: str, text: bytes) -> bytes:
    """A zip holding one CSV."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr(csv_name, text)
    return buffer.getvalue()


def test_file_names_and_urls_follow_the_archive_layout() -> None:
    """Daily and monthly files are named and placed as on data.binance.vision."""
    day = daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31))
    month = monthly_file("BTCUSDT", "1h", intervals.date_ms(dt.date(2024, 2, 10)))
    assert day.url("http://x/") == (
        "http://x/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-12-31.zip"
    )
    assert month.url("http://x") == (
        "http://x/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-02.zip"
    )
    assert month.end_ms - month.start_ms == 29 * intervals.DAY_MS  # 2024 is a leap year


@pytest.mark.parametrize("day", UNIT_SWITCH_DAYS)
def test_daily_file_equals_the_api_candles(sim: SimHandle, archive: Archive, day: dt.date) -> None:
    """A daily zip (ms before 2025, µs from 2025) parses to exactly what the API serves."""
    file = daily_file("BTCUSDT", "1m", day)
    frame = fetched(archive, file)
    assert len(frame) == 1440
    assert_candles(frame, reference(sim, file))


def test_unit_switch_is_continuous_in_milliseconds(archive: Archive) -> None:
    """The last ms-file candle and the first µs-file candle are one minute apart, both in ms."""
    before, after = (fetched(archive, daily_file("BTCUSDT", "1m", day)) for day in UNIT_SWITCH_DAYS)
    joined = klines.open_time_ms(pd.concat([before, after], ignore_index=True))
    assert (np.diff(joined) == intervals.MINUTE_MS).all()
    closes = after["close_time"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    assert (closes - klines.open_time_ms(after) == intervals.MINUTE_MS - 1).all()


@pytest.mark.parametrize("day", UNIT_SWITCH_DAYS)
def test_real_csv_parses_field_by_field(sim: SimHandle, day: dt.date) -> None:
    """A real archive CSV (ms, then µs) parses to its own fields, as the simulator serves them."""
    text = (realdata_dir() / f"BTCUSDT-1m-{day.isoformat()}.csv").read_bytes()
    parsed = parse_csv(text, "1m")
    assert_candles(parsed, from_csv(text))
    assert_candles(parsed, reference(sim, daily_file("BTCUSDT", "1m", day)))


def test_monthly_file_equals_the_api_candles(sim: SimHandle, archive: Archive) -> None:
    """A monthly zip holds every candle of the month as the API serves them."""
    file = monthly_file("BTCUSDT", "1h", intervals.date_ms(dt.date(2023, 3, 1)))
    assert_candles(fetched(archive, file), reference(sim, file))


def test_files_the_archive_lacks_are_none(sim: SimHandle, archive: Archive) -> None:
    """Today's file, a file before the listing and an unarchived interval are 'not there'."""
    today = dt.datetime.fromtimestamp(sim.now_ms() / 1000, tz=dt.UTC).date()
    assert archive.download(daily_file("BTCUSDT", "1m", today)) is None
    assert archive.download(daily_file("BTCUSDT", "1m", dt.date(2017, 1, 1))) is None
    assert archive.download(daily_file("BTCUSDT", "1w", dt.date(2024, 1, 1))) is None
    assert data_requests(sim) == {"404": 3}  # the checksum's 404 is enough


def test_corrupt_zip_is_refused(sim: SimHandle, archive: Archive) -> None:
    """A zip that fails its checksum raises ArchiveError, once, without retrying."""
    sim.set_faults("corrupt_zip")
    with pytest.raises(ArchiveError, match="fails its checksum"):
        fetched(archive, daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31)))
    assert data_requests(sim) == {"200": 2}


def test_truncated_zip_is_refused(sim: SimHandle, archive: Archive) -> None:
    """A zip cut in half never passes for candles."""
    sim.set_faults("truncated:scope=data")
    with pytest.raises(ArchiveError):
        fetched(archive, daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31)))


def test_transient_5xx_is_retried(sim: SimHandle, archive: Archive) -> None:
    """One 5xx from the archive costs a retry, not the file."""
    sim.set_faults("5xx:scope=data,count=1")
    file = daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31))
    assert_candles(fetched(archive, file), reference(sim, file))
    assert sum(data_requests(sim).values()) == 3


def test_persistent_5xx_becomes_archive_error(sim: SimHandle, archive: Archive) -> None:
    """A 5xx on every attempt ends in ArchiveError after exactly max_attempts requests."""
    sim.set_faults("5xx:scope=data,status=503")
    with pytest.raises(ArchiveError, match="after 3 attempts"):
        fetched(archive, daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31)))
    assert data_requests(sim) == {"503": 3}


def test_dropped_connections_are_retried_then_refused(sim: SimHandle, archive: Archive) -> None:
    """Transport errors are retried like 5xx, then reported as ArchiveError."""
    sim.set_faults("reset:scope=data")
    with pytest.raises(ArchiveError, match=r"RemoteProtocolError|ReadError|ConnectError"):
        fetched(archive, daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31)))


def test_other_4xx_is_not_retried() -> None:
    """A 403 is final: one request, then ArchiveError."""
    seen: list[str] = []

    def forbid(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(403, text="Access Denied")

    day = daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31))
    with (
        httpx.Client(transport=httpx.MockTransport(forbid)) as http,
        pytest.raises(ArchiveError, match="HTTP 403"),
    ):
        Archive("http://archive.test", http).download(day)
    assert len(seen) == 1


def test_checksum_must_name_the_zip() -> None:
    """A checksum file for another zip, or one that is not a digest, is refused."""
    digest = hashlib.sha256(b"x").hexdigest()
    assert parse_checksum(f"{digest.upper()}  A.zip\n".encode(), "A.zip") == digest
    with pytest.raises(ArchiveError, match=r"checksum of B\.zip"):
        parse_checksum(f"{digest}  B.zip\n".encode(), "A.zip")
    with pytest.raises(ArchiveError):
        parse_checksum(b"<html>not found</html>", "A.zip")


def real_lines(count: int) -> list[bytes]:
    """The first lines of the real 2024-12-31 CSV."""
    path = Path(realdata_dir()) / "BTCUSDT-1m-2024-12-31.csv"
    return path.read_bytes().splitlines()[:count]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda fields: fields[:11], "12 fields"),
        (lambda fields: [*fields, b"0"], "12 fields"),
        (lambda fields: [fields[0], b"abc", *fields[2:]], "not 12 kline fields"),
        (lambda fields: [fields[0], b"", *fields[2:]], "not 12 kline fields"),
        (lambda fields: [b"1.5", *fields[1:]], "not 12 kline fields"),
        (lambda fields: [fields[0], fields[1], fields[3], fields[2], *fields[4:]], "high"),
        (lambda fields: [str(int(fields[0]) + 1).encode(), *fields[1:]], "aligned"),
    ],
)
def test_csv_is_parsed_strictly(change: object, problem: str) -> None:
    """A line with a wrong field count, type or an impossible candle rejects the whole CSV."""
    lines = real_lines(3)
    fields = lines[1].split(b",")
    lines[1] = b",".join(change(fields))  # type: ignore[operator]
    with pytest.raises(ArchiveError, match=problem):
        parse_csv(b"\n".join(lines) + b"\n", "1m")


def test_csv_header_line_is_skipped() -> None:
    """A header line, as some archive files carry, is not a candle."""
    lines = real_lines(3)
    header = b"open_time,open,high,low,close,volume,close_time,quote_volume,count,b,q,ignore"
    with_header = parse_csv(b"\n".join([header, *lines]) + b"\n", "1m")
    assert_candles(with_header, from_csv(b"\n".join(lines)))
    assert len(with_header) == 3


def test_zip_must_hold_only_its_own_period() -> None:
    """A daily zip with a candle of another day, or a differently named CSV, is refused."""
    file = daily_file("BTCUSDT", "1m", dt.date(2025, 1, 1))
    lines = b"\n".join(real_lines(2)) + b"\n"  # 2024-12-31 candles
    with pytest.raises(ArchiveError, match="outside its period"):
        parse_zip(zipped("BTCUSDT-1m-2025-01-01.csv", lines), file)
    with pytest.raises(ArchiveError, match="holds"):
        parse_zip(zipped("other.csv", lines), file)
    with pytest.raises(ArchiveError, match="not a readable zip"):
        parse_zip(b"PK\x03\x04 not really", file)
