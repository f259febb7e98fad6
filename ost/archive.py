"""The data.binance.vision archive: daily and monthly kline zips, checked and parsed strictly.

Paths under ``OST_ARCHIVE_BASE_URL``, as the real archive lays them out::

    /data/spot/daily/klines/{SYMBOL}/{INTERVAL}/{SYMBOL}-{INTERVAL}-{YYYY-MM-DD}.zip[.CHECKSUM]
    /data/spot/monthly/klines/{SYMBOL}/{INTERVAL}/{SYMBOL}-{INTERVAL}-{YYYY-MM}.zip[.CHECKSUM]

A zip holds one headerless CSV of the 12 kline fields; times are microseconds for candles from
2025-01-01 on and milliseconds before, both stored as milliseconds. ``.CHECKSUM`` reads
``<sha256 of the zip>  <name>.zip``.

:meth:`Archive.download` returns the file's verified zip, and :func:`parse_zip` its candles as a
stored-schema frame; the download is **None when the archive does not have the file** (a 404 for
the zip or its checksum: not published yet, before a listing, or an interval the archive does not
keep). Everything else that is wrong raises :class:`~ost.errors.ArchiveError` and nothing of the
file is returned: a checksum mismatch, a damaged zip, a CSV that is not 12 well-typed fields per
line, an impossible candle, a candle outside the file's period, a 4xx other than 404, or a
transport error or 5xx that persisted through every attempt (retried by the project's one HTTP
policy, :mod:`ost.retry`: transport errors and 5xx are retried, a 429/418 after its
``Retry-After`` when a run waits that long, any other 4xx never). The caller takes that period
from the API instead.

Credentials in ``OST_ARCHIVE_BASE_URL`` are sent as basic auth and never shown: messages name
the archive by its label (:func:`ost.urls.url_label`) and the file's path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Final, Literal

import httpx
import numpy as np
import pandas as pd

from ost import intervals, klines
from ost.errors import ArchiveError, InvalidCandle
from ost.retry import retry_hook, retrying
from ost.urls import split_credentials, url_label

Span = Literal["daily", "monthly"]

#: Intervals the archive keeps and that this module reads: one day or shorter.
ARCHIVED_INTERVALS: Final = tuple(
    name for name, length in intervals.FIXED_INTERVAL_MS.items() if length <= intervals.DAY_MS
)
_CHECKSUM_RE: Final = re.compile(r"^([0-9a-fA-F]{64})\s+(\S+)\s*$")
_HEADER_START: Final = b"open_time"
NOT_FOUND: Final = 404


@dataclass(frozen=True)
class ArchiveFile:
    """One daily or monthly kline file: the candles opening in ``[start_ms, end_ms)``."""

    symbol: str
    interval: str
    span: Span
    start_ms: int
    end_ms: int

    @property
    def label(self) -> str:
        """``YYYY-MM-DD`` for a daily file, ``YYYY-MM`` for a monthly one."""
        day = dt.datetime.fromtimestamp(self.start_ms / 1000, tz=dt.UTC).date()
        return day.isoformat() if self.span == "daily" else day.strftime("%Y-%m")

    @property
    def name(self) -> str:
        """The zip's file name, e.g. ``BTCUSDT-1m-2024-12-31.zip``."""
        return f"{self.symbol}-{self.interval}-{self.label}.zip"

    def url(self, base_url: str) -> str:
        """The zip's URL under the archive's ``base_url``."""
        return (
            f"{base_url.rstrip('/')}/data/spot/{self.span}/klines/"
            f"{self.symbol}/{self.interval}/{self.name}"
        )


def daily_file(symbol: str, interval: str, day: dt.date) -> ArchiveFile:
    """The daily file of ``day``."""
    start = intervals.date_ms(day)
    return ArchiveFile(symbol, interval, "daily", start, start + intervals.DAY_MS)


def monthly_file(symbol: str, interval: str, month_start_ms: int) -> ArchiveFile:
    """The monthly file of the month that contains ``month_start_ms``."""
    start = intervals.align("1M", month_start_ms)
    return ArchiveFile(symbol, interval, "monthly", start, intervals.next_open("1M", start))


def is_archived(interval: str) -> bool:
    """Whether the archive keeps ``interval`` (1s to 1d)."""
    return interval in ARCHIVED_INTERVALS


class Archive:
    """Reads kline files from the archive at ``base_url`` through ``http``."""

    def __init__(self, base_url: str, http: httpx.Client, *, max_attempts: int = 3) -> None:
        bare, credentials = split_credentials(base_url.rstrip("/"))
        #: The base URL without credentials (what httpx is given), and how messages name it.
        self.base_url = bare
        self.label = url_label(bare)
        self._auth = None if credentials is None else httpx.BasicAuth(*credentials)
        self.http = http
        self.max_attempts = max_attempts
        self._retry = retrying(max_attempts)

    def download(self, file: ArchiveFile) -> bytes | None:
        """The file's zip, checked against its ``.CHECKSUM``; None if the archive lacks either.

        Parse it with :func:`parse_zip`. Raises :class:`ArchiveError` for anything else that is
        wrong (see the module docstring).
        """
        url = file.url(self.base_url)
        checksum = self._download(url + ".CHECKSUM")
        if checksum is None:
            return None
        expected = parse_checksum(checksum, file.name)
        data = self._download(url)
        if data is None:
            return None
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ArchiveError(f"{file.name} fails its checksum: sha256 {actual}, not {expected}")
        return data

    def _download(self, url: str) -> bytes | None:
        """The body at ``url``; None for a 404. Retried by the HTTP policy (:mod:`ost.retry`)."""
        try:
            return self._retry(self._get_once, url)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.HTTPStatusError) and retry_hook(exc) is False:
                # final at its first answer: a 4xx, or a 429/418 longer than a run waits
                status = exc.response.status_code
                raise ArchiveError(f"{self._shown(url)} answered HTTP {status}") from exc
            raise ArchiveError(
                f"{self._shown(url)} failed after {self.max_attempts} attempts: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _get_once(self, url: str) -> bytes | None:
        response = self.http.get(url, auth=self._auth or httpx.USE_CLIENT_DEFAULT)
        if response.status_code == NOT_FOUND:
            return None
        if response.is_error:
            response.raise_for_status()  # an httpx.HTTPStatusError, for the HTTP policy
        return response.content

    def _shown(self, url: str) -> str:
        """``url`` (one under the base URL) as messages show it: the label and the file's path."""
        return self.label + url.removeprefix(self.base_url)


def parse_checksum(body: bytes, zip_name: str) -> str:
    """The sha256 hex digest a ``.CHECKSUM`` file gives for ``zip_name``, lower case."""
    match = _CHECKSUM_RE.fullmatch(body.decode("ascii", errors="replace").strip())
    if match is None:
        raise ArchiveError(f"{zip_name}.CHECKSUM does not read '<sha256>  <name>': {body!r:.100}")
    if match[2] != zip_name:
        raise ArchiveError(f"{zip_name}.CHECKSUM is the checksum of {match[2]}")
    return match[1].lower()


def parse_zip(data: bytes, file: ArchiveFile) -> pd.DataFrame:
    """The candles of a verified zip: its one CSV, parsed strictly and checked against ``file``."""
    csv_name = file.name.removesuffix(".zip") + ".csv"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if names != [csv_name]:
                raise ArchiveError(f"{file.name} holds {names}, not just {csv_name}")
            text = archive.read(csv_name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArchiveError(f"{file.name} is not a readable zip: {exc}") from exc
    frame = parse_csv(text, file.interval, source=file.name)
    _check_period(frame, file)
    return frame


def parse_csv(text: bytes, interval: str, *, source: str = "archive CSV") -> pd.DataFrame:
    """Kline CSV lines (12 fields, no header) as a validated stored-schema frame."""
    if text.startswith(_HEADER_START):  # some archive files carry a header line
        text = text.partition(b"\n")[2]
    body = text.rstrip(b"\n")
    if not body:
        return klines.empty_frame()
    lines = body.count(b"\n") + 1
    fields = len(klines.FIELDS)
    if body.count(b",") != (fields - 1) * lines:
        raise ArchiveError(f"{source}: not every line has {fields} fields")
    try:
        table = pd.read_csv(
            io.BytesIO(body),
            header=None,
            names=klines.FIELDS,  # the CSV's columns are the kline row's fields, in order
            usecols=klines.COLUMNS,  # "ignore" is counted, not read
            dtype=klines.COLUMN_DTYPES,
            na_filter=False,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ArchiveError(f"{source}: a line is not {fields} kline fields: {exc}") from exc
    if table.shape != (lines, len(klines.COLUMNS)):
        raise ArchiveError(f"{source}: read {len(table)} lines, expected {lines}")
    columns = {name: table[name].to_numpy() for name in klines.COLUMNS}
    try:
        return klines.validate(klines.frame_from_columns(columns), interval)
    except InvalidCandle as exc:
        raise ArchiveError(f"{source}: {exc}") from exc


def _check_period(frame: pd.DataFrame, file: ArchiveFile) -> None:
    open_ms = klines.open_time_ms(frame)
    outside = (open_ms < file.start_ms) | (open_ms >= file.end_ms)
    if bool(np.any(outside)):
        first = int(open_ms[int(np.argmax(outside))])
        raise ArchiveError(f"{file.name} holds a candle opening at {first} ms, outside its period")
