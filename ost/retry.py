"""The project's one retry helper: stamina, one HTTP policy, one log line per retry.

Every call that is retried, a Binance request (:class:`~ost.binance.BinanceClient`), an archive
download (:class:`~ost.archive.Archive`) and an apprise delivery (the notifier of ``alerts``),
goes through a caller from :func:`retrying`: stamina's :class:`stamina.RetryingCaller`, bounded
by attempts only (each HTTP request has its own ``OST_HTTP_TIMEOUT_S``), waiting by
:class:`Backoff` between attempts. When the attempts are spent, or the failure is final, the
caller raises the last error as it is: the caller's own typed error (a
:class:`~ost.errors.BinanceError`, say), never a stand-in.

What an HTTP call retries is :func:`retry_hook`, stamina's backoff hook:

- a transport error, a timeout or a 5xx answer: retried after the backoff (True);
- a 429 or 418: retried after exactly its ``Retry-After`` when that is at most
  :data:`~ost.pacing.MAX_WAIT_IN_RUN_S` (:func:`rate_limit_wait`); a longer one is a ban, not
  slept in the run (False);
- a body that is not what was asked for (:class:`~ost.errors.BadPayload`): retried (True);
- any other 4xx, an impossible candle, a refusal or a ban: never (False).

The notifier keeps its own numbers (attempts, :class:`Backoff`) and its own ``on``.
Each retry that stamina schedules logs one line on the ``ost.retry`` logger (:func:`log_retry`),
``retry N in S s after <error type>: <error>``, which the runbook tells operators to look for.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

import httpx
import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from ost.clock import system_ms
from ost.errors import BadPayload, BinanceUnavailable, InvalidCandle, RateLimited
from ost.pacing import DEFAULT_BAN_S, MAX_WAIT_IN_RUN_S, retry_after_s

#: What decides whether a failed attempt is retried (stamina's ``on``): exception types, or a
#: hook that returns True (after the backoff), the seconds to wait, or False (never).
On: TypeAlias = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool | float]

#: Answers that say "too many requests": rest ``Retry-After`` seconds (or take it as a ban).
RATE_LIMITS: Final = {418: "IP banned", 429: "too many requests"}
_BANNED: Final = 418
#: The first status of a server error, retried.
_SERVER_ERROR: Final = 500

RETRY_LOG: Final = logging.getLogger("ost.retry")


@dataclass(frozen=True)
class Backoff:
    """stamina's waits between attempts: ``initial`` doubling up to ``max``, plus jitter."""

    initial: float
    max: float
    #: Up to this many seconds, drawn at random, are added to each wait.
    jitter: float


#: The waits of every HTTP request: 0.5 s doubling up to 10 s, plus up to 1 s of jitter.
HTTP_BACKOFF: Final = Backoff(initial=0.5, max=10.0, jitter=1.0)


def retry_hook(exc: Exception) -> bool | float:
    """The ``on`` of every HTTP call: seconds to wait for a 429/418, True, or False.

    Takes the client's typed errors (a :class:`~ost.errors.RateLimited` carries the wait the
    client worked out) and httpx's own (``raise_for_status``, transport errors). Refusals and
    bans (:class:`~ost.errors.BinanceRefused`, :class:`~ost.errors.HostsBanned`) are final.
    """
    if isinstance(exc, RateLimited):
        return exc.retry_after
    if isinstance(exc, httpx.HTTPStatusError):
        return _answer_decision(exc.response)
    if isinstance(exc, InvalidCandle):
        return False
    return isinstance(exc, httpx.TransportError | BinanceUnavailable | BadPayload)


def _answer_decision(response: httpx.Response) -> bool | float:
    """Retry a 5xx after the backoff, a short 429/418 after its ``Retry-After`` (local clock)."""
    status = response.status_code
    if status >= _SERVER_ERROR:
        return True
    if status in RATE_LIMITS:
        now = dt.datetime.fromtimestamp(system_ms() / 1000, tz=dt.UTC)
        wait = rate_limit_wait(response, now=now)
        return wait if wait <= MAX_WAIT_IN_RUN_S else False
    return False


def rate_limit_wait(
    response: httpx.Response, *, now: dt.datetime, window_rest_s: float = MAX_WAIT_IN_RUN_S
) -> float:
    """The seconds a 429/418 asks to rest from ``now``; a default for a missing or bad value.

    The default of a 429 is the rest of the weight window, ``window_rest_s`` (what Binance's
    Retry-After is), at most one window (:data:`~ost.pacing.MAX_WAIT_IN_RUN_S`); that of a 418
    is Binance's shortest ban (:data:`~ost.pacing.DEFAULT_BAN_S`). A wait longer than
    :data:`~ost.pacing.MAX_WAIT_IN_RUN_S` is a ban, never slept in the run.
    """
    if response.status_code == _BANNED:
        default = DEFAULT_BAN_S
    else:
        default = min(window_rest_s, MAX_WAIT_IN_RUN_S)
    return retry_after_s(response.headers.get("Retry-After"), now=now, default=default)


def retrying(
    attempts: int, *, on: On = retry_hook, backoff: Backoff = HTTP_BACKOFF
) -> stamina.BoundRetryingCaller:
    """A caller that runs a callable up to ``attempts`` times: ``caller(fn, *args, **kwargs)``.

    ``on`` decides what is retried (by default :func:`retry_hook`, the HTTP policy); a failure
    it does not retry, or the last one, is raised as it is. Reusable and thread-safe: every
    call starts afresh.
    """
    caller = stamina.RetryingCaller(
        attempts=attempts,
        timeout=None,
        wait_initial=backoff.initial,
        wait_max=backoff.max,
        wait_jitter=backoff.jitter,
    )
    return caller.on(on)


def log_retry(details: RetryDetails) -> None:
    """One readable line per scheduled retry: when, which retry, and why.

    stamina's own logging hook puts everything in ``extra`` and logs the bare event name
    ``stamina.retry_scheduled``, which is all a plain handler (or none) shows.
    """
    cause = details.caused_by
    RETRY_LOG.warning(
        "retry %d in %.1f s after %s: %s",
        details.retry_num,
        details.wait_for,
        type(cause).__name__,
        cause,
    )


set_on_retry_hooks([log_retry])
