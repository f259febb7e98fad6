"""The ``ost`` command. Each command imports what it needs when it runs, so ``ost`` starts fast.

Commands that do the work of a flow (``ingest``, ``backfill``, ``gaps``, ``watchdog``) call the
core directly: they need no Prefect server and never import prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ost.backfill import BackfillResult
    from ost.ingest import StreamOutcome
    from ost.runtime import Runtime
    from ost.settings import Settings

app = typer.Typer(
    name="ost",
    help="Binance spot candles for One Smart Trade: ingest, backfill, gaps, alerts.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

SymbolsOption = Annotated[
    str | None, typer.Option("--symbols", help="Comma-separated symbols (default OST_SYMBOLS).")
]


#: The width of output that is not a terminal (a pipe, a file, a CI log), so tables are not cut.
UNBOUNDED_WIDTH = 10_000


def _console() -> Console:
    """Rich's console for stdout: a terminal's width, or unbounded when output is not a terminal."""
    import os
    import sys

    from rich.console import Console

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=UNBOUNDED_WIDTH if wide else None)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"ost: error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _bad_input_exits_2() -> Iterator[None]:
    """Turn :class:`BadInput` into one line on stderr and exit status 2."""
    from ost.errors import BadInput

    try:
        yield
    except BadInput as exc:
        _fail(str(exc.args[0]) if exc.args else str(exc), EXIT_BAD_INPUT)


def _runtime(settings: Settings) -> Runtime:
    """The client, store and ledger of ``settings``; a data dir that cannot be opened exits 2."""
    from ost.runtime import Runtime

    with _bad_input_exits_2():
        return Runtime.from_settings(settings)
    raise AssertionError("unreachable")  # pragma: no cover


def _settings() -> Settings:
    from ost.settings import load_settings

    with _bad_input_exits_2():
        return load_settings()
    raise AssertionError("unreachable")  # pragma: no cover


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
        chosen_symbols = parse_symbols(symbols, settings)
        chosen_intervals = parse_intervals(intervals, settings)

    runtime = _runtime(settings)
    outcomes = runtime.ingest_many(runtime.streams(chosen_symbols, chosen_intervals))
    runtime.close()
    _print_outcomes(outcomes)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(EXIT_FAILED)


def _print_outcomes(outcomes: list[StreamOutcome]) -> None:
    from rich.table import Table

    from ost.timefmt import iso_ms

    table = Table(title="ost ingest")
    for column in ("symbol", "interval", "result", "new candles", "last candle (UTC)", "seconds"):
        table.add_column(column)
    for outcome in outcomes:
        result = "[green]ok[/]" if outcome.ok else f"[red]failed: {outcome.reason}[/]"
        table.add_row(
            outcome.symbol,
            outcome.interval,
            result,
            str(outcome.written),
            iso_ms(outcome.last_open_ms),
            f"{outcome.seconds:.2f}",
        )
    console = _console()
    console.print(table)
    for outcome in outcomes:
        if not outcome.ok:
            console.print(f"[red]{outcome.symbol} {outcome.interval}:[/] {outcome.error}")


IntervalOption = Annotated[
    str, typer.Option("--interval", help="'all' (OST_INTERVALS), or intervals like 1h,1d.")
]
DaysOption = Annotated[float | None, typer.Option("--days", help="The last N days up to now.")]
StartOption = Annotated[str | None, typer.Option("--start", help="ISO-8601 start (UTC).")]
EndOption = Annotated[str | None, typer.Option("--end", help="ISO-8601 end (UTC), default now.")]


def _request(
    settings: Settings,
    interval: str,
    symbols: str | None,
    days: float | None,
    start: str | None,
    end: str | None,
) -> tuple[list[tuple[str, str]], int, int]:
    import time

    from ost.args import streams_and_range

    with _bad_input_exits_2():
        return streams_and_range(
            settings,
            interval=interval,
            symbols=symbols,
            days=days,
            start=start,
            end=end,
            now_ms=int(time.time() * 1000),
        )
    raise AssertionError("unreachable")  # pragma: no cover


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
    streams, start_ms, end_ms = _request(settings, interval, symbols, days, start, end)
    from ost.backfill import backfill as run_backfill
    from ost.backfill import check_source
    from ost.progress import terminal_progress

    with _bad_input_exits_2():
        check_source(source)
    runtime = _runtime(settings)
    with terminal_progress(streams) as progress:
        results = run_backfill(
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
    _print_backfill(results)
    if not all(result.ok for result in results):
        raise typer.Exit(EXIT_FAILED)


def _print_backfill(results: list[BackfillResult]) -> None:
    from rich.table import Table

    table = Table(title="ost backfill")
    columns = ("symbol", "interval", "result", "missing", "written", "archive", "api", "seconds")
    for column in columns:
        table.add_column(column)
    for result in results:
        table.add_row(
            result.symbol,
            result.interval,
            "[green]ok[/]" if result.ok else f"[red]failed: {result.reason}[/]",
            str(result.missing),
            str(result.written),
            str(result.from_archive),
            str(result.from_api),
            f"{result.seconds:.2f}",
        )
    console = _console()
    console.print(table)
    for result in results:
        if not result.ok:
            console.print(f"[red]{result.symbol} {result.interval}:[/] {result.error}")


EXIT_GAPS_REMAIN = 3


@app.command()
def gaps(
    interval: IntervalOption,
    days: DaysOption = None,
    start: StartOption = None,
    end: EndOption = None,
    symbols: SymbolsOption = None,
    repair: Annotated[bool, typer.Option("--repair", help="Backfill the missing ranges.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON report, for machines.")] = False,
) -> None:
    """Missing candles per stream as ranges; exchange-side gaps apart; --repair fills the rest."""
    settings = _settings()
    streams, start_ms, end_ms = _request(settings, interval, symbols, days, start, end)
    from ost.progress import terminal_progress

    runtime = _runtime(settings)
    with terminal_progress(streams, quiet=as_json or not repair) as progress:
        report, status = runtime.check_gaps(
            streams, start_ms, end_ms, repair_gaps=repair, progress=progress
        )
    runtime.close()
    if as_json:
        typer.echo(report.to_json())
    else:
        console = _console()
        if console.is_terminal:
            from rich.markdown import Markdown

            console.print(Markdown(report.to_markdown()))
        else:  # a pipe or a file gets the Markdown itself, not a rendering padded to a width
            typer.echo(report.to_markdown())
    raise typer.Exit(status)


@app.command()
def sim(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8900,
    faults: Annotated[
        str | None, typer.Option(help="Fault SPEC, e.g. '5xx:rate=0.3,count=5;slow:delay=2'.")
    ] = None,
    weight_limit: Annotated[int, typer.Option(help="Request weight per window.")] = 6000,
    weight_window_s: Annotated[float, typer.Option(help="Weight window in seconds.")] = 60,
    latency_ms: Annotated[float, typer.Option(help="Delay added to every answer.")] = 0.0,
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
    import time

    from ost.stack import running_stack, wait_for

    settings = _settings()
    console = _console()

    def say(line: str) -> None:
        console.print(f"[dim]ost up:[/] {line}", highlight=False)

    try:
        with running_stack(simulate, sim_port, say) as stack:
            ui = stack.env["PREFECT_API_URL"].removesuffix("/api")
            metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
            wait_for(metrics.removesuffix("metrics") + "healthz", "ost metrics")
            console.print(
                f"\n[bold green]ost-ingest is up.[/] Prefect UI: {ui}   metrics: {metrics}\n"
                f"Try, in another terminal:\n"
                f"  export PREFECT_API_URL={stack.env['PREFECT_API_URL']}\n"
                + (
                    f"  export OST_BINANCE_BASE_URLS={stack.env['OST_BINANCE_BASE_URLS']}"
                    f" OST_ARCHIVE_BASE_URL={stack.env['OST_ARCHIVE_BASE_URL']}\n"
                    if simulate
                    else ""
                )
                + "  prefect deployment run ingest-all/scheduled\n"
                "  prefect deployment run backfill/manual --param interval=1h --param days=2\n"
                "  uv run ost schedule pause   # and: uv run ost schedule resume\n"
                "  uv run ost status\n"
                "Ctrl-C stops everything ost up started.\n",
                highlight=False,
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

    settings = _settings()
    with BinanceClient.from_settings(settings) as client:
        pongs = client.ping_all()
    table = Table(title="ost ping")
    for column in ("base URL", "reachable", "latency ms", "skew ms", "used weight", "error"):
        table.add_column(column)
    for pong in pongs:
        table.add_row(
            pong.base_url,
            "[green]yes[/]" if pong.ok else "[red]no[/]",
            _or_dash(pong.latency_ms),
            _or_dash(pong.skew_ms),
            _or_dash(pong.used_weight),
            pong.error or "",
        )
    _console().print(table)
    if not any(pong.ok for pong in pongs):
        raise typer.Exit(EXIT_FAILED)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for machines.")] = False,
) -> None:
    """Per stream: last candle, last success, failing since, level; is the schedule paused."""
    import json

    from alerts.watchdog import ladder_status

    settings = _settings()
    report = ladder_status(settings).to_dict()
    report["ingest_schedule"] = _schedule_state()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_status(report)


def _schedule_state() -> str:
    """``paused``, ``scheduled``, or why it is unknown (no Prefect server to ask)."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return "unknown (PREFECT_API_URL is not set)"
    from flows.control import schedule_state

    try:
        state = schedule_state()
    except Exception as exc:  # noqa: BLE001  # any failure to reach Prefect is reported, not fatal
        return f"unknown (Prefect API: {type(exc).__name__})"
    if not state.exists:
        return "not deployed"
    return "paused" if state.paused else "scheduled"


def _print_status(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"ost status: level {report['level']}")
    columns = ("symbol", "interval", "level", "last candle", "last success", "failing since")
    for column in (*columns, "last error"):
        table.add_column(column)
    for stream in report["streams"]:
        table.add_row(
            stream["symbol"],
            stream["interval"],
            stream["level"],
            _or_dash(stream["last_candle_open_time"]),
            _or_dash(stream["last_success_at"]),
            _or_dash(stream["down_since"]),
            (stream["last_reason"] or "") if stream["down_since"] else "",
        )
    console = _console()
    console.print(table)
    console.print(f"ingest schedule: {report['ingest_schedule']}", highlight=False)


@app.command()
def metrics() -> None:
    """Serve Prometheus metrics at /metrics and /healthz on OST_METRICS_HOST:OST_METRICS_PORT."""
    from ost.metrics import serve_metrics

    serve_metrics(_settings())


@app.command()
def watchdog() -> None:
    """One evaluation of the escalation ladder (the watchdog flow), sending what is due."""
    from alerts.watchdog import run_watchdog

    report = run_watchdog(_settings())
    typer.echo(f"level: {report.level.name.lower()}; sent: {len(report.sent)}")


@app.command("notify-test")
def notify_test(
    tag: Annotated[
        str | None, typer.Option("--tag", help="alert or escalate (default: all).")
    ] = None,
) -> None:
    """Send a test notification through the configured apprise targets."""
    from alerts.notify import send_test
    from ost.errors import NotifyError

    try:
        accepted = send_test(_settings(), tag)
    except NotifyError as exc:
        _fail(str(exc), EXIT_FAILED)
    typer.echo(f"sent: {accepted} target(s) accepted the test notification")


schedule_app = typer.Typer(help="Pause or resume the ingest schedule (the UI's toggle).")
app.add_typer(schedule_app, name="schedule")


def _set_schedule(paused: bool) -> None:
    from flows.control import set_paused

    state = set_paused(paused)
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
        raise SystemExit(130) from None
    except _UsageError as exc:
        message = exc.format_message()  # type: ignore[attr-defined]  # click's UsageError API
        _fail_now(message, EXIT_BAD_INPUT)
    raise SystemExit(status if isinstance(status, int) else 0)


def _fail_now(message: str, code: int) -> NoReturn:
    typer.echo(f"ost: error: {message}", err=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
