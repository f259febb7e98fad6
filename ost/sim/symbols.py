"""The simulator's fixed table of listed symbols: a spot market of Binance's size.

- 32 real Binance USDT pairs, with listing times close to the real ones (BTCUSDT and ETHUSDT
  opened 2017-08-17 04:00 UTC); their price anchors only steer the synthetic prices near real
  levels, they are not history. BTCUSDT also has real-data days (:mod:`ost.sim.realdata`).
- A generated universe around them (:func:`generated_listings`), fixed and deterministic: the
  real bases quoted in other assets (``ETHBTC``, ``SOLFDUSD``...) and about 560 made-up bases
  (``KOVA``, ``TIRUM``...) over the quote assets of :data:`QUOTES`, so that 1,500 spot symbols
  trade now (:data:`TRADING_NOW`), as on Binance. Every 25th generated one stopped trading at
  a time of its own (``halted_ms``: exchangeInfo says ``BREAK`` from then on, and it has no
  candle after), and a few trade on margin only (not spot: ``isSpotTradingAllowed`` false).

A symbol has no candle that opens before its listing, nor after its trading stopped.

Load tests need more symbols than the table holds: any name ``SIM`` + 1 to 6 digits + ``USDT``
(``SIM0001USDT``) is a generated listing (:func:`generated_listing`), with synthetic candles like
the others. It is answered by name (klines, ``exchangeInfo?symbol=``, the archive) but is not in
the table, so the full ``exchangeInfo`` does not list it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np


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
    #: Typical traded quote volume (in the quote asset) per minute.
    quote_per_minute: float
    #: Daily volatility of the log-price.
    daily_vol: float
    quote_asset: str = "USDT"
    #: The first instant it no longer traded (status BREAK from then on, and no trade: its last
    #: candle is the one holding the instant before); None: it trades.
    halted_ms: int | None = None
    #: Whether it trades on the spot market (else on margin only).
    spot: bool = True

    def market_now(self, now_ms: int) -> int:
        """The instant its market stands at when the clock says ``now_ms``: its last, if halted."""
        return now_ms if self.halted_ms is None else min(now_ms, self.halted_ms - 1)

    def trading(self, now_ms: int) -> bool:
        """Whether it trades at ``now_ms`` (listed or not: see ``listed_ms``)."""
        return self.halted_ms is None or now_ms < self.halted_ms

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

#: The real Binance USDT pairs.
_REAL: Final[tuple[Listing, ...]] = (
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


#: The quote assets of the generated symbols: (asset, its price in USDT, the share of the bases
#: quoted in it). Pairs quoted in BTC, ETH or BNB are only made of bases worth 30 cents or more
#: (:func:`_quotable`), so that their prices stay well above Binance's smallest tick (1e-8).
QUOTES: Final = (
    ("USDT", 1.0, 1.0),
    ("BTC", 60_000.0, 0.40),
    ("FDUSD", 1.0, 0.30),
    ("USDC", 1.0, 0.30),
    ("TRY", 1 / 35, 0.25),
    ("ETH", 3_000.0, 0.12),
    ("BNB", 600.0, 0.12),
    ("EUR", 1.08, 0.08),
    ("BRL", 0.18, 0.05),
    ("JPY", 1 / 150, 0.03),
)
#: The quote assets that are cryptocurrencies, major first (ETHBTC, BNBETH).
CRYPTO_QUOTES: Final = ("BTC", "ETH", "BNB")
#: How many spot symbols trade now in the whole table (the real ones included).
TRADING_NOW: Final = 1_500
#: Every this many generated symbols, one stopped trading; every this many, one is margin only.
_HALTED_EVERY: Final = 25
_MARGIN_ONLY_EVERY: Final = 397
_CONSONANTS: Final = "BCDFGHKLMNPRSTVXZ"
_VOWELS: Final = "AEIOU"
_FIRST_LISTED: Final = utc_ms("2018-01-01")
_LAST_LISTED: Final = utc_ms("2025-06-01")
_LAST_HALT: Final = utc_ms("2026-06-01")
_END_ANCHOR: Final = utc_ms("2026-11-01")
_DAY_MS: Final = 86_400_000


def _unit(name: str, salt: str) -> float:
    """A uniform number in ``[0, 1)`` fixed by ``name`` and ``salt``."""
    digest = hashlib.sha256(f"{salt}:{name}".encode()).digest()
    return int.from_bytes(digest[:7], "little") / float(1 << 56)


def _made_up_base(number: int) -> str:
    """A pronounceable base asset of 3 to 6 letters, such as ``KOVA`` or ``TIRUM``."""
    digest = hashlib.sha256(f"base:{number}".encode()).digest()
    length = 3 + digest[0] % 4
    letters = [
        (_VOWELS if position % 2 else _CONSONANTS)[
            digest[1 + position] % (5 if position % 2 else 17)
        ]
        for position in range(length)
    ]
    return "".join(letters)


def _pair(
    base: str,
    quote: str,
    quote_usdt: float,
    *,
    listed_ms: int,
    usdt_prices: tuple[tuple[int, float], ...],
    usdt_per_minute: float,
    daily_vol: float,
) -> Listing:
    """``base`` quoted in ``quote``: its USDT prices converted, from ``listed_ms`` on."""
    times = [when for when, _ in usdt_prices]
    prices = [price for _, price in usdt_prices]
    first = float(np.interp(listed_ms, times, prices))
    later = tuple((when, price) for when, price in usdt_prices if when > listed_ms)
    anchors = tuple((when, price / quote_usdt) for when, price in ((listed_ms, first), *later))
    return Listing(
        symbol=base + quote,
        base_asset=base,
        listed_ms=listed_ms,
        anchors=anchors,
        quote_per_minute=usdt_per_minute / quote_usdt,
        daily_vol=daily_vol,
        quote_asset=quote,
    )


def _quotable(base: str, quote: str, cheapest_usdt: float) -> bool:
    """Whether Binance could quote ``base`` in ``quote``: ETHBTC and BNBETH, not BTCETH.

    A crypto quote (:data:`CRYPTO_QUOTES`, in Binance's order) takes only bases worth 30 cents
    or more, and none of the crypto quotes before it.
    """
    if base == quote:
        return False
    if quote not in CRYPTO_QUOTES:
        return True
    if base in CRYPTO_QUOTES and CRYPTO_QUOTES.index(base) < CRYPTO_QUOTES.index(quote):
        return False
    return cheapest_usdt >= 0.3


def _candidates() -> Iterator[Listing]:
    """The generated pairs, in a fixed order: the real bases' other quotes, then made-up bases."""
    real_bases = {listing.base_asset: listing for listing in _REAL}
    for base, real in real_bases.items():
        cheapest = min(price for _, price in real.anchors)
        for quote, quote_usdt, share in QUOTES[1:]:
            name = base + quote
            if not _quotable(base, quote, cheapest) or _unit(name, "quoted") >= share:
                continue
            listed = real.listed_ms + int(_unit(name, "listed") * 400 * _DAY_MS)
            yield _pair(
                base,
                quote,
                quote_usdt,
                listed_ms=min(listed, _LAST_LISTED),
                usdt_prices=real.anchors,
                usdt_per_minute=real.quote_per_minute * (0.01 + 0.2 * _unit(name, "volume")),
                daily_vol=real.daily_vol,
            )
    taken = set(real_bases) | {quote for quote, _, _ in QUOTES}
    for number in itertools.count():
        base = _made_up_base(number)
        if base in taken:
            continue
        taken.add(base)
        base_listed = _FIRST_LISTED + int(_unit(base, "listed") * (_LAST_LISTED - _FIRST_LISTED))
        first = 10 ** (-4 + 7 * _unit(base, "price"))
        last = first * 10 ** (-1 + 1.7 * _unit(base, "trend"))
        usdt_prices = ((base_listed, first), (_END_ANCHOR, last))
        for quote, quote_usdt, share in QUOTES:
            name = base + quote
            if quote != "USDT" and _unit(name, "quoted") >= share:
                continue
            if not _quotable(base, quote, min(first, last)):
                continue
            listed = base_listed + int(_unit(name, "listed") * 400 * _DAY_MS)
            yield _pair(
                base,
                quote,
                quote_usdt,
                listed_ms=min(listed, _LAST_LISTED),
                usdt_prices=usdt_prices,
                usdt_per_minute=10 ** (3 + 2 * _unit(name, "volume")),
                daily_vol=0.04 + 0.05 * _unit(name, "volatility"),
            )


def generated_listings() -> tuple[Listing, ...]:
    """The generated universe: enough pairs for :data:`TRADING_NOW` spot symbols to trade.

    Every :data:`_HALTED_EVERY`-th one stopped trading (between half a year after its listing
    and 2026-06-01), every :data:`_MARGIN_ONLY_EVERY`-th one is margin only; none of them counts.
    """
    made: list[Listing] = []
    symbols = {listing.symbol for listing in _REAL}
    trading = len(_REAL)
    for number, listing in enumerate(_candidates(), start=1):
        if trading >= TRADING_NOW:
            break
        if listing.symbol in symbols:
            continue
        symbols.add(listing.symbol)
        if number % _HALTED_EVERY == 0:
            earliest = listing.listed_ms + 180 * _DAY_MS
            span = max(_LAST_HALT - earliest, _DAY_MS)
            halted = earliest + int(_unit(listing.symbol, "halted") * span)
            made.append(dataclasses.replace(listing, halted_ms=halted - halted % 60_000))
        elif number % _MARGIN_ONLY_EVERY == 0:
            made.append(dataclasses.replace(listing, spot=False))
        else:
            made.append(listing)
            trading += 1
    return tuple(made)


#: Every symbol the simulator knows, by name: the real ones first, then the generated ones.
LISTINGS: Final[dict[str, Listing]] = {
    listing.symbol: listing for listing in (*_REAL, *generated_listings())
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
