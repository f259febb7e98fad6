"""The ``ost`` command. Each command imports what it needs when it runs, so ``ost`` starts fast.

Commands that do the work of a flow (``ingest``, ``backfill``, ``gaps``, ``watchdog``) call the
core directly: they need no Prefect server and never import prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ost.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from rich.console import Console

    from ost.backfill import BackfillResult
    from ost.clock import ClockReading
    from ost.gaps import GapReport
    from ost.ingest import StreamOutcome
    from ost.intervals import Interval, Stream, Symbol
    from ost.ledger import Ledger, LedgerHealth
    from ost.runtime import Runtime
    from ost.settings import Settings
    from ost.universe import Selection, Universe
    from ost.verify import Report

app = typer.Typer(
    name="ost",
    help="Binance spot candles for One Smart Trade: ingest, backfill, gaps, alerts.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

SymbolsOption = Annotated[
    str | None,
    typer.Option(
        "--symbols",
        help=(
            "Comma-separated symbols, 'all' (every spot symbol trading) or patterns like *USDT"
            " (default OST_SYMBOLS)."
        ),
    ),
]


#: The width of output that is not a terminal (a pipe, a file, a CI log), so tables are not cut.
UNBOUNDED_WIDTH = 10_000


def _console() -> Console:
    """Rich's console for stdout: a terminal's width, or unbounded when output is not a terminal.

    Unbounded even when ``COLUMNS`` is set: a pipe or a file has no width to fit, and a row cut or
    folded at 80 columns is unreadable to a person and to a script alike.
    """
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else UNBOUNDED_WIDTH)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"ost: error: {message}", err=True)
    raise typer.Exit(code)


def _warn(line: str | None) -> None:
    """One warning line on stderr (nothing for None)."""
    if line:
        typer.echo(f"ost: warning: {line}", err=True)


class _BadInputExits2:
    """Turns :class:`BadInput` into one line on stderr and exit status 2; lets all else through.

    Its ``__exit__`` never swallows an exception (it returns None), so a type checker knows that
    a ``return`` inside the ``with`` block is where the function ends.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from ost.errors import BadInput

        if isinstance(exc, BadInput):
            _fail(str(exc.args[0]) if exc.args else str(exc), EXIT_BAD_INPUT)


def _bad_input_exits_2() -> _BadInputExits2:
    """Turn :class:`BadInput` into one line on stderr and exit status 2 (a ``with`` block)."""
    return _BadInputExits2()


def _runtime(settings: Settings) -> Runtime:
    """The client, store and ledger of ``settings``; a data dir that cannot be opened exits 2."""
    from ost.runtime import Runtime

    with _bad_input_exits_2():
        return Runtime.from_settings(settings)


def _resolve(universe: Universe, selection: Selection, *, fresh: bool = True) -> list[Symbol]:
    """The symbols of ``selection``; a pattern that matches nothing exits 2, a Binance error 1."""
    from ost.errors import BadInput, OstError

    with _bad_input_exits_2():
        try:
            return universe.resolve(selection, fresh=fresh)
        except BadInput:
            raise
        except OstError as exc:
            _fail(f"cannot resolve the symbols: {exc}", EXIT_FAILED)
    raise AssertionError("unreachable")  # pragma: no cover


def _settings(*, notifying: bool = False) -> Settings:
    """The settings, or one line and exit 2; ``notifying`` also checks the apprise targets."""
    from ost.settings import check_apprise_urls, load_settings

    with _bad_input_exits_2():
        settings = load_settings()
        if notifying:
            check_apprise_urls(settings)
        return settings


@app.command()
def ingest(
    symbols: SymbolsOption = None,
    intervals: Annotated[
        str | None,
        typer.Option("--intervals", help="Comma-separated intervals, or 'all' (OST_INTERVALS)."),
    ] = None,
) -> None:
    """One ingestion pass now: each stream from its last stored closed candle to now."""
    settings = _settings()
    from ost.args import parse_intervals, parse_symbols

    with _bad_input_exits_2():
        selection = parse_symbols(symbols, settings)
        chosen_intervals = parse_intervals(intervals, settings)

    runtime = _runtime(settings)
    chosen_symbols = _resolve(runtime.universe, selection)
    outcomes = runtime.ingest_many(runtime.streams(chosen_symbols, chosen_intervals))
    runtime.close()
    _warn(runtime.clock_warning())
    _print_outcomes(outcomes)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(EXIT_FAILED)


def _print_outcomes(outcomes: list[StreamOutcome]) -> None:
    from rich.table import Table

    from ost.timefmt import terminal_time

    table = Table(title="ost ingest")
    for column in ("symbol", "interval", "result", "new candles", "last candle (UTC)", "seconds"):
        table.add_column(column)
    for outcome in outcomes:
        status = "ended" if outcome.ended else "ok" if outcome.ok else "failed"
        result = _result_cell(status, outcome.reason)
        table.add_row(
            outcome.symbol,
            outcome.interval,
            result,
            str(outcome.written),
            terminal_time(outcome.last_open_ms),
            f"{outcome.seconds:.2f}",
        )
    console = _console()
    console.print(table)
    for outcome in outcomes:
        if not outcome.ok:
            _print_problem(console, outcome.symbol, outcome.interval, outcome.error)


def _result_cell(status: str, reason: str | None) -> str:
    """A result as the tables show it: ``ok``, ``ended``, ``incomplete`` or ``failed: REASON``."""
    if status == "ok":
        return "[green]ok[/]"
    if status == "ended":
        return "[yellow]ended[/]"
    if status == "incomplete" or reason == "incomplete":
        return "[red]incomplete[/]"
    return f"[red]failed: {reason}[/]"


def _print_problem(console: Console, symbol: str, interval: str, message: str | None) -> None:
    """One line: a stream's error, or what it still misses and why."""
    from rich.markup import escape

    text = escape(message or "")
    prefix = f"{symbol} {interval}: "
    console.print(f"[red]{prefix}[/]{text.removeprefix(prefix)}", highlight=False)


IntervalOption = Annotated[
    str, typer.Option("--interval", help="'all' (OST_INTERVALS), or intervals like 1h,1d.")
]
DaysOption = Annotated[float | None, typer.Option("--days", help="The last N days up to now.")]
StartOption = Annotated[
    str | None,
    typer.Option(
        "--start",
        help="ISO-8601 start (UTC): candles opening at or after it; a date alone starts the day.",
    ),
]
EndOption = Annotated[
    str | None,
    typer.Option(
        "--end",
        help=(
            "ISO-8601 end (UTC), inclusive: candles opening at or before it, as Binance's "
            "endTime; a date alone is the whole day (default now)."
        ),
    ),
]


def _request(
    runtime: Runtime,
    interval: str,
    symbols: str | None,
    days: float | None,
    start: str | None,
    end: str | None,
    *,
    fresh: bool = True,
) -> tuple[list[Stream], int, int]:
    """The streams and range of a backfill or gap check: all checked, then the symbols resolved.

    ``fresh`` False takes the listing of symbols kept whatever its age (see :func:`_resolve`).
    """
    return _streams_and_range(
        runtime.settings,
        (interval, symbols, days, start, end),
        lambda selection: _resolve(runtime.universe, selection, fresh=fresh),
    )


def _streams_and_range(
    settings: Settings,
    request: tuple[str, str | None, float | None, str | None, str | None],
    resolve: Callable[[Selection], list[Symbol]],
) -> tuple[list[Stream], int, int]:
    """``request`` (interval, symbols, days, start, end) checked; bad input exits 2."""
    from ost.args import streams_and_range
    from ost.clock import system_ms

    interval, symbols, days, start, end = request
    with _bad_input_exits_2():
        return streams_and_range(
            settings,
            interval=interval,
            symbols=symbols,
            days=days,
            start=start,
            end=end,
            now_ms=system_ms(),
            resolve=resolve,
        )


@app.command()
def backfill(
    interval: IntervalOption,
    days: DaysOption = None,
    start: StartOption = None,
    end: EndOption = None,
    symbols: SymbolsOption = None,
    source: Annotated[
        str, typer.Option("--source", help="api, archive (data.binance.vision) or auto.")
    ] = "auto",
) -> None:
    """Fill a range of candles, skipping what is already stored (the backfill flow's work)."""
    settings = _settings()
    from ost.backfill import backfill_streams, check_source
    from ost.progress import terminal_progress

    with _bad_input_exits_2():
        check_source(source)
    runtime = _runtime(settings)
    streams, start_ms, end_ms = _request(runtime, interval, symbols, days, start, end)
    with terminal_progress(streams) as progress:
        results = backfill_streams(
            runtime.client,
            runtime.store,
            streams,
            start_ms,
            end_ms,
            source=source,
            archive_base_url=settings.archive_base_url,
            progress=progress,
            on_result=runtime.record_backfill,
            workers=settings.max_concurrency,
        )
    runtime.close()
    _warn(runtime.clock_warning())
    _print_backfill(results)
    if not all(result.ok for result in results):
        raise typer.Exit(EXIT_FAILED)


def _problem(result: BackfillResult) -> str | None:
    """Why a backfill is not ok: its error, or what it still misses (as its flow task says it)."""
    from ost.errors import Incomplete

    if result.incomplete is None:
        return result.error
    return str(Incomplete.of_stream(result.symbol, result.interval, result.incomplete))


def _print_backfill(results: list[BackfillResult]) -> None:
    from rich.table import Table

    table = Table(title="ost backfill")
    columns = (
        "symbol",
        "interval",
        "result",
        "missing",
        "written",
        "still missing",
        "archive",
        "api",
        "seconds",
    )
    for column in columns:
        table.add_column(column)
    for result in results:
        table.add_row(
            result.symbol,
            result.interval,
            _result_cell(result.status, result.reason),
            str(result.missing),
            str(result.written),
            str(result.still_missing),
            str(result.from_archive),
            str(result.from_api),
            f"{result.seconds:.2f}",
        )
    console = _console()
    console.print(table)
    for result in results:
        if not result.ok:
            _print_problem(console, result.symbol, result.interval, _problem(result))


@app.command()
def gaps(
    interval: IntervalOption,
    days: DaysOption = None,
    start: StartOption = None,
    end: EndOption = None,
    symbols: SymbolsOption = None,
    repair: Annotated[bool, typer.Option("--repair", help="Backfill the missing ranges.")] = False,
    recheck: Annotated[
        bool,
        typer.Option(
            "--recheck",
            help=(
                "Forget the exchange-side gaps recorded in the range and repair: Binance is "
                "asked again, so a wrong record is undone."
            ),
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON report, for machines.")] = False,
) -> None:
    """Missing candles per stream as ranges; exchange-side gaps apart; --repair fills the rest.

    An exchange-side gap counts only with Binance's evidence (a later candle); --recheck asks
    Binance about the recorded ones again.
    """
    settings = _settings()
    if not (repair or recheck):
        from ost.args import parse_symbols

        with _bad_input_exits_2():
            named = not parse_symbols(symbols, settings).patterns
        if named:
            _check_stored(settings, interval, symbols, days, start, end, as_json=as_json)
    from ost.progress import terminal_progress

    runtime = _runtime(settings)
    streams, start_ms, end_ms = _request(
        runtime, interval, symbols, days, start, end, fresh=repair or recheck
    )
    with terminal_progress(streams, quiet=as_json or not (repair or recheck)) as progress:
        report, status = runtime.check_gaps(
            streams, start_ms, end_ms, repair=repair, recheck=recheck, progress=progress
        )
    runtime.close()
    _warn(runtime.clock_warning())
    _print_gap_report(report, as_json=as_json)
    raise typer.Exit(status)


def _check_stored(
    settings: Settings,
    interval: str,
    symbols: str | None,
    days: float | None,
    start: str | None,
    end: str | None,
    *,
    as_json: bool,
) -> NoReturn:
    """``ost gaps`` of named symbols, no repair: the store and the ledger alone, no client.

    What :meth:`Runtime.check_gaps` does without a repair (:func:`ost.runtime.stored_gap_report`),
    without building the client: Binance is not asked, so httpx is not even imported.
    """
    from ost.clock import system_ms
    from ost.intervals import parse_symbol
    from ost.ledger import Bookkeeping, Ledger
    from ost.runtime import open_store, stored_gap_report

    with _bad_input_exits_2():
        store = open_store(settings.data_dir)
    streams, start_ms, end_ms = _streams_and_range(
        settings,
        (interval, symbols, days, start, end),
        lambda selection: [parse_symbol(symbol) for symbol in selection.plain],
    )
    bookkeeping = Bookkeeping(Ledger.for_settings(settings))
    report, reading = stored_gap_report(store, bookkeeping, streams, start_ms, end_ms, system_ms())
    _warn(None if reading is None else reading.warning(settings.max_clock_skew))
    _print_gap_report(report, as_json=as_json)
    raise typer.Exit(report.exit_status())


def _print_gap_report(report: GapReport, *, as_json: bool) -> None:
    """The report on stdout: JSON, Markdown rendered on a terminal, or the Markdown itself."""
    if as_json:
        typer.echo(report.to_json())
        return
    console = _console()
    if console.is_terminal:
        from rich.markdown import Markdown

        console.print(Markdown(report.to_markdown()))
    else:  # a pipe or a file gets the Markdown itself, not a rendering padded to a width
        typer.echo(report.to_markdown())


@app.command()
def verify(
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Quarantine what is wrong and fetch its range again."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON report, for machines.")] = False,
) -> None:
    """The store as its consumers read it (pyarrow, DuckDB): exit 0 clean, 1 not."""
    settings = _settings()
    from ost.errors import OstError
    from ost.runtime import open_store
    from ost.verify import EXTRA_HINT, repair_store, verify_store

    with _bad_input_exits_2():
        store = open_store(settings.data_dir)
    try:
        report = verify_store(store)
        if repair and not report.clean:
            runtime = _runtime(settings)

            def refetch(symbol: Symbol, interval: Interval, start_ms: int, end_ms: int) -> int:
                return runtime.backfill_stream(
                    symbol, interval, start_ms, end_ms, source="auto"
                ).written

            repairs = repair_store(runtime.store, report, refetch)
            runtime.record_quarantined()
            runtime.close()
            report = verify_store(runtime.store)
            report.repairs = repairs
    except OstError as exc:  # the store cannot even be listed: one line, not a traceback
        _fail(str(exc), EXIT_FAILED)
    if missing := report.missing_readers():
        _warn(f"{' and '.join(missing)} not installed, so not checked: {EXTRA_HINT}")
    if as_json:
        typer.echo(report.to_json())
    else:
        _print_verify(report)
    raise typer.Exit(report.exit_status())


def _print_verify(report: Report) -> None:
    """``ost verify``'s findings as a table, then what the readers saw, what was repaired."""
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    if report.findings:
        table = Table(title="ost verify")
        for column in ("problem", "file", "detail"):
            table.add_column(column)
        for finding in report.findings:
            table.add_row(finding.kind, escape(finding.path), escape(finding.detail))
        console.print(table)
    readers = ", ".join(f"{name} {version}" for name, version in report.readers.items() if version)
    console.print(f"readers: {readers}", highlight=False)
    for view in report.views:
        seen = view.error or f"{view.rows} rows, {view.duplicates or 0} duplicate candles"
        console.print(f"the whole dataset through {view.reader}: {escape(seen)}", highlight=False)
    for done in report.repairs:
        stream = f"{done.symbol} {done.interval} " if done.symbol else ""
        what = " ".join(part for part in (done.path, done.detail) if part)
        written = f": {done.written} candles" if done.written is not None else ""
        console.print(f"{done.action}: {stream}{escape(what)}{written}", highlight=False)
    summary = f"{report.partitions} partition files, {report.candles} candles"
    if report.clean:
        console.print(f"[green]clean[/]: {summary}", highlight=False)
    else:
        console.print(
            f"[red]not clean[/]: {len(report.findings)} problems in {summary}"
            + ("" if report.repairs else " (`ost verify --repair` heals them)"),
            highlight=False,
        )


@app.command()
def sim(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8900,
    faults: Annotated[
        str | None, typer.Option(help="Fault SPEC, e.g. '5xx:rate=0.3,count=5;slow:delay=2'.")
    ] = None,
    weight_limit: Annotated[int, typer.Option(help="Request weight per window.")] = 6000,
    weight_window_s: Annotated[float, typer.Option(help="Weight window in seconds.")] = 60,
    latency_ms: Annotated[float, typer.Option(help="Delay added to every answer.")] = 0.0,
    cpu_per_request_ms: Annotated[
        float, typer.Option(help="Server CPU burnt on every API and archive request.")
    ] = 0.0,
) -> None:
    """The Binance simulator, for drills, demos and tests."""
    from ost.sim import serve_cli

    with _bad_input_exits_2():
        serve_cli(
            port=port,
            faults=faults or "",
            weight_limit=weight_limit,
            weight_window_s=int(weight_window_s),
            latency_ms=latency_ms,
            cpu_per_request_ms=cpu_per_request_ms,
        )


@app.command()
def up(
    simulate: Annotated[
        bool,
        typer.Option("--simulate", help="Also start the simulator and point the client at it."),
    ] = False,
    sim_port: Annotated[int, typer.Option(help="The simulator's port (with --simulate).")] = 8900,
) -> None:
    """The single-machine stack: Prefect server, work pool, deployments, worker, metrics."""
    import contextlib
    import time

    from ost.stack import running_stack, wait_for

    settings = _settings(notifying=True)  # the stack's watchdog must be able to deliver
    console = _console()

    def say(line: str) -> None:
        # A closed terminal (EIO) or pipe (EPIPE, which rich turns into SystemExit) must not
        # stop ost up, least of all while it stops its children.
        with contextlib.suppress(OSError, SystemExit):
            console.print(f"[dim]ost up:[/] {line}", highlight=False)

    try:
        with running_stack(simulate, sim_port, say) as stack:
            ui = stack.env["PREFECT_API_URL"].removesuffix("/api")
            metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
            wait_for(metrics.removesuffix("metrics") + "healthz", "ost metrics")
            exports = ["PREFECT_API_URL"]
            if simulate:
                exports += ["OST_BINANCE_BASE_URLS", "OST_ARCHIVE_BASE_URL"]
            console.print(
                f"\n[bold green]ost-ingest is up.[/] Prefect UI: {ui}   metrics: {metrics}\n"
                "Try, in another terminal in this directory:\n"
                + "".join(f"  export {name}={stack.env[name]}\n" for name in exports)
                + "  uv run ost status\n"
                "  uv run ost ping\n"
                "  uv run prefect deployment run backfill/manual"
                " --param interval=1h --param days=2\n"
                "  uv run ost schedule pause   # and: uv run ost schedule resume\n"
                f"  curl -s {metrics} | grep ost_\n"
                "Ctrl-C stops everything ost up started.\n",
                highlight=False,
                soft_wrap=True,
            )
            while True:
                stack.check_alive()
                time.sleep(1)
    except KeyboardInterrupt:
        say("stopped")
    except RuntimeError as exc:
        _fail(str(exc), EXIT_FAILED)


@app.command()
def ping() -> None:
    """Every configured base URL: reachable?, latency, server-time skew, used weight."""
    from rich.table import Table

    from ost.binance import BinanceClient
    from ost.clock import ClockReading, host_of
    from ost.ledger import Bookkeeping, Ledger

    settings = _settings()
    book = Bookkeeping(Ledger.for_settings(settings))  # a banned host is not asked
    with BinanceClient.from_settings(settings) as client:
        client.bans.load(book.read("the hosts banned", lambda ledger: ledger.host_bans(), {}))
        pongs = client.ping_all()
    if bans := client.bans.take_unrecorded():  # a long 429/418 to a ping bans its host too
        book.record("the hosts banned", lambda ledger: ledger.record_host_bans(bans))
    table = Table(title="ost ping")
    columns = ("base URL", "reachable", "latency ms", "skew ms", "clock", "used weight", "error")
    for column in columns:
        table.add_column(column)
    readings = [
        None if pong.skew_ms is None else ClockReading(host_of(pong.base_url), pong.skew_ms)
        for pong in pongs
    ]
    for pong, reading in zip(pongs, readings, strict=True):
        table.add_row(
            pong.base_url,
            "[green]yes[/]" if pong.ok else "[red]no[/]",
            _or_dash(pong.latency_ms),
            _or_dash(pong.skew_ms),
            _clock_cell(reading, settings),
            _or_dash(pong.used_weight),
            pong.error or "",
        )
    _console().print(table)
    for reading in readings:
        _warn(None if reading is None else reading.warning(settings.max_clock_skew))
    if not any(pong.ok for pong in pongs):
        raise typer.Exit(EXIT_FAILED)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _clock_cell(reading: ClockReading | None, settings: Settings) -> str:
    """``ok``, or ``skewed`` past ``OST_MAX_CLOCK_SKEW`` (``-`` when the host did not answer)."""
    if reading is None:
        return "-"
    return "[red]skewed[/]" if reading.exceeds(settings.max_clock_skew) else "[green]ok[/]"


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for machines.")] = False,
) -> None:
    """Per stream: level, state (ok, failing, overdue, stale), lag, last stored candle."""
    import json

    from ost.alerts.watchdog import ladder_status
    from ost.ledger import Ledger
    from ost.universe import ended_streams

    settings = _settings()
    ledger = Ledger.for_settings(settings)
    health = ledger.health()
    if not health.readable:  # still answer: the streams as the candle store shows them
        ledger = Ledger.empty()
    report = ladder_status(settings, ledger=ledger).to_dict()
    report["ledger"] = health.to_dict()
    report["ingest_schedule"] = _schedule_state()
    skew = _last_clock_skew(ledger)
    report["clock_skew"] = None if skew is None else skew.as_dict(settings.max_clock_skew)
    report["host_bans"] = _host_bans(ledger)
    report["ended_streams"] = [
        ended.as_dict() for ended in ended_streams(settings, ledger.stream_states())
    ]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_status(report)
    _print_ended(report["ended_streams"])
    _print_clock_skew(skew, settings)
    _print_host_bans(report["host_bans"])
    _print_ledger(health)


def _host_bans(ledger: Ledger) -> list[dict[str, Any]]:
    """The hosts banned now (not called before a time), for ``ost status``: host and end."""
    from ost.clock import system_ms
    from ost.timefmt import json_time, moment

    now_ms = system_ms()
    return [
        {
            "host": host,
            "banned_until": json_time(moment(until_ms)),
            "banned_until_ms": until_ms,
        }
        for host, until_ms in sorted(ledger.host_bans().items())
        if until_ms > now_ms
    ]


def _print_host_bans(bans: list[dict[str, Any]]) -> None:
    """``ost status``'s line of the hosts banned: none, or each with the end of its ban."""
    from ost.timefmt import terminal_time

    if not bans:
        _console().print("host bans: none", highlight=False)
        return
    shown = ", ".join(
        f"{ban['host']} until {terminal_time(ban['banned_until_ms'])} UTC" for ban in bans
    )
    _console().print(
        f"[red]host bans:[/] {shown} (a long Retry-After from Binance): no request goes to"
        " them before then",
        highlight=False,
    )


def _print_ended(ended: list[dict[str, str]]) -> None:
    """``ost status``'s lines of the streams that ended, one per symbol (none: no line)."""
    by_symbol: dict[tuple[str, str], list[str]] = {}
    for stream in ended:
        by_symbol.setdefault((stream["symbol"], stream["why"]), []).append(stream["interval"])
    for (symbol, why), intervals in by_symbol.items():
        _console().print(
            f"ended: {symbol} {', '.join(intervals)}: no longer trading ({why}); not ingested,"
            " not alerted on",
            highlight=False,
        )


def _schedule_state() -> str:
    """``paused``, ``scheduled``, or why it is unknown (no Prefect server to ask)."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return "unknown (PREFECT_API_URL is not set)"
    from ost.flows.control import api_problem, schedule_state

    if problem := api_problem():
        return f"unknown ({problem})"
    try:
        state = schedule_state()
    except Exception as exc:  # noqa: BLE001  # any failure to reach Prefect is reported, not fatal
        return f"unknown (Prefect API: {type(exc).__name__})"
    if not state.exists:
        return "not deployed"
    return "paused" if state.paused else "scheduled"


def _print_status(report: dict[str, Any]) -> None:
    import datetime as dt

    from rich.table import Table

    from ost.timefmt import human_duration

    table = Table(title=f"ost status: level {report['level']}")
    columns = ("symbol", "interval", "level", "state", "lag", "last candle", "last success")
    for column in (*columns, "failing since", "last error"):
        table.add_column(column)
    for stream in report["streams"]:
        lag = stream["lag_seconds"]
        table.add_row(
            stream["symbol"],
            stream["interval"],
            stream["level"],
            stream["state"],
            "-" if lag is None else human_duration(dt.timedelta(seconds=lag)),
            _or_dash(stream["last_candle_open_time"]),
            _or_dash(stream["last_success_at"]),
            _or_dash(stream["down_since"]),
            (stream["last_reason"] or "") if stream["failing_since"] else "",
        )
    console = _console()
    console.print(table)
    console.print(f"ingest schedule: {report['ingest_schedule']}", highlight=False)


def _last_clock_skew(ledger: Ledger) -> ClockReading | None:
    """The clock skew last measured by any run (the ledger's), for ``ost status``."""
    return ledger.last_clock_skew()


def _print_ledger(health: LedgerHealth) -> None:
    """``ost status``'s line of the ingestion ledger: ok, or unavailable and why."""
    from rich.markup import escape

    if health.available:
        _console().print("ledger: ok", highlight=False)
        return
    since = f" since {health.since:%Y-%m-%d %H:%M:%S} UTC" if health.since else ""
    _console().print(
        f"[red]ledger: unavailable{since} ({health.fault})[/]: {escape(health.error or '')};"
        " the candles are stored all the same, but what the metrics and the watchdog read is"
        " missing",
        highlight=False,
    )


def _print_clock_skew(skew: ClockReading | None, settings: Settings) -> None:
    """``ost status``'s line of the clock skew last seen."""
    line = (
        "clock skew: not measured yet (no run has asked Binance)"
        if skew is None
        else skew.status_line(settings.max_clock_skew)
    )
    _console().print(line, highlight=False)


@app.command()
def metrics() -> None:
    """Serve Prometheus metrics at /metrics and /healthz on OST_METRICS_HOST:OST_METRICS_PORT."""
    from ost.metrics import serve_metrics

    serve_metrics(_settings())


@app.command()
def watchdog() -> None:
    """One evaluation of the escalation ladder (the watchdog flow), sending what is due."""
    from ost.alerts.watchdog import run_watchdog

    report = run_watchdog(_settings(notifying=True))
    pending = [f"{message.kind.value} ({delivery.value})" for message, delivery in report.pending]
    due = f"; still due: {', '.join(pending)}" if pending else ""
    typer.echo(f"level: {report.level.name.lower()}; sent: {len(report.sent)}{due}")


@app.command("notify-test")
def notify_test(
    tag: Annotated[
        str | None, typer.Option("--tag", help="alert or escalate (default: all).")
    ] = None,
) -> None:
    """Send a test notification through the configured apprise targets."""
    from ost.alerts.notify import send_test
    from ost.errors import NotifyError

    try:
        accepted = send_test(_settings(notifying=True), tag)
    except NotifyError as exc:
        _fail(str(exc), EXIT_FAILED)
    typer.echo(f"sent: {accepted} target(s) accepted the test notification")


schedule_app = typer.Typer(help="Pause or resume the ingest schedule (the UI's toggle).")
app.add_typer(schedule_app, name="schedule")


def _set_schedule(paused: bool) -> None:
    """Pause or resume through the Prefect server; with none to ask, one line and exit 2."""
    from ost.flows.control import api_problem, set_paused

    if problem := api_problem():
        _fail(
            f"{problem}: start the stack with `uv run ost up` and export the PREFECT_API_URL"
            " it prints",
            EXIT_BAD_INPUT,
        )
    state = set_paused(paused)
    if not state.exists:
        _fail(
            f"{state.deployment} is not deployed on this Prefect server"
            " (`uv run ost up` deploys prefect.yaml)",
            EXIT_BAD_INPUT,
        )
    typer.echo(f"{state.deployment}: {'paused' if state.paused else 'scheduled'}")


@schedule_app.command("pause")
def schedule_pause() -> None:
    """Pause the ingest-all deployment and its schedule through the Prefect API."""
    _set_schedule(True)


@schedule_app.command("resume")
def schedule_resume() -> None:
    """Resume the ingest-all deployment and its schedule through the Prefect API."""
    _set_schedule(False)


#: click's UsageError, as typer vendors it (typer re-exports only its subclass BadParameter).
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]


@app.callback(invoke_without_command=True)
def _show_help_without_command(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


def main() -> None:
    """Entry point of the ``ost`` console script: a usage error is one line and exit 2."""
    try:
        status = app(standalone_mode=False)
    except typer.Abort:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except _UsageError as exc:
        message = exc.format_message()  # type: ignore[attr-defined]  # click's UsageError API
        _fail_now(message, EXIT_BAD_INPUT)
    raise SystemExit(status if isinstance(status, int) else EXIT_OK)


def _fail_now(message: str, code: int) -> NoReturn:
    typer.echo(f"ost: error: {message}", err=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
