"""The simulator's endpoints: Binance's REST API, the archive, and the admin API.

Binance's parameter errors answer HTTP 400 with ``{"code": ..., "msg": ...}``: -1100 illegal
characters (a number that is not digits, a malformed symbol), -1102 a mandatory parameter
missing, -1120 unknown interval, -1121 unknown symbol (or one not listed yet at server time, or
delisted), -1130 a limit below 1, -1023 startTime after endTime. A ``limit`` above 1000 is served
as 1000.

exchangeInfo lists every symbol listed by server time (:mod:`ost.sim.symbols`: about 1,560, of
which 1,500 trade on the spot market now), with its status: ``TRADING``, ``BREAK`` once it stopped
(its own halt, or ``SimConfig.stopped``), or as ``stopped`` says; a ``DELISTED`` one is not listed
at all. A symbol's klines (and archive files) stop where its trading stopped.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ost.errors import BadInput
from ost.sim import archive, market, timegrid
from ost.sim.faults import faults_from_json
from ost.sim.gate import window_words
from ost.sim.state import DELISTED, SimState
from ost.sim.symbols import LISTINGS, Listing, find_listing

_JSON: Final = "application/json;charset=UTF-8"
_SYMBOL_RE: Final = re.compile(r"^[A-Za-z0-9\-_.]{1,20}$")
_DIGITS_RE: Final = re.compile(r"^[0-9]{1,20}$")


class BinanceError(Exception):
    """An error answer in Binance's JSON shape."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status

    def response(self) -> Response:
        """The error as an HTTP response."""
        body = orjson.dumps({"code": self.code, "msg": self.msg})
        return Response(body, status_code=self.status, media_type=_JSON)


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as a JSON response (orjson)."""
    return Response(orjson.dumps(data), status_code=status, media_type=_JSON)


def _state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


# ---- parameters ---------------------------------------------------------------------------------


def _mandatory(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value:
        raise BinanceError(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def _optional_int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not _DIGITS_RE.fullmatch(value):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)


def _listed(state: SimState, symbol: str, now_ms: int) -> Listing:
    if not _SYMBOL_RE.fullmatch(symbol):
        raise BinanceError(
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        )
    listing = find_listing(symbol)
    if listing is None or not _is_listed(state, listing, now_ms):
        raise BinanceError(-1121, "Invalid symbol.")
    return listing


def _is_listed(state: SimState, listing: Listing, now_ms: int) -> bool:
    """Whether ``listing`` is listed at ``now_ms``: listed by then, and not delisted."""
    return listing.listed_ms <= now_ms and state.status(listing, now_ms) != DELISTED


# ---- Binance REST API ---------------------------------------------------------------------------


async def ping(_request: Request) -> Response:
    """``GET /api/v3/ping``."""
    return json_response({})


async def server_time(request: Request) -> Response:
    """``GET /api/v3/time``."""
    return json_response({"serverTime": _state(request).now_ms()})


async def exchange_info(request: Request) -> Response:
    """``GET /api/v3/exchangeInfo`` (all listed symbols, or ``symbol=`` / ``symbols=[..]``)."""
    state = _state(request)
    now = state.now_ms()
    try:
        wanted = _wanted_symbols(state, request, now)
    except BinanceError as error:
        return error.response()
    config = state.config
    interval_num, interval_name = window_words(config.weight_window_s).split()
    return json_response(
        {
            "timezone": "UTC",
            "serverTime": now,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval_name,
                    "intervalNum": int(interval_num),
                    "limit": config.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [_symbol_info(listing, state.status(listing, now)) for listing in wanted],
        }
    )


def _wanted_symbols(state: SimState, request: Request, now_ms: int) -> list[Listing]:
    if "symbol" in request.query_params:
        return [_listed(state, request.query_params["symbol"], now_ms)]
    if "symbols" in request.query_params:
        try:
            names = orjson.loads(request.query_params["symbols"])
        except orjson.JSONDecodeError:
            raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        return [_listed(state, str(name), now_ms) for name in names]
    return [listing for listing in LISTINGS.values() if _is_listed(state, listing, now_ms)]


@functools.lru_cache(maxsize=8192)
def _symbol_info(listing: Listing, status: str) -> dict[str, Any]:
    """A symbol's entry of exchangeInfo (built once per symbol and status: never changed)."""
    tick = f"{listing.tick_size:.8f}"
    margin = listing.quote_asset in ("USDT", "BTC") or not listing.spot
    permissions = ["SPOT"] * listing.spot + ["MARGIN"] * margin
    return {
        "symbol": listing.symbol,
        "status": status,
        "baseAsset": listing.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": listing.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": listing.spot,
        "isMarginTradingAllowed": margin,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
        ],
        "permissions": [],
        "permissionSets": [permissions],
    }


async def klines(request: Request) -> Response:
    """``GET /api/v3/klines``."""
    state = _state(request)
    now = state.now_ms()
    try:
        page = _klines_page(request, now)
    except BinanceError as error:
        return error.response()
    return Response(page, media_type=_JSON)


def _klines_page(request: Request, now_ms: int) -> bytes:
    symbol = _mandatory(request, "symbol")
    _state(request).klines_by_symbol[symbol] += 1
    interval = _mandatory(request, "interval")
    listing = _listed(_state(request), symbol, now_ms)
    if interval not in timegrid.INTERVALS:
        raise BinanceError(-1120, "Invalid interval.")
    start = _optional_int(request, "startTime")
    end = _optional_int(request, "endTime")
    limit = _optional_int(request, "limit")
    if limit is None:
        limit = market.DEFAULT_LIMIT
    if limit < 1:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    if start is not None and end is not None and start > end:
        raise BinanceError(-1023, "Start time is greater than end time.")
    candles = market.page(
        listing.symbol,
        interval,
        _state(request).market_now(listing, now_ms),
        start_time=start,
        end_time=end,
        limit=min(limit, market.MAX_LIMIT),
    )
    return candles.json_bytes()


# ---- data.binance.vision ------------------------------------------------------------------------


async def archive_file(request: Request) -> Response:
    """``GET /data/spot/{daily|monthly}/klines/{symbol}/{interval}/{file}``."""
    params = request.path_params
    wanted = archive.parse_request(
        params["span"], params["symbol"], params["interval"], params["filename"]
    )
    state = _state(request)
    now = state.now_ms()
    if wanted is None or not archive.is_published(wanted, now):
        return _no_such_key(request.url.path)
    listing = find_listing(wanted.symbol)
    if listing is None or wanted.start_ms > state.market_now(listing, now):
        return _no_such_key(request.url.path)  # no file begins after its trading stopped
    # A monthly zip of small candles takes a while to build: keep the event loop serving.
    data = await run_in_threadpool(archive.zip_bytes, wanted)
    if data is None:
        return _no_such_key(request.url.path)
    if wanted.checksum:
        return Response(archive.checksum_text(data, wanted.zip_name), media_type="text/plain")
    return Response(data, media_type="application/zip")


def _no_such_key(path: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        f"<Message>The specified key does not exist.</Message><Key>{path.lstrip('/')}</Key></Error>"
    )
    return Response(body, status_code=404, media_type="application/xml")


# ---- admin --------------------------------------------------------------------------------------


async def admin_ping(_request: Request) -> Response:
    """``GET /_sim/ping``: the simulator is up (no weight, never faulted)."""
    return json_response({})


async def admin_stats(request: Request) -> Response:
    """``GET /_sim/stats``: counters per path and status, 429s, 418s, weight used."""
    return json_response(_state(request).stats())


async def admin_faults(request: Request) -> Response:
    """``GET`` lists, ``POST`` arms (SPEC string or JSON), ``DELETE`` clears the faults."""
    book = _state(request).faults
    if request.method == "POST":
        raw = await request.body()
        try:
            payload = _json_or_text(raw, request.headers.get("content-type", ""))
            book.arm(faults_from_json(payload))
        except BadInput as error:
            return json_response({"error": str(error)}, status=400)
    elif request.method == "DELETE":
        book.arm([])
    return json_response([fault.as_dict() for fault in book.faults])


def _json_or_text(raw: bytes, content_type: str) -> Any:
    if "json" not in content_type:
        return raw.decode()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadInput(f"the body is not JSON: {error}") from None


async def admin_config(request: Request) -> Response:
    """``GET`` shows, ``POST`` changes settings (any SimConfig field, or ``now_ms``)."""
    state = _state(request)
    if request.method == "POST":
        try:
            changes = orjson.loads(await request.body() or b"{}")
            state.configure(**_config_changes(changes))
        except (BadInput, TypeError, ValueError) as error:
            return json_response({"error": str(error)}, status=400)
    return json_response({**state.config.as_dict(), "server_time": state.now_ms()})


_CONFIG_FIELDS: Final = {
    "weight_limit": int,
    "weight_window_s": int,
    "latency_ms": float,
    "clock_offset_ms": int,
    "now_ms": int,
    "seed": int,
    "ban_after": int,
    "ban_windows": int,
    "stopped": str,
    "cpu_per_request_ms": float,
}


def _config_changes(changes: Any) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise BadInput("the config body must be a JSON object")
    unknown = set(changes) - set(_CONFIG_FIELDS)
    if unknown:
        raise BadInput(f"unknown setting(s) {sorted(unknown)}: expected {sorted(_CONFIG_FIELDS)}")
    return {name: _CONFIG_FIELDS[name](value) for name, value in changes.items()}


async def admin_reset(request: Request) -> Response:
    """``POST /_sim/reset``: forget counters, used weight and bans."""
    _state(request).reset()
    return json_response({})


ROUTES: Final = [
    Route("/api/v3/ping", ping),
    Route("/api/v3/time", server_time),
    Route("/api/v3/exchangeInfo", exchange_info),
    Route("/api/v3/klines", klines),
    Route("/data/spot/{span}/klines/{symbol}/{interval}/{filename}", archive_file),
    Route("/_sim/ping", admin_ping),
    Route("/_sim/stats", admin_stats),
    Route("/_sim/faults", admin_faults, methods=["GET", "POST", "DELETE"]),
    Route("/_sim/config", admin_config, methods=["GET", "POST"]),
    Route("/_sim/reset", admin_reset, methods=["POST"]),
]
