"""Prometheus metrics of every ingestion, in whatever process it ran: read from the ledger.

Flow runs are processes of their own, so in-process prometheus counters would die with them.
Instead every outcome is recorded in the ledger (:mod:`ost.ledger`), and :class:`LedgerCollector`
reads it at scrape time: the counts are those of all processes, and survive a restart of
``ost metrics`` (no multiprocess-mode files to compact). Escalation levels are computed at scrape
time by the ladder's pure policy, so they are current even when the watchdog is not running.

**Freshness.** ``ost_stream_lag_seconds{symbol,interval}`` is the time from the close of the
stream's newest stored candle to the scrape, read from the candle store (the ledger's record
when the store cannot be read), so it grows while nothing runs. ``ost_stream_stale_after_seconds``
is the lag from which the stream is stale (its first missing candle's length plus
``OST_STALE_GRACE``): ``lag - stale_after`` is how long the stream has been stale, which the
Prometheus rules alert on.

Served by :func:`serve_metrics` (``ost metrics``): ``/metrics`` in the Prometheus text format,
``/healthz`` (200 ``ok``, 503 when the ledger cannot be read).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ost import ledger as ledger_names
from ost.alerts.policy import Evaluation, LadderConfig, LadderState, evaluate
from ost.alerts.watchdog import observed_states
from ost.errors import StoreError
from ost.intervals import Stream
from ost.ledger import Labels, Ledger, LedgerSnapshot, StreamState, utcnow
from ost.store import CandleStore

if TYPE_CHECKING:
    from ost.settings import Settings

log = logging.getLogger(__name__)

STREAM: Final = ("symbol", "interval")
#: ledger counter -> (metric name, help, label names)
COUNTERS: Final[dict[str, tuple[str, str, tuple[str, ...]]]] = {
    ledger_names.FAILURES: (
        "ost_ingestion_failures_total",
        "Failed ingestion attempts of a stream, by reason.",
        (*STREAM, "reason"),
    ),
    ledger_names.INGESTIONS: (
        "ost_ingestions_total",
        "Ingestion attempts of a stream, by result (ok, failed).",
        (*STREAM, "result"),
    ),
    ledger_names.CANDLES_WRITTEN: (
        "ost_candles_written_total",
        "Closed candles newly stored for a stream.",
        STREAM,
    ),
    ledger_names.BINANCE_REQUESTS: (
        "ost_binance_requests_total",
        "Answers from Binance by base URL and HTTP status ('error': no answer).",
        ("base_url", "status"),
    ),
    ledger_names.NOTIFICATIONS: (
        "ost_notifications_total",
        "Notification deliveries per target, by level and result.",
        ("level", "result"),
    ),
    ledger_names.RUN_FAILURES: (
        "ost_run_failures_total",
        "Flow runs that failed or crashed before their streams reported, by reason.",
        ("reason",),
    ),
    ledger_names.QUARANTINED: (
        "ost_store_quarantined_total",
        "Store files moved to $OST_DATA_DIR/quarantine/ (unreadable, another schema, foreign).",
        STREAM,
    ),
}


class LedgerCollector(Collector):
    """Yields the ``ost_*`` metrics from one ledger snapshot per scrape."""

    def __init__(
        self,
        ledger: Ledger,
        config: LadderConfig | Callable[[], LadderConfig],
        clock: Callable[[], dt.datetime] = utcnow,
        store: CandleStore | None = None,
    ) -> None:
        self.ledger = ledger
        #: The configured streams and thresholds, or how to read them at each scrape (with
        #: ``all`` or a pattern in ``OST_SYMBOLS``, the symbols follow the listing kept).
        self.config_of = config if callable(config) else lambda: config
        self.clock = clock
        #: Where the newest candles are read; None: only the ledger's record of them.
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Every ``ost_*`` family; raises :class:`~ost.errors.StoreError` if the ledger fails."""
        config = self.config_of()
        snapshot = self.ledger.snapshot()
        states = observed_states(snapshot.streams, self.store, config.streams)
        for name, (metric, documentation, labels) in COUNTERS.items():
            yield _counter(metric, documentation, labels, snapshot.counters.get(name, {}))
        yield from self._stream_gauges(states)
        ladder = LadderState.from_json(snapshot.ladders.get(ledger_names.OVERALL, {}))
        evaluation = evaluate(self.clock(), config, states, ladder)
        yield from self._escalation(evaluation)
        yield from _freshness(evaluation)
        yield _used_weight(snapshot)
        yield _clock_skew(snapshot)
        yield _host_bans(snapshot)
        yield _ledger_errors(self.ledger)

    def _stream_gauges(self, streams: dict[Stream, StreamState]) -> Iterator[Metric]:
        last_success = GaugeMetricFamily(
            "ost_last_ingestion_timestamp_seconds",
            "When the stream was last ingested successfully (Unix time).",
            labels=STREAM,
        )
        last_attempt = GaugeMetricFamily(
            "ost_last_attempt_timestamp_seconds",
            "When the stream's ingestion was last attempted, whatever the result (Unix time).",
            labels=STREAM,
        )
        last_candle = GaugeMetricFamily(
            "ost_last_candle_open_time_seconds",
            "Open time of the stream's last stored candle (Unix time): read from the store for a"
            " configured stream, else as of its last ingestion.",
            labels=STREAM,
        )
        for (symbol, interval), state in streams.items():
            labels = [symbol, interval]
            if state.last_success_at is not None:
                last_success.add_metric(labels, state.last_success_at.timestamp())
            if state.last_attempt_at is not None:
                last_attempt.add_metric(labels, state.last_attempt_at.timestamp())
            if state.last_open_ms is not None:
                last_candle.add_metric(labels, state.last_open_ms / 1000)
        yield from (last_success, last_attempt, last_candle)

    def _escalation(self, evaluation: Evaluation) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ost_escalation_level",
            "Runbook escalation level of ingestion overall: 0 normal, 1 monitor, 2 alert,"
            " 3 escalate.",
            value=int(evaluation.level),
        )
        per_stream = GaugeMetricFamily(
            "ost_stream_escalation_level",
            "Runbook escalation level of one configured stream (0 to 3).",
            labels=STREAM,
        )
        failing_since = GaugeMetricFamily(
            "ost_failing_since_seconds",
            "Since when the configured stream is down (failing, no run when due, or stale;"
            " Unix time); 0 while healthy.",
            labels=STREAM,
        )
        for health in evaluation.streams:
            labels = [health.symbol, health.interval]
            per_stream.add_metric(labels, int(health.level))
            since = health.down_since
            failing_since.add_metric(labels, since.timestamp() if since is not None else 0.0)
        yield from (per_stream, failing_since)


def _counter(
    name: str, documentation: str, label_names: tuple[str, ...], values: Mapping[Labels, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=label_names)
    for labels, value in sorted(values.items()):
        given = dict(labels)
        family.add_metric([given.get(label, "") for label in label_names], value)
    return family


def _ledger_errors(ledger: Ledger) -> CounterMetricFamily:
    """The ledger's own failures, from the file beside it (a count in it could be lost with it)."""
    family = CounterMetricFamily(
        "ost_ledger_errors_total",
        "Records the ingestion ledger could not take (the candles were stored all the same), and"
        " corrupt ledgers moved aside, by reason: locked, corrupt, read_only, full, io.",
        labels=["reason"],
    )
    for reason, count in ledger.error_counts().items():
        family.add_metric([reason], count)
    return family


def _used_weight(snapshot: LedgerSnapshot) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "ost_binance_used_weight",
        "Binance's last reported request weight used in the current minute (X-MBX-USED-WEIGHT).",
        labels=[],
    )
    value = snapshot.gauges.get(ledger_names.USED_WEIGHT, {}).get(())
    if value is not None:
        family.add_metric([], value)
    return family


def _per_host(snapshot: LedgerSnapshot, gauge: str, name: str, doc: str) -> GaugeMetricFamily:
    """The ledger's gauge rows ``gauge`` as the family ``name``, one sample per host."""
    family = GaugeMetricFamily(name, doc, labels=["host"])
    for labels, value in sorted(snapshot.gauges.get(gauge, {}).items()):
        family.add_metric([dict(labels).get("host", "")], value)
    return family


def _clock_skew(snapshot: LedgerSnapshot) -> GaugeMetricFamily:
    return _per_host(
        snapshot,
        ledger_names.CLOCK_SKEW,
        "ost_clock_skew_seconds",
        "Binance's clock minus the local clock, as last measured from each base URL's host"
        " (seconds); candles count as closed by the earlier of the two.",
    )


def _host_bans(snapshot: LedgerSnapshot) -> GaugeMetricFamily:
    return _per_host(
        snapshot,
        ledger_names.HOST_BANNED_UNTIL,
        "ost_host_banned_until_seconds",
        "Until when (Unix time) no request goes to the host: Binance answered 429/418 with a"
        " Retry-After longer than a run waits; a time past means the ban is over.",
    )


def _freshness(evaluation: Evaluation) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "ost_stream_lag_seconds",
        "Seconds from the close of the configured stream's newest stored candle to now (absent"
        " while nothing is stored).",
        labels=STREAM,
    )
    stale_after = GaugeMetricFamily(
        "ost_stream_stale_after_seconds",
        "The lag from which the configured stream is stale: the length of its first missing"
        " candle plus OST_STALE_GRACE.",
        labels=STREAM,
    )
    for health in evaluation.streams:
        labels = [health.symbol, health.interval]
        fresh = health.freshness
        if fresh.lag is not None and fresh.stale_after is not None:
            lag.add_metric(labels, fresh.lag.total_seconds())
            stale_after.add_metric(labels, fresh.stale_after.total_seconds())
    yield from (lag, stale_after)


def build_registry(
    ledger: Ledger,
    config: LadderConfig | Callable[[], LadderConfig],
    store: CandleStore | None = None,
) -> CollectorRegistry:
    """A fresh registry holding only the ledger's collector (never the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(ledger, config, store=store))
    return registry


def build_app(
    ledger: Ledger,
    config: LadderConfig | Callable[[], LadderConfig] | None = None,
    store: CandleStore | None = None,
) -> Starlette:
    """The metrics web app: ``/metrics`` and ``/healthz``, reading ``ledger`` at each request."""
    registry = build_registry(ledger, config or LadderConfig(streams=()), store)

    def metrics(_request: Request) -> Response:  # sync: starlette runs it in a thread
        try:
            body = generate_latest(registry)
        except StoreError as exc:
            log.error("Cannot read the ledger for /metrics: %s", exc)  # noqa: TRY400  # said it all
            return PlainTextResponse("ledger unreadable\n", status_code=503)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def healthz(_request: Request) -> Response:
        try:
            ledger.check()
        except StoreError:
            return PlainTextResponse("ledger unreadable\n", status_code=503)
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])


def serve_metrics(settings: Settings, *, log_level: str = "info") -> None:
    """``ost metrics``: serve ``/metrics`` and ``/healthz`` until stopped (blocking)."""
    import uvicorn  # noqa: PLC0415  # only the server needs it

    ledger = Ledger.for_settings(settings)
    config = functools.partial(LadderConfig.from_settings, settings)  # read at each scrape
    app = build_app(ledger, config, CandleStore(settings.data_dir))
    log.info(
        "Serving metrics at http://%s:%d/metrics from the ledger %s",
        settings.metrics_host,
        settings.metrics_port,
        ledger.path,
    )
    uvicorn.run(
        app,
        host=settings.metrics_host,
        port=settings.metrics_port,
        log_level=log_level,
        access_log=False,
    )
