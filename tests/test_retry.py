"""The one retry helper (ost.retry): its HTTP policy over httpx.MockTransport, one line a retry."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from ost.archive import Archive, daily_file
from ost.binance import BinanceClient
from ost.errors import (
    ArchiveError,
    BadPayload,
    BinanceRefused,
    BinanceRejected,
    BinanceUnavailable,
    HostsBanned,
    InvalidCandle,
    RateLimited,
)
from ost.retry import retry_hook, retrying

URL = "http://server.test/data"
#: A script entry that is no answer at all: the connection is refused.
REFUSED = "refused"


class Scripted:
    """A server answering each request with the next entry of its script, counting requests."""

    def __init__(self, *script: httpx.Response | str) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """The next answer of the script (a refused connection raises httpx's ConnectError)."""
        self.requests.append(request)
        entry = self.script.pop(0)
        if entry == REFUSED:
            raise httpx.ConnectError("connection refused", request=request)
        assert isinstance(entry, httpx.Response)
        return entry


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    """An answer with ``status`` (and a ``Retry-After`` header, if given)."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, headers=headers, text=f"status {status}")


def fetch(http: httpx.Client) -> httpx.Response:
    """One attempt: GET the URL, an error answer raised as httpx's HTTPStatusError."""
    return http.get(URL).raise_for_status()


def call(server: Scripted, attempts: int = 3) -> httpx.Response:
    """:func:`fetch` from ``server`` through the helper with its HTTP policy."""
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        return retrying(attempts)(fetch, http)


def status_error(status: int, retry_after: str | None = None) -> httpx.HTTPStatusError:
    """The error that one answer with ``status`` raises (with one attempt)."""
    with pytest.raises(httpx.HTTPStatusError) as info:
        call(Scripted(answer(status, retry_after)), attempts=1)
    return info.value


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``ost.retry`` lines logged so far."""
    return [record.getMessage() for record in caplog.records if record.name == "ost.retry"]


def test_a_429_is_retried_after_exactly_its_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    """429 with Retry-After 0.2: one retry scheduled 0.2 s later (the backoff starts at 0.5 s)."""
    caplog.set_level(logging.WARNING, logger="ost.retry")
    server = Scripted(answer(429, "0.2"), answer(200))
    assert call(server).status_code == 200
    assert len(server.requests) == 2
    [line] = logged(caplog)
    assert line.startswith("retry 1 in 0.2 s after HTTPStatusError: Client error '429 ")


@pytest.mark.parametrize(("status", "retry_after"), [(429, "7"), (418, "45")])
def test_a_short_rate_limit_waits_its_retry_after(status: int, retry_after: str) -> None:
    """A 429 or 418 asking for at most a minute is retried after exactly what it asks."""
    assert retry_hook(status_error(status, retry_after)) == float(retry_after)


@pytest.mark.usefixtures("fast_retries")
def test_a_418_then_200_is_waited_out() -> None:
    """A 418 with a short Retry-After, then the answer: two requests, the answer returned."""
    server = Scripted(answer(418, "5"), answer(200))
    assert call(server).status_code == 200
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(418, None), (418, "never"), (429, "3600"), (429, "Wed, 21 Oct 2099 07:28:00 GMT")],
)
@pytest.mark.usefixtures("fast_retries")
def test_a_ban_is_final_and_never_slept(
    status: int, retry_after: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A 418 without a usable Retry-After (a 2-minute ban) or a wait past a minute: one request."""
    caplog.set_level(logging.WARNING, logger="ost.retry")
    server = Scripted(answer(status, retry_after), answer(200))
    with pytest.raises(httpx.HTTPStatusError):
        call(server)
    assert len(server.requests) == 1
    assert logged(caplog) == []


@pytest.mark.usefixtures("fast_retries")
def test_a_429_without_retry_after_is_retried() -> None:
    """A 429 that says nothing rests for at most a weight window, then is retried."""
    assert retry_hook(status_error(429)) == 60.0
    server = Scripted(answer(429), answer(200))
    assert call(server).status_code == 200


@pytest.mark.usefixtures("fast_retries")
def test_a_500_then_200_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A 500, then the answer: one retry, logged as one line."""
    caplog.set_level(logging.WARNING, logger="ost.retry")
    server = Scripted(answer(500), answer(200))
    assert call(server).status_code == 200
    assert len(server.requests) == 2
    [line] = logged(caplog)
    assert line.startswith("retry 1 in 0.0 s after HTTPStatusError: Server error '500 ")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 451])
@pytest.mark.usefixtures("fast_retries")
def test_another_4xx_is_never_retried(status: int) -> None:
    """Any 4xx but 429/418 is raised after its one request."""
    server = Scripted(answer(status), answer(200))
    with pytest.raises(httpx.HTTPStatusError) as info:
        call(server)
    assert info.value.response.status_code == status
    assert len(server.requests) == 1


@pytest.mark.usefixtures("fast_retries")
def test_a_transport_error_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A refused connection, then the answer: retried, and the line names the error."""
    caplog.set_level(logging.WARNING, logger="ost.retry")
    server = Scripted(REFUSED, answer(200))
    assert call(server).status_code == 200
    assert logged(caplog) == ["retry 1 in 0.0 s after ConnectError: connection refused"]


@pytest.mark.usefixtures("fast_retries")
def test_spent_attempts_raise_the_last_error() -> None:
    """Three 503s with three attempts: exactly three requests, then the third 503 is raised."""
    server = Scripted(answer(503), answer(503), answer(503), answer(200))
    with pytest.raises(httpx.HTTPStatusError) as info:
        call(server)
    assert info.value.response.status_code == 503
    assert len(server.requests) == 3


def test_the_typed_errors_are_classified() -> None:
    """4xx, impossible candles, refusals and bans are final; 5xx, transport, bad bodies retry."""
    assert retry_hook(BinanceRejected("x", status=400)) is False
    assert retry_hook(InvalidCandle("x")) is False
    assert retry_hook(BinanceRefused("x")) is False
    assert retry_hook(HostsBanned("x")) is False
    assert retry_hook(BinanceUnavailable("x")) is True
    assert retry_hook(BadPayload("x")) is True
    assert retry_hook(RateLimited("x", status=429, retry_after=7)) == 7
    assert retry_hook(ValueError("x")) is False


# ---- the typed errors of the helper's users, once the attempts are spent ------------------------


@pytest.mark.usefixtures("fast_retries")
def test_the_client_raises_binance_unavailable_when_attempts_are_spent() -> None:
    """Binance answering 503 to everything: BinanceUnavailable after exactly three attempts."""
    server = Scripted(*[answer(503)] * 3)
    with (
        BinanceClient(["http://binance.test"], transport=httpx.MockTransport(server)) as client,
        pytest.raises(BinanceUnavailable, match="HTTP 503"),
    ):
        client.sync_time()
    assert len(server.requests) == 3


DAY = daily_file("BTCUSDT", "1m", dt.date(2024, 12, 31))


@contextmanager
def archive_of(server: Scripted) -> Iterator[Archive]:
    """An archive reader of ``server``, three attempts per file."""
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        yield Archive("http://archive.test", http, max_attempts=3)


@pytest.mark.usefixtures("fast_retries")
def test_the_archive_raises_archive_error_when_attempts_are_spent() -> None:
    """The archive answering 503 three times: ArchiveError naming the attempts, three requests."""
    server = Scripted(*[answer(503)] * 3)
    with (
        archive_of(server) as archive,
        pytest.raises(ArchiveError, match="CHECKSUM failed after 3 attempts"),
    ):
        archive.download(DAY)
    assert len(server.requests) == 3


@pytest.mark.usefixtures("fast_retries")
def test_the_archive_waits_out_a_short_429() -> None:
    """A 429 with Retry-After 1, then a 404: the archive lacks the file, after two requests."""
    server = Scripted(answer(429, "1"), answer(404))
    with archive_of(server) as archive:
        assert archive.download(DAY) is None
    assert len(server.requests) == 2


@pytest.mark.usefixtures("fast_retries")
def test_the_archive_takes_a_long_429_as_final() -> None:
    """A 429 asking for an hour is not waited in the run: ArchiveError after one request."""
    server = Scripted(answer(429, "3600"))
    with archive_of(server) as archive, pytest.raises(ArchiveError, match="answered HTTP 429"):
        archive.download(DAY)
    assert len(server.requests) == 1
