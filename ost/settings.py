"""The one typed settings object, read from ``OST_*`` environment variables and ``.env``.

Build it with :func:`load_settings`; a bad value raises :class:`~ost.errors.BadInput` with one
line naming the variable, so every command fails loudly and early.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Final

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ost.errors import BadInput
from ost.intervals import check_interval, check_symbol

DEFAULT_BASE_URLS = (
    "https://api.binance.com,https://api1.binance.com,https://api2.binance.com,"
    "https://api3.binance.com,https://api4.binance.com,https://api-gcp.binance.com,"
    "https://data-api.binance.vision"
)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

CommaList = Annotated[list[str], NoDecode]


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``1h``, ``2d`` (or plain seconds) as a timedelta."""
    if re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", text):
        return dt.timedelta(seconds=float(text))
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and s, m, h or d, like 30m")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def split_commas(value: Any) -> list[str]:
    """A comma-separated string (or a list) as a list of stripped, non-empty items."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


#: Requests of one stream's backfill in flight at once: 8 hides a 20 ms round trip behind
#: the client's own work (docs/benchmarks.md); the weight pacer bounds what they spend.
DEFAULT_MAX_CONCURRENCY: Final = 8


class Settings(BaseSettings):
    """Everything configurable, with the defaults of the interface (docs/CONTRACT.md)."""

    model_config = SettingsConfigDict(
        env_prefix="OST_", env_file=".env", extra="ignore", frozen=True
    )

    binance_base_urls: CommaList = Field(default_factory=lambda: split_commas(DEFAULT_BASE_URLS))
    archive_base_url: str = "https://data.binance.vision"
    data_dir: str = "./data"
    symbols: CommaList = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    intervals: CommaList = Field(default_factory=lambda: ["15m", "1h", "4h", "1d"])
    http_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_lookback_days: float = Field(default=7, gt=0)
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

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> list[str]:
        return [check_symbol(symbol) for symbol in split_commas(value)]

    @field_validator("intervals", mode="before")
    @classmethod
    def _intervals(cls, value: Any) -> list[str]:
        return [check_interval(interval) for interval in split_commas(value)]

    @field_validator(
        "escalation_monitor_after",
        "escalation_alert_after",
        "escalation_escalate_after",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


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
