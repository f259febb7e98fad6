"""The simulator's data.binance.vision archive: zips, checksums, µs times, what is published."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from ost import intervals
from ost.sim import SimHandle, market, realdata
from ost.sim.symbols import utc_ms

pytestmark = pytest.mark.slow


@pytest.fixture
def client(sim: SimHandle) -> Iterator[httpx.Client]:
    """An httpx client of the simulator."""
    with sim.client(timeout=10.0) as http:
        yield http


def daily(symbol: str, interval: str, day: str) -> str:
    """The archive path of a daily zip."""
    return f"/data/spot/daily/klines/{symbol}/{interval}/{symbol}-{interval}-{day}.zip"


def monthly(symbol: str, interval: str, month: str) -> str:
    """The archive path of a monthly zip."""
    return f"/data/spot/monthly/klines/{symbol}/{interval}/{symbol}-{interval}-{month}.zip"


def fetch_csv(client: httpx.Client, path: str) -> tuple[bytes, bytes]:
    """The zip at ``path`` (checked against its CHECKSUM) and the CSV inside it."""
    response = client.get(path)
    assert response.status_code == 200, path
    checksum = client.get(path + ".CHECKSUM")
    assert checksum.status_code == 200
    name = path.rsplit("/", 1)[1]
    assert checksum.text == f"{hashlib.sha256(response.content).hexdigest()}  {name}\n"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == [name.removesuffix(".zip") + ".csv"]
        return response.content, archive.read(archive.namelist()[0])


@pytest.mark.parametrize("day", ["2018-02-08", "2023-03-24", "2024-12-31", "2025-01-01"])
def test_real_days_zip_the_real_csv_bytes(client: httpx.Client, day: str):
    """BTCUSDT 1m zips of the real-data days hold exactly the real CSV file."""
    _, data = fetch_csv(client, daily("BTCUSDT", "1m", day))
    assert data == (realdata.realdata_dir() / f"BTCUSDT-1m-{day}.csv").read_bytes()


def test_times_switch_to_microseconds_in_2025(client: httpx.Client):
    """Archive times are ms up to 2024-12-31 and µs from 2025-01-01; the API serves ms."""
    _, before = fetch_csv(client, daily("ETHUSDT", "1h", "2024-12-31"))
    _, after = fetch_csv(client, daily("ETHUSDT", "1h", "2025-01-01"))
    first_before = before.splitlines()[0].split(b",")
    first_after = after.splitlines()[0].split(b",")
    assert (len(first_before[0]), len(first_before[6])) == (13, 13)
    assert (len(first_after[0]), len(first_after[6])) == (16, 16)
    assert int(first_after[0]) == utc_ms("2025-01-01") * 1000
    assert first_after[6].endswith(b"999999")
    api = market.klines(
        "ETHUSDT", "1h", utc_ms("2025-01-01"), utc_ms("2025-01-02"), utc_ms("2026-01-01")
    )
    assert [int(line.split(b",")[0]) // 1000 for line in after.splitlines()] == [r[0] for r in api]


def test_a_zip_holds_the_rows_the_api_serves(client: httpx.Client):
    """A monthly 1d zip is the month's 1d candles, field for field."""
    _, data = fetch_csv(client, monthly("SOLUSDT", "1d", "2024-02"))
    start, end = utc_ms("2024-02-01"), utc_ms("2024-03-01")
    rows = market.klines("SOLUSDT", "1d", start, end, end)
    expected = "".join(",".join(str(field) for field in row) + "\n" for row in rows)
    assert data.decode() == expected
    assert len(rows) == 29


def test_checksums_are_stable(client: httpx.Client):
    """The same zip is served twice with the same bytes (deterministic zips)."""
    path = daily("BNBUSDT", "15m", "2022-07-07")
    assert client.get(path).content == client.get(path).content


def test_newest_days_and_the_current_month_are_missing(sim: SimHandle, client: httpx.Client):
    """Daily files exist up to the day before yesterday; monthly ones for finished months."""
    sim.configure(now_ms=utc_ms("2026-03-10T08:00"))
    assert client.get(daily("BTCUSDT", "1d", "2026-03-08")).status_code == 200
    for day in ("2026-03-09", "2026-03-10", "2026-03-11"):
        response = client.get(daily("BTCUSDT", "1d", day))
        assert response.status_code == 404
        assert client.get(daily("BTCUSDT", "1d", day) + ".CHECKSUM").status_code == 404
    assert client.get(monthly("BTCUSDT", "1d", "2026-02")).status_code == 200
    assert client.get(monthly("BTCUSDT", "1d", "2026-03")).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        daily("SOLUSDT", "1d", "2019-05-05"),  # before the listing
        daily("NOPEUSDT", "1d", "2024-05-05"),  # unknown symbol
        daily("BTCUSDT", "1w", "2024-05-06"),  # intervals above 1d are not archived
        "/data/spot/daily/klines/BTCUSDT/1d/ETHUSDT-1d-2024-05-05.zip",  # wrong name
        daily("BTCUSDT", "1d", "2024-02-30"),  # no such day
    ],
)
def test_files_that_do_not_exist_are_404(client: httpx.Client, path: str):
    """Paths the archive could not hold answer 404."""
    assert client.get(path).status_code == 404


def test_corrupt_zip_breaks_the_checksum(sim: SimHandle, client: httpx.Client):
    """corrupt_zip: the zip's sha256 no longer matches its CHECKSUM; the next one is fine."""
    path = daily("ETHUSDT", "4h", "2023-08-08")
    good, _ = fetch_csv(client, path)
    sim.set_faults("corrupt_zip:count=1")
    bad = client.get(path)
    checksum = client.get(path + ".CHECKSUM").text.split()[0]
    assert bad.status_code == 200
    assert len(bad.content) == len(good)
    assert hashlib.sha256(bad.content).hexdigest() != checksum
    assert hashlib.sha256(client.get(path).content).hexdigest() == checksum


def test_archive_faults_need_the_data_scope(sim: SimHandle, client: httpx.Client):
    """API faults leave the archive alone unless scoped to it; archive requests cost no weight."""
    path = daily("ETHUSDT", "1d", "2023-08-08")
    sim.set_faults("5xx:status=503")
    response = client.get(path)
    assert response.status_code == 200
    assert "x-mbx-used-weight-1m" not in response.headers
    sim.set_faults("5xx:status=503,scope=data")
    assert client.get(path).status_code == 503


def test_the_day_before_yesterday_is_complete(sim: SimHandle, client: httpx.Client):
    """The newest published day has all its candles, all closed."""
    now = sim.now_ms()
    day = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC).date() - dt.timedelta(days=2)
    _, data = fetch_csv(client, daily("ETHUSDT", "1h", day.isoformat()))
    lines = data.splitlines()
    assert len(lines) == 24
    last_close = int(lines[-1].split(b",")[6]) // 1000
    assert last_close == intervals.date_ms(day + dt.timedelta(days=1)) - 1
