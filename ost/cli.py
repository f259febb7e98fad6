"""The ``ost`` command. Each command imports what it needs when it runs, so ``ost`` starts fast.

Commands that do the work of a flow (``ingest``, ``backfill``, ``gaps``, ``watchdog``) call the
core directly: they need no Prefect server and never import prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from ost.ingest import StreamOutcome
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
    from ost.binance import BinanceClient
    from ost.ingest import ingest_all
    from ost.store import CandleStore

    streams = [(s, i) for s in chosen_symbols for i in chosen_intervals]
    with BinanceClient.from_settings(settings) as client:
        outcomes = ingest_all(
            client,
            CandleStore(settings.data_dir),
            streams,
            lookback_days=settings.initial_lookback_days,
        )
    _print_outcomes(outcomes)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(EXIT_FAILED)


def _print_outcomes(outcomes: list[StreamOutcome]) -> None:
    from rich.console import Console
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
    console = Console(stderr=False)
    console.print(table)
    for outcome in outcomes:
        if not outcome.ok:
            console.print(f"[red]{outcome.symbol} {outcome.interval}:[/] {outcome.error}")


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
        bool, typer.Option("--simulate", help="Also start the simulator and point the client at it.")
    ] = False,
    sim_port: Annotated[int, typer.Option(help="The simulator's port (with --simulate).")] = 8900,
) -> None:
    """The single-machine stack: Prefect server, work pool, deployments, worker, metrics."""
    import time

    from rich.console import Console

    from ost.stack import running_stack

    settings = _settings()
    console = Console()

    def say(line: str) -> None:
        console.print(f"[dim]ost up:[/] {line}", highlight=False)

    try:
        with running_stack(simulate, sim_port, say) as stack:
            ui = stack.env["PREFECT_API_URL"].removesuffix("/api")
            metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
            console.print(
                f"\n[bold green]ost-ingest is up.[/] Prefect UI: {ui}   metrics: {metrics}\n"
                f"Try, in another terminal:\n"
                f"  export PREFECT_API_URL={stack.env['PREFECT_API_URL']}\n"
                "  prefect deployment run ingest-all/scheduled\n"
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
_UsageError: type[Exception] = typer.BadParameter.__base__


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
