"""The one typed settings object, read from ``OST_*`` environment variables and ``.env``.

Build it with :func:`load_settings`; a bad value raises :class:`~ost.errors.BadInput` with one
line naming the variable, so every command fails loudly and early: an empty list of symbols or
intervals, an empty data dir, an infinite or NaN number, an escalation ladder whose thresholds
do not rise. An apprise URL that apprise itself cannot parse is refused the same way by the
commands that notify (:func:`check_apprise_urls`), not by every command: apprise needs about a
second to load its plugins, and a broken alert target must not stop ingestion.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from typing import Annotated, Any, Final, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ost.errors import BadInput
from ost.intervals import Interval, parse_interval
from ost.universe import check_symbol_item

DEFAULT_BASE_URLS = (
    "https://api.binance.com,https://api1.binance.com,https://api2.binance.com,"
    "https://api3.binance.com,https://api4.binance.com,https://api-gcp.binance.com,"
    "https://data-api.binance.vision"
)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

CommaList = Annotated[list[str], NoDecode]
Item = TypeVar("Item", bound=str)


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``1h``, ``2d`` (or plain seconds) as a timedelta."""
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        return dt.timedelta(seconds=float(text))
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h or d, like 30m")
    try:
        return dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long: use one like 30m") from None


def split_commas(value: Any) -> list[str]:
    """A comma-separated string (or a list) as a list of stripped, non-empty items."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def _listed(items: list[Item], what: str, example: str) -> list[Item]:
    """``items``, unless there are none or one comes twice."""
    if not items:
        raise ValueError(f"no {what} given: set a comma-separated list, like {example}")
    for index, item in enumerate(items):
        if item in items[:index]:
            raise ValueError(f"{item} is listed twice")
    return items


def split_apprise_urls(text: str) -> list[str]:
    """``OST_APPRISE_URLS`` as a list: URLs separated by commas and/or whitespace."""
    return [item for item in re.split(r"[\s,]+", text) if item]


def apprise_target_label(url: str) -> str:
    """How an apprise URL is named in messages: its scheme alone (the rest may be a token)."""
    scheme, separator, _ = url.partition("://")
    if separator and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,30}", scheme):
        return f"{scheme}://***"
    return "***"


class _DropRecords(logging.Filter):
    """Drops every record (apprise's, while it parses a URL it would quote)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: ARG002  # logging's signature
        return False


@functools.cache
def apprise_can_use(url: str) -> bool:
    """Whether apprise's own parser makes a notification service of ``url``.

    Apprise loads its plugins for this (about a second), so it is imported only when URLs are
    set, and once per URL and process; its log lines, which quote the URL (and so its tokens),
    are dropped meanwhile.
    """
    import apprise  # noqa: PLC0415  # heavy: only when OST_APPRISE_URLS is set

    logger = logging.getLogger("apprise")
    drop = _DropRecords()
    logger.addFilter(drop)
    try:
        asset = apprise.AppriseAsset(storage_mode="memory")
        return apprise.Apprise.instantiate(url, asset=asset) is not None
    finally:
        logger.removeFilter(drop)


def _show(duration: dt.timedelta) -> str:
    seconds = duration.total_seconds()
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


#: Requests of one stream's backfill in flight at once: 8 hides a 20 ms round trip behind
#: the client's own work (docs/benchmarks.md); the weight pacer bounds what they spend.
DEFAULT_MAX_CONCURRENCY: Final = 8
#: The clock skew (Binance's clock against the local one) past which every run warns. An
#: NTP-synced host stays within milliseconds of UTC, and the measure itself errs by at most half
#: a round trip (well under a second); 5 s is also the window within which Binance itself
#: accepts a signed request's timestamp (``recvWindow``'s default, 5000 ms). A skew past it is a
#: broken clock on one side, never noise.
DEFAULT_MAX_CLOCK_SKEW: Final = dt.timedelta(seconds=5)
#: How late a stream's newest closed candle may be before the stream is *stale*, beyond the
#: candle's own length: the 15-minute schedule (a candle that closes just after a run waits for
#: the next one) plus 5 minutes for a worker to pick the run up and finish it (retries included).
DEFAULT_STALE_GRACE: Final = dt.timedelta(minutes=20)
#: How long a run trusts the spot symbols kept from exchangeInfo (:mod:`ost.universe`): a
#: listing or a delisting waits at most this long to change what ``all`` and patterns select
#: (a symbol that stops trading is noticed at once, by its answers), for 20 weight an hour.
DEFAULT_EXCHANGE_INFO_TTL: Final = dt.timedelta(hours=1)
#: The longest ``OST_EXCHANGE_INFO_TTL``: a listing older than a day misses the new symbols.
MAX_EXCHANGE_INFO_TTL: Final = dt.timedelta(days=1)


class Settings(BaseSettings):
    """Everything configurable, with the defaults of the interface (docs/CONTRACT.md)."""

    model_config = SettingsConfigDict(
        env_prefix="OST_", env_file=".env", extra="ignore", frozen=True, allow_inf_nan=False
    )

    binance_base_urls: CommaList = Field(default_factory=lambda: split_commas(DEFAULT_BASE_URLS))
    archive_base_url: str = "https://data.binance.vision"
    data_dir: str = "./data"
    #: Symbols, ``all`` or patterns (:mod:`ost.universe` resolves them into symbols).
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    intervals: Annotated[list[Interval], NoDecode] = Field(
        default_factory=lambda: list(map(parse_interval, ["15m", "1h", "4h", "1d"]))
    )
    http_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_lookback_days: float = Field(default=7, gt=0, le=36_500)  # as `--days`: 100 years
    escalation_monitor_after: dt.timedelta = dt.timedelta(minutes=15)
    escalation_alert_after: dt.timedelta = dt.timedelta(minutes=30)
    escalation_escalate_after: dt.timedelta = dt.timedelta(minutes=60)
    apprise_urls: SecretStr | None = None
    apprise_config: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=8000, ge=0, le=65535)
    disable_scheduler: bool = False
    #: Added to the contract: how many requests of one stream's backfill run at once.
    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1, le=64)
    #: Added to the contract: the clock skew past which every run warns (see ost/clock.py).
    max_clock_skew: dt.timedelta = DEFAULT_MAX_CLOCK_SKEW
    #: Added to the contract: a stream is stale once its first missing candle closed this long ago.
    stale_grace: dt.timedelta = DEFAULT_STALE_GRACE
    #: Added to the contract: how long the spot symbols of exchangeInfo are kept and trusted.
    exchange_info_ttl: dt.timedelta = DEFAULT_EXCHANGE_INFO_TTL

    @field_validator("binance_base_urls", mode="before")
    @classmethod
    def _base_urls(cls, value: Any) -> list[str]:
        urls = [url.rstrip("/") for url in split_commas(value)]
        if not urls:
            raise ValueError("at least one base URL is needed")
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @field_validator("archive_base_url")
    @classmethod
    def _archive_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty: set the candle store's directory (or fsspec URL), like ./data")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> list[str]:
        symbols = [check_symbol_item(item) for item in split_commas(value)]
        return _listed(symbols, "symbol", "BTCUSDT,ETHUSDT (or all, or a pattern like *USDT)")

    @field_validator("intervals", mode="before")
    @classmethod
    def _intervals(cls, value: Any) -> list[Interval]:
        intervals = [parse_interval(interval) for interval in split_commas(value)]
        return _listed(intervals, "interval", "15m,1h,4h,1d")

    @field_validator("escalation_alert_after", "escalation_escalate_after")
    @classmethod
    def _ladder_rises(cls, value: dt.timedelta, info: ValidationInfo) -> dt.timedelta:
        below = {
            "escalation_alert_after": "escalation_monitor_after",
            "escalation_escalate_after": "escalation_alert_after",
        }[str(info.field_name)]
        lower = info.data.get(below)
        if isinstance(lower, dt.timedelta) and value < lower:
            raise ValueError(
                f"{_show(value)} is below OST_{below.upper()} ({_show(lower)}): the ladder's"
                " thresholds must rise, monitor <= alert <= escalate"
            )
        return value

    @field_validator(
        "escalation_monitor_after",
        "escalation_alert_after",
        "escalation_escalate_after",
        "max_clock_skew",
        "stale_grace",
        "exchange_info_ttl",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("max_clock_skew")
    @classmethod
    def _positive_skew(cls, value: dt.timedelta) -> dt.timedelta:
        if value <= dt.timedelta(0):
            raise ValueError(f"{value.total_seconds():g}s is not a positive duration, like 5s")
        return value

    @field_validator("stale_grace")
    @classmethod
    def _non_negative_grace(cls, value: dt.timedelta) -> dt.timedelta:
        if value < dt.timedelta(0):
            raise ValueError(f"{value.total_seconds():g}s is negative: use a duration like 20m")
        return value

    @field_validator("exchange_info_ttl")
    @classmethod
    def _bounded_ttl(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(0) <= value <= MAX_EXCHANGE_INFO_TTL:
            raise ValueError(
                f"{value.total_seconds():g}s is not between 0 (ask exchangeInfo every run) and"
                f" {_show(MAX_EXCHANGE_INFO_TTL)}: use a duration like 1h"
            )
        return value


def check_apprise_urls(settings: Settings) -> None:
    """Raise :class:`BadInput` naming the first ``OST_APPRISE_URLS`` entry apprise cannot use.

    The entry is named by its position and scheme only: the rest of it may be a token.
    """
    text = settings.apprise_urls.get_secret_value() if settings.apprise_urls else ""
    urls = split_apprise_urls(text)
    for number, url in enumerate(urls, start=1):
        if not apprise_can_use(url):
            raise BadInput(
                f"OST_APPRISE_URLS: entry {number} of {len(urls)} ({apprise_target_label(url)})"
                " is not a URL apprise can use: check it against its service's page on apprise's"
                " wiki"
            )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and ``overrides``), or raise ``BadInput``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "OST_" + str(first["loc"][0]).upper() if first["loc"] else "OST_*"
        cause = first.get("ctx", {}).get("error")
        message = cause.args[0] if isinstance(cause, Exception) and cause.args else first["msg"]
        raise BadInput(f"{name}: {message}") from None
