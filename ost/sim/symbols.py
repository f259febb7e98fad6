"""The simulator's fixed table of listed symbols: real Binance USDT pairs and their listing times.

Listing times are close to the real ones (BTCUSDT and ETHUSDT opened 2017-08-17 04:00 UTC); the
price anchors only steer the synthetic prices near real levels, they are not history. A symbol
has no candle that opens before its listing.

Load tests need more symbols than the table holds: any name ``SIM`` + 1 to 6 digits + ``USDT``
(``SIM0001USDT``) is a generated listing (:func:`generated_listing`), with synthetic candles like
the others. It is answered by name (klines, ``exchangeInfo?symbol=``, the archive) but is not in
the table, so the full ``exchangeInfo`` does not list it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Final


def utc_ms(text: str) -> int:
    """Epoch ms of an ISO date or date-time in UTC."""
    moment = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Listing:
    """One symbol: when it was listed, and the knobs of its synthetic market."""

    symbol: str
    base_asset: str
    listed_ms: int
    #: (epoch ms, price) points; the synthetic log-price follows them, flat beyond the ends.
    anchors: tuple[tuple[int, float], ...]
    #: Typical traded quote volume (USDT) per minute.
    quote_per_minute: float
    #: Daily volatility of the log-price.
    daily_vol: float

    @property
    def quote_asset(self) -> str:
        """Always USDT in this table."""
        return "USDT"

    @property
    def seed(self) -> int:
        """A stable 64-bit seed for this symbol's random streams."""
        return int.from_bytes(hashlib.sha256(self.symbol.encode()).digest()[:8], "little")

    @property
    def first_price(self) -> float:
        """The price at listing."""
        return self.anchors[0][1]

    @property
    def tick_size(self) -> float:
        """Price step: five significant digits of the listing price, at least 1e-8."""
        exponent = math.floor(math.log10(self.first_price)) - 5
        return max(10.0**exponent, 1e-8)


def _listing(
    symbol: str,
    listed: str,
    anchors: tuple[tuple[str, float], ...],
    quote_per_minute: float = 50_000.0,
    daily_vol: float = 0.05,
) -> Listing:
    listed_ms = utc_ms(listed)
    points = tuple((utc_ms(when), price) for when, price in anchors)
    if points[0][0] != listed_ms:
        points = ((listed_ms, points[0][1]), *points)
    return Listing(
        symbol=symbol,
        base_asset=symbol.removesuffix("USDT"),
        listed_ms=listed_ms,
        anchors=points,
        quote_per_minute=quote_per_minute,
        daily_vol=daily_vol,
    )


_BTC_ANCHORS: Final = (
    ("2017-08-17T04:00", 4300.0),
    ("2017-12-17", 19000.0),
    ("2018-02-08", 7600.0),
    ("2018-12-15", 3200.0),
    ("2019-06-26", 12000.0),
    ("2020-03-13", 5000.0),
    ("2021-04-14", 63000.0),
    ("2021-11-10", 67000.0),
    ("2022-11-21", 16000.0),
    ("2023-03-24", 28000.0),
    ("2024-03-14", 72000.0),
    ("2024-12-31", 93000.0),
    ("2025-01-02", 94000.0),
    ("2025-10-06", 124000.0),
    ("2026-11-01", 95000.0),
)
_ETH_ANCHORS: Final = (
    ("2017-08-17T04:00", 300.0),
    ("2018-01-13", 1400.0),
    ("2018-12-15", 85.0),
    ("2020-03-13", 110.0),
    ("2021-11-10", 4800.0),
    ("2022-06-18", 900.0),
    ("2024-03-12", 4000.0),
    ("2025-04-09", 1400.0),
    ("2025-08-24", 4900.0),
    ("2026-11-01", 3200.0),
)

#: Every symbol the simulator knows, by name.
LISTINGS: Final[dict[str, Listing]] = {
    listing.symbol: listing
    for listing in (
        _listing("BTCUSDT", "2017-08-17T04:00", _BTC_ANCHORS, 2_000_000.0, 0.035),
        _listing("ETHUSDT", "2017-08-17T04:00", _ETH_ANCHORS, 1_000_000.0, 0.045),
        _listing(
            "BNBUSDT",
            "2017-11-06T03:00",
            (("2017-11-06T03:00", 1.5), ("2021-05-10", 650.0), ("2026-11-01", 900.0)),
            300_000.0,
        ),
        _listing(
            "NEOUSDT",
            "2017-11-20T05:00",
            (("2017-11-20T05:00", 35.0), ("2018-01-15", 160.0), ("2026-11-01", 6.0)),
            20_000.0,
        ),
        _listing(
            "LTCUSDT",
            "2017-12-13T03:00",
            (("2017-12-13T03:00", 300.0), ("2022-06-18", 45.0), ("2026-11-01", 90.0)),
            80_000.0,
        ),
        _listing(
            "QTUMUSDT",
            "2018-03-26T09:00",
            (("2018-03-26T09:00", 16.0), ("2026-11-01", 2.5)),
            10_000.0,
        ),
        _listing(
            "ADAUSDT",
            "2018-04-17T04:00",
            (("2018-04-17T04:00", 0.25), ("2021-09-02", 3.0), ("2026-11-01", 0.6)),
            200_000.0,
        ),
        _listing(
            "XRPUSDT",
            "2018-05-04T08:00",
            (
                ("2018-05-04T08:00", 0.9),
                ("2020-03-13", 0.14),
                ("2025-07-18", 3.5),
                ("2026-11-01", 2.2),
            ),
            300_000.0,
        ),
        _listing(
            "EOSUSDT",
            "2018-05-28T05:00",
            (("2018-05-28T05:00", 12.0), ("2026-11-01", 0.5)),
            30_000.0,
        ),
        _listing(
            "XLMUSDT",
            "2018-05-31T09:00",
            (("2018-05-31T09:00", 0.3), ("2026-11-01", 0.3)),
            40_000.0,
        ),
        _listing(
            "TRXUSDT",
            "2018-06-11T11:00",
            (("2018-06-11T11:00", 0.05), ("2026-11-01", 0.3)),
            60_000.0,
        ),
        _listing(
            "ETCUSDT",
            "2018-06-12T02:00",
            (("2018-06-12T02:00", 15.0), ("2026-11-01", 17.0)),
            40_000.0,
        ),
        _listing(
            "VETUSDT",
            "2018-07-25T04:00",
            (("2018-07-25T04:00", 0.02), ("2026-11-01", 0.02)),
            30_000.0,
        ),
        _listing(
            "LINKUSDT",
            "2019-01-16T10:00",
            (("2019-01-16T10:00", 0.5), ("2021-05-10", 50.0), ("2026-11-01", 16.0)),
            100_000.0,
        ),
        _listing(
            "ZECUSDT",
            "2019-03-21T10:00",
            (("2019-03-21T10:00", 55.0), ("2026-11-01", 300.0)),
            20_000.0,
        ),
        _listing(
            "DASHUSDT",
            "2019-03-28T04:00",
            (("2019-03-28T04:00", 90.0), ("2026-11-01", 40.0)),
            10_000.0,
        ),
        _listing(
            "MATICUSDT",
            "2019-04-26T15:00",
            (("2019-04-26T15:00", 0.01), ("2021-12-27", 2.9), ("2026-11-01", 0.2)),
            80_000.0,
        ),
        _listing(
            "ATOMUSDT",
            "2019-04-29T04:00",
            (("2019-04-29T04:00", 5.0), ("2026-11-01", 4.0)),
            40_000.0,
        ),
        _listing(
            "DOGEUSDT",
            "2019-07-05T12:00",
            (("2019-07-05T12:00", 0.004), ("2021-05-08", 0.7), ("2026-11-01", 0.2)),
            200_000.0,
        ),
        _listing(
            "SOLUSDT",
            "2020-08-11T06:00",
            (("2020-08-11T06:00", 3.0), ("2021-11-06", 250.0), ("2026-11-01", 180.0)),
            500_000.0,
            0.06,
        ),
        _listing(
            "DOTUSDT",
            "2020-08-18T23:00",
            (("2020-08-18T23:00", 3.0), ("2021-11-04", 54.0), ("2026-11-01", 4.0)),
            80_000.0,
        ),
        _listing(
            "UNIUSDT",
            "2020-09-17T03:00",
            (("2020-09-17T03:00", 3.0), ("2026-11-01", 8.0)),
            40_000.0,
        ),
        _listing(
            "AVAXUSDT",
            "2020-09-22T06:30",
            (("2020-09-22T06:30", 4.0), ("2021-11-21", 140.0), ("2026-11-01", 25.0)),
            80_000.0,
            0.06,
        ),
        _listing(
            "NEARUSDT",
            "2020-10-14T08:00",
            (("2020-10-14T08:00", 1.2), ("2026-11-01", 3.0)),
            40_000.0,
        ),
        _listing(
            "FILUSDT",
            "2020-10-15T10:00",
            (("2020-10-15T10:00", 30.0), ("2026-11-01", 3.0)),
            40_000.0,
        ),
        _listing(
            "AAVEUSDT",
            "2020-10-15T03:00",
            (("2020-10-15T03:00", 50.0), ("2026-11-01", 250.0)),
            30_000.0,
        ),
        _listing(
            "SHIBUSDT",
            "2021-05-10T11:00",
            (("2021-05-10T11:00", 0.00003), ("2026-11-01", 0.000012)),
            100_000.0,
            0.07,
        ),
        _listing(
            "APTUSDT",
            "2022-10-19T00:00",
            (("2022-10-19T00:00", 9.0), ("2026-11-01", 5.0)),
            40_000.0,
        ),
        _listing(
            "ARBUSDT",
            "2023-03-23T13:00",
            (("2023-03-23T13:00", 1.3), ("2026-11-01", 0.4)),
            80_000.0,
        ),
        _listing(
            "SUIUSDT",
            "2023-05-03T12:00",
            (("2023-05-03T12:00", 1.4), ("2026-11-01", 3.0)),
            80_000.0,
            0.06,
        ),
        _listing(
            "PEPEUSDT",
            "2023-05-05T14:00",
            (("2023-05-05T14:00", 0.000004), ("2026-11-01", 0.00001)),
            100_000.0,
            0.08,
        ),
        _listing(
            "WLDUSDT",
            "2023-07-24T08:00",
            (("2023-07-24T08:00", 2.0), ("2026-11-01", 1.0)),
            40_000.0,
        ),
    )
}


#: The names of generated listings (see the module docstring).
GENERATED_SYMBOL: Final = re.compile(r"SIM[0-9]{1,6}USDT")
#: When every generated symbol was listed.
GENERATED_LISTED: Final = "2020-01-01"


@functools.lru_cache(maxsize=4096)
def generated_listing(symbol: str) -> Listing | None:
    """The listing of a generated symbol (``SIM0001USDT``), or None for any other name.

    Its price level (1e-4 to 1e4 USDT) and volume are drawn from a hash of its name, so each
    generated symbol is a market of its own, the same in every process.
    """
    if GENERATED_SYMBOL.fullmatch(symbol) is None:
        return None
    draw = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[8:12], "little") / 2**32
    price = 10.0 ** (8 * draw - 4)
    return _listing(
        symbol, GENERATED_LISTED, ((GENERATED_LISTED, price),), 10_000.0 + 90_000 * draw
    )


def find_listing(symbol: str) -> Listing | None:
    """The listing of ``symbol``, or None when the simulator does not list it."""
    return LISTINGS.get(symbol) or generated_listing(symbol)
