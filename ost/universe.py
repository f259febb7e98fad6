"""The whole market: symbol patterns in ``OST_SYMBOLS``, resolved from Binance's exchangeInfo.

**Syntax.** ``OST_SYMBOLS`` and ``--symbols`` take comma-separated items, each one of:

- a symbol, ``BTCUSDT`` (2 to 20 of A-Z and 0-9): taken as given, with no request;
- ``all``: every spot symbol that Binance trades now;
- a pattern of A-Z, 0-9, ``*`` (any characters, or none) and ``?`` (one character): every spot
  symbol trading now that it matches whole, like ``*USDT``, ``BTC*`` or ``???BTC``.

They mix (``BTCUSDT,*FDUSD``): the symbols come in the items' order, a pattern's matches in
alphabetical order, each symbol once. A pattern with any other character (``[``, ``../x``, lower
case), or one longer than a symbol can be, is refused when the settings are read (one line, exit
2, before any request); one that matches no spot symbol of exchangeInfo, whatever its status, is
refused the same way after that one request, before any write.

**The listing** (:class:`SpotListing`): the spot symbols of ``GET /api/v3/exchangeInfo`` (weight
20, paced like every request) with their status; a symbol is spot when ``isSpotTradingAllowed``
is true or ``SPOT`` is in its ``permissions`` or ``permissionSets``. A pattern selects only
``TRADING`` ones. The listing is kept in ``state/spot-symbols.json`` beside the ledger (written
atomically), with Binance's rate limits and the symbols that have left it (``gone``), and every
run trusts it for ``OST_EXCHANGE_INFO_TTL`` (1 h): a run within it asks exchangeInfo nothing, for
its symbols or its rate limits. One :class:`Universe` per run resolves the symbols once.

**A symbol that stops trading** ends its streams cleanly instead of failing every 15 minutes:
one line per stream, ``BTCXYZ 15m: no longer trading (BREAK); stream ended``, an outcome that is
not a failure (exit status and flow state unchanged, no alert, not stale) and a line of ``ost
status``. Its status other than ``TRADING`` (``BREAK``, ``HALT``), or its absence from a listing
that held it before (delisted), says so. It is found by the stream's answers: Binance's -1121
"Invalid symbol", or candles that stop before now (``incomplete``), make :meth:`Universe.confirm`
look at the listing: one kept within the TTL that says the symbol stopped is enough; else one
fetched by the run itself (one request, whatever the number of streams, if the run has none from
the last minute). So the stream first stores every candle Binance has up to the stop, and a run
asks exchangeInfo at most once more for it. ``all`` and patterns no longer select it once the
listing says it stopped; a symbol given explicitly keeps being asked for (a request or two per
run, no exchangeInfo) and ends again, one line per run.

A symbol given explicitly that Binance never listed (a typo) is not ended: its -1121 fails its
streams as before. Once a symbol trades again (a listing after the TTL says ``TRADING``), its
streams resume from their last stored candle.

Nothing here imports prefect; the module itself imports nothing heavy (the settings use it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ost.errors import BadInput, BadPayload, BinanceError, BinanceRejected, Incomplete
from ost.intervals import Symbol, parse_symbol
from ost.timefmt import terminal_time

if TYPE_CHECKING:
    from ost.binance import BinanceClient
    from ost.ingest import StreamOutcome
    from ost.settings import Settings

log = logging.getLogger(__name__)

#: The item that means every spot symbol trading now.
ALL: Final = "all"
TRADING: Final = "TRADING"
#: Why a symbol absent from the listing, which held it before, no longer trades.
DELISTED: Final = "delisted"
#: Binance's error code for a symbol it does not know.
INVALID_SYMBOL: Final = -1121
#: How old a listing may be for :meth:`Universe.confirm` to trust it, and so how often at most a
#: run asks exchangeInfo again to confirm that a stream ended.
CONFIRM_WITHIN_MS: Final = 60_000
#: The listing's file, in the ledger's directory.
LISTING_FILE: Final = "spot-symbols.json"
LISTING_FORMAT: Final = 1
_SYMBOL_CHARS: Final = 20
_PATTERN_RE: Final = re.compile(r"[A-Z0-9*?]+")
_GLOB_CHARS: Final = frozenset("*?[]{}!")


# ---- syntax -----------------------------------------------------------------------------------


def is_pattern(item: str) -> bool:
    """Whether ``item`` of ``OST_SYMBOLS`` names symbols by a pattern (``all`` included)."""
    return item == ALL or any(char in _GLOB_CHARS for char in item)


def check_symbol_item(item: str) -> str:
    """Return ``item`` if it is a symbol, ``all`` or a valid pattern, else raise ``BadInput``."""
    if item == ALL:
        return item
    if not is_pattern(item):
        return str(parse_symbol(item))
    example = "like *USDT or BTC*"
    if not _PATTERN_RE.fullmatch(item):
        case = "; symbols are upper case" if _PATTERN_RE.fullmatch(item.upper()) else ""
        raise BadInput(
            f"invalid symbol pattern {item!r}: a pattern has A-Z, 0-9, * (any characters) and ?"
            f" (one character), {example}{case}"
        )
    fixed = len(item.replace("*", ""))
    if fixed > _SYMBOL_CHARS or ("*" not in item and fixed < 2):
        raise BadInput(
            f"invalid symbol pattern {item!r}: no symbol can match it (2 to {_SYMBOL_CHARS}"
            f" characters), {example}"
        )
    return item


def _pattern_re(pattern: str) -> re.Pattern[str]:
    if pattern == ALL:
        return re.compile(r"[A-Z0-9]+")
    body = "".join(
        {"*": "[A-Z0-9]*", "?": "[A-Z0-9]"}.get(char, re.escape(char)) for char in pattern
    )
    return re.compile(body)


@dataclass(frozen=True)
class Selection:
    """What ``OST_SYMBOLS`` or ``--symbols`` names: symbols and patterns, in order."""

    items: tuple[str, ...]

    @classmethod
    def of(cls, items: Iterable[str]) -> Selection:
        """The selection of ``items`` (each checked; one given twice counts once)."""
        return cls(tuple(dict.fromkeys(check_symbol_item(item) for item in items)))

    @property
    def patterns(self) -> tuple[str, ...]:
        """The items that are patterns (``all`` included)."""
        return tuple(item for item in self.items if is_pattern(item))

    @property
    def plain(self) -> tuple[str, ...]:
        """The items that are symbols."""
        return tuple(item for item in self.items if not is_pattern(item))

    def selects(self, symbol: str) -> bool:
        """Whether ``symbol`` is one of the items, or matched by one of the patterns."""
        return symbol in self.plain or any(
            _pattern_re(pattern).fullmatch(symbol) for pattern in self.patterns
        )

    def symbols(self, listing: SpotListing | None, *, strict: bool = True) -> list[Symbol]:
        """The symbols selected: the plain ones as given, the patterns' trading matches.

        ``strict``: a pattern that matches no spot symbol of ``listing`` is :class:`BadInput`,
        and one that matches none trading says so on one line. Not strict (what is known without
        asking Binance), a pattern without a listing selects nothing.
        """
        chosen: dict[Symbol, None] = {}
        for item in self.items:
            if not is_pattern(item):
                chosen[parse_symbol(item)] = None
                continue
            if listing is None:
                if strict:
                    raise ValueError(f"pattern {item!r}: no listing to resolve it from")
                continue
            matched = listing.matching(item)
            trading = [symbol for symbol in matched if listing.statuses[symbol] == TRADING]
            if strict and not matched:
                raise BadInput(
                    f"symbol pattern {item!r} matches no spot symbol of Binance's exchangeInfo"
                    f" ({len(listing.statuses)} spot symbols listed)"
                )
            if strict and not trading:
                log.warning(
                    "symbol pattern %r matches no symbol trading now (%d not trading)",
                    item,
                    len(matched),
                )
            chosen.update(dict.fromkeys(map(parse_symbol, trading)))
        return list(chosen)


# ---- the listing ------------------------------------------------------------------------------


def _is_spot(entry: Mapping[str, Any]) -> bool:
    if entry.get("isSpotTradingAllowed") is True:
        return True
    permissions = entry.get("permissions") or []
    sets = entry.get("permissionSets") or []
    return "SPOT" in permissions or any("SPOT" in each for each in sets if isinstance(each, list))


@dataclass(frozen=True)
class SpotListing:
    """Binance's spot symbols and their status, as one exchangeInfo answer gave them."""

    #: Every spot symbol, by name: its status (``TRADING``, ``BREAK``, ``HALT``...).
    statuses: Mapping[str, str]
    #: When it was fetched (epoch ms, local clock), and from which base URLs (their labels).
    fetched_at_ms: int
    sources: tuple[str, ...]
    #: exchangeInfo's ``rateLimits``, for the client's pacer.
    rate_limits: tuple[Mapping[str, Any], ...] = ()
    #: Symbols that an earlier listing held and this one does not (delisted): when first missed.
    gone: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_exchange_info(
        cls,
        body: Any,
        *,
        fetched_at_ms: int,
        sources: Sequence[str],
        previous: SpotListing | None = None,
    ) -> SpotListing:
        """The listing of an exchangeInfo answer; :class:`BadPayload` if it has not its shape.

        ``previous`` (the listing it replaces) carries over the symbols gone, and adds to them
        its own symbols that this answer no longer holds.
        """
        entries = body.get("symbols") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise BadPayload(f"exchangeInfo answered {str(body)[:80]!r} without a symbols list")
        statuses: dict[str, str] = {}
        for entry in entries:
            symbol = entry.get("symbol") if isinstance(entry, dict) else None
            status = entry.get("status") if isinstance(entry, dict) else None
            if not isinstance(symbol, str) or not isinstance(status, str):
                raise BadPayload(f"exchangeInfo lists {str(entry)[:80]!r}: no symbol and status")
            if _is_spot(entry):
                statuses[symbol] = status
        limits = body.get("rateLimits") or []
        gone: dict[str, int] = {}
        if previous is not None:
            gone = {s: at for s, at in previous.gone.items() if s not in statuses}
            gone.update(dict.fromkeys(set(previous.statuses) - set(statuses), fetched_at_ms))
        return cls(
            statuses=statuses,
            fetched_at_ms=fetched_at_ms,
            sources=tuple(sources),
            rate_limits=tuple(limit for limit in limits if isinstance(limit, dict)),
            gone=gone,
        )

    def matching(self, pattern: str) -> list[str]:
        """The spot symbols that ``pattern`` matches whole, whatever their status, sorted."""
        compiled = _pattern_re(pattern)
        return sorted(symbol for symbol in self.statuses if compiled.fullmatch(symbol))

    def not_trading(self, symbol: str) -> str | None:
        """Why ``symbol`` no longer trades (its status, or ``delisted``); None: it trades.

        None too for a symbol this listing knows nothing of (never listed, as far as it knows).
        """
        status = self.statuses.get(symbol)
        if status is not None:
            return None if status == TRADING else status
        return DELISTED if symbol in self.gone else None

    def to_json(self) -> str:
        """The listing as its file holds it."""
        return json.dumps(
            {
                "format": LISTING_FORMAT,
                "fetched_at": dt.datetime.fromtimestamp(
                    self.fetched_at_ms / 1000, dt.UTC
                ).isoformat(timespec="milliseconds"),
                "fetched_at_ms": self.fetched_at_ms,
                "sources": list(self.sources),
                "rate_limits": list(self.rate_limits),
                "symbols": dict(sorted(self.statuses.items())),
                "gone": dict(sorted(self.gone.items())),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> SpotListing:
        """The listing its file holds; ``ValueError`` if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != LISTING_FORMAT:
            raise ValueError(f"not a spot-symbols file of format {LISTING_FORMAT}")
        statuses, gone = data["symbols"], data["gone"]
        if not all(isinstance(s, str) and isinstance(v, str) for s, v in statuses.items()):
            raise ValueError("its symbols are not names and statuses")
        if not all(isinstance(s, str) and type(at) is int for s, at in gone.items()):
            raise ValueError("its gone symbols are not names and times")
        if type(data["fetched_at_ms"]) is not int:
            raise ValueError("its fetched_at_ms is not an integer")
        return cls(
            statuses=statuses,
            fetched_at_ms=data["fetched_at_ms"],
            sources=tuple(str(source) for source in data["sources"]),
            rate_limits=tuple(limit for limit in data["rate_limits"] if isinstance(limit, dict)),
            gone=gone,
        )


def listing_path(settings: Settings) -> Path:
    """Where the listing is kept: ``spot-symbols.json`` in the ledger's directory."""
    from ost.ledger import ledger_path  # noqa: PLC0415  # the settings import this module: no filelock

    return ledger_path(settings.data_dir).parent / LISTING_FILE


def read_listing(path: Path) -> SpotListing | None:
    """The listing kept at ``path``, whatever its age; None when there is none to read.

    A file that cannot be read as one (damaged, of another format) is said on one line and
    taken as no listing: it is a cache, fetched again when needed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("Cannot read the symbol listing %s (%s): it is fetched again", path, exc)
        return None
    try:
        return SpotListing.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("The symbol listing %s is damaged (%s): it is fetched again", path, exc)
        return None


def write_listing(path: Path, listing: SpotListing) -> None:
    """Keep ``listing`` at ``path``, atomically (a temp file renamed over it).

    A file system that refuses it costs one line, not the run: the listing is a cache.
    """
    temp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        temp = Path(name)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(listing.to_json())
        os.replace(temp, path)
    except OSError as exc:
        log.warning(
            "Cannot keep the symbol listing in %s (%s): the next run asks exchangeInfo again",
            path,
            exc,
        )
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)


def known_symbols(settings: Settings) -> list[Symbol]:
    """The symbols ``OST_SYMBOLS`` selects as far as is known without asking Binance.

    From the listing kept (whatever its age): the patterns' trading matches (none before any
    listing), and the plain symbols except those known to have stopped trading. What the
    watchdog, ``ost status`` and the metrics take as the configured symbols.
    """
    listing = read_listing(listing_path(settings))
    symbols = Selection.of(settings.symbols).symbols(listing, strict=False)
    if listing is None:
        return symbols
    return [symbol for symbol in symbols if listing.not_trading(symbol) is None]


@dataclass(frozen=True)
class EndedStream:
    """A stream whose symbol no longer trades: what ``ost status`` lists apart."""

    symbol: str
    interval: str
    #: The symbol's status (``BREAK``...) or ``delisted``.
    why: str

    def as_dict(self) -> dict[str, str]:
        """As ``ost status --json`` shows it."""
        return {"symbol": self.symbol, "interval": self.interval, "why": self.why}


def ended_streams(settings: Settings, known: Iterable[tuple[str, str]]) -> list[EndedStream]:
    """The streams ``OST_SYMBOLS`` selects whose symbol no longer trades, from the listing kept.

    ``known`` are the streams the ledger knows (those that ran); with them, each plain symbol's
    streams of ``OST_INTERVALS``.
    """
    listing = read_listing(listing_path(settings))
    if listing is None:
        return []
    selection = Selection.of(settings.symbols)
    streams = dict.fromkeys(known)
    streams.update(dict.fromkeys((s, i) for s in selection.plain for i in settings.intervals))
    ended = []
    for symbol, interval in sorted(streams):
        why = listing.not_trading(symbol)
        if why is not None and selection.selects(symbol):
            ended.append(EndedStream(symbol, interval, why))
    return ended


def ended_line(symbol: str, interval: str, why: str) -> str:
    """The one line that says a stream ended: ``BTCXYZ 15m: no longer trading (BREAK); ...``."""
    return f"{symbol} {interval}: no longer trading ({why}); stream ended"


def end_stream(outcome: StreamOutcome, why: str) -> StreamOutcome:
    """``outcome`` as the end of its stream: not a failure, ``ended`` saying why; one line."""
    log.warning("%s", ended_line(outcome.symbol, outcome.interval, why))
    return dataclasses.replace(
        outcome, ok=True, reason="ended", error=None, exception=None, ended=why
    )


# ---- one run's view ---------------------------------------------------------------------------


class Universe:
    """One run's listing: the one kept while it is fresh, else fetched (and kept) once.

    Safe to share between the threads of a run: one fetch at a time, and the others use it.
    """

    def __init__(self, path: Path, client: BinanceClient, *, ttl: dt.timedelta) -> None:
        self.path = path
        self.client = client
        self.ttl_ms = int(ttl.total_seconds() * 1000)
        self._lock = threading.RLock()
        self._listing: SpotListing | None = None
        #: When the file was last read (local ms; None: not yet).
        self._read_at_ms: int | None = None
        self._unsaved = False
        self._adopted: SpotListing | None = None
        #: When this universe last fetched a listing, or failed to (local ms): what
        #: :meth:`confirm` trusts, or waits for, :data:`CONFIRM_WITHIN_MS` long.
        self._fetched_at_ms: int | None = None
        self._failed_at_ms: int | None = None

    @classmethod
    def for_settings(cls, settings: Settings, client: BinanceClient) -> Universe:
        """The universe of ``settings``' data dir and TTL, fetched through ``client``."""
        return cls(listing_path(settings), client, ttl=settings.exchange_info_ttl)

    def resolve(self, selection: Selection, *, fresh: bool = True) -> list[Symbol]:
        """The symbols of ``selection``: with a pattern, from a listing (see :meth:`listing`).

        Without a pattern it asks nothing (and a listing kept within the TTL gives the client
        its rate limits, so that it need not ask either). A pattern that matches nothing is
        :class:`BadInput`, raised before the listing fetched for it is kept.
        """
        with self._lock:
            if not selection.patterns:
                kept = self._kept()
                if kept is not None and self._age_ms(kept) <= self.ttl_ms:
                    self._use(kept)
                return list(map(parse_symbol, selection.plain))
            symbols = selection.symbols(self.listing(fresh=fresh))
            self._save()
            return symbols

    def known(self, selection: Selection) -> list[Symbol]:
        """The symbols of ``selection`` known without asking Binance (the listing in hand)."""
        with self._lock:
            return selection.symbols(self._kept(), strict=False)

    def listing(self, *, fresh: bool = True) -> SpotListing:
        """The listing in hand or kept if ``fresh`` within the TTL (or not ``fresh``); else fetched.

        When the fetch fails and a listing is kept, that one is used, whatever its age, and one
        line says so.
        """
        with self._lock:
            kept = self._kept()
            if kept is not None and (not fresh or self._age_ms(kept) <= self.ttl_ms):
                return self._use(kept)
            try:
                return self._fetch()
            except BinanceError as exc:
                if kept is None:
                    raise
                log.warning(
                    "Cannot fetch exchangeInfo (%s): the symbols are those of the listing of"
                    " %s UTC",
                    exc,
                    terminal_time(kept.fetched_at_ms),
                )
                return self._use(kept)

    def confirm(self, outcome: StreamOutcome) -> str | None:
        """Why the stream of a failed ``outcome`` ended, or None: it failed, or it did not.

        Only an ``incomplete`` outcome or Binance's -1121 "Invalid symbol" may mean that its
        symbol stopped trading. The listing kept says so if it is within the TTL and says that
        the symbol stopped; else a listing that this universe fetched at most
        :data:`CONFIRM_WITHIN_MS` ago says whether (fetched now if needed, and kept: at most one
        request a minute, and one per run of a new process). A symbol absent from it ended if a
        listing held it before, or if it has candles stored; else (never listed: a typo) the
        failure stands. When no listing can be had, the failure stands too.
        """
        error = outcome.exception
        invalid = isinstance(error, BinanceRejected) and error.code == INVALID_SYMBOL
        if outcome.ok or not (invalid or isinstance(error, Incomplete)):
            return None
        with self._lock:
            kept = self._kept()
            fresh = kept is not None and self._age_ms(kept) <= self.ttl_ms
            if fresh and kept is not None and (why := kept.not_trading(outcome.symbol)):
                return why
            listing = self._recent()
            if listing is None:
                return None
            why = listing.not_trading(outcome.symbol)
            if why is None and outcome.symbol not in listing.statuses:
                return DELISTED if outcome.last_open_ms is not None else None
            return why

    def _recent(self) -> SpotListing | None:
        """A listing fetched here within a minute (fetched and kept now if needed), or None."""
        now = self.client.local_ms()
        if self._fetched_at_ms is not None and now - self._fetched_at_ms <= CONFIRM_WITHIN_MS:
            return self._listing
        if self._failed_at_ms is not None and now - self._failed_at_ms <= CONFIRM_WITHIN_MS:
            return None
        try:
            listing = self._fetch()
        except BinanceError as exc:
            log.warning(
                "Cannot fetch exchangeInfo to see whether a symbol stopped trading (%s): its"
                " streams fail as they are",
                exc,
            )
            return None
        self._save()
        return listing

    def _kept(self) -> SpotListing | None:
        """The listing in hand, or the file's (another process may have fetched a newer one).

        The file is read first, then again (once a minute at most) while the listing in hand is
        older than the TTL; only a listing fetched from the configured base URLs counts.
        """
        now = self.client.local_ms()
        stale = self._listing is None or self._age_ms(self._listing) > self.ttl_ms
        if self._read_at_ms is None or (stale and now - self._read_at_ms > CONFIRM_WITHIN_MS):
            self._read_at_ms = now
            kept = read_listing(self.path)
            if kept is not None and kept.sources == tuple(self.client.base_urls):
                held = self._listing
                self._listing = (
                    kept if held is None or kept.fetched_at_ms > held.fetched_at_ms else held
                )
        return self._listing

    def _use(self, listing: SpotListing) -> SpotListing:
        """``listing``, its rate limits adopted by the client (once), so it need not ask."""
        if listing is not self._adopted:
            self.client.adopt_rate_limits(listing.rate_limits)
            self._adopted = listing
        return listing

    def _fetch(self) -> SpotListing:
        try:
            body = self.client.exchange_info()
        except BinanceError:
            self._failed_at_ms = self.client.local_ms()
            raise
        self._listing = SpotListing.from_exchange_info(
            body,
            fetched_at_ms=self.client.local_ms(),
            sources=self.client.base_urls,
            previous=self._listing,
        )
        self._adopted = self._listing  # exchange_info() adopted its rate limits
        self._fetched_at_ms = self._listing.fetched_at_ms
        self._unsaved = True
        return self._listing

    def _save(self) -> None:
        if self._unsaved and self._listing is not None:
            write_listing(self.path, self._listing)
            self._unsaved = False

    def _age_ms(self, listing: SpotListing) -> int:
        return self.client.local_ms() - listing.fetched_at_ms
