"""ost-ingest: Binance spot klines into a Parquet store, in four layers that import downward only.

From the bottom up:

1. **The core**: every module of ``ost`` but the app's and the simulator: the Binance client
   (``binance``, ``pacing``, ``transport``, ``urls``, ``clock``), parsing (``klines``,
   ``intervals``, ``timefmt``), the store and its checks (``store``, ``gaps``, ``verify``), the
   work (``ingest``, ``backfill``, ``archive``, ``paging``), the ingestion record (``ledger``),
   the settings and input (``settings``, ``args``), the errors and exit statuses (``errors``),
   and ``runtime``, which builds them for one process. Plain Python: it never imports prefect.
2. **Alerts** (``ost.alerts``): the escalation ladder (a pure policy, and its state, which the
   ledger keeps without reading), the notifier and the watchdog, over the core.
3. **Orchestration** (``ost.flows``, ``ost.tasks``): the thin Prefect shell over the core and
   alerts, and the only importer of prefect.
4. **The app**: the ``ost`` command (``ost.cli``), the single-machine stack (``ost.stack``),
   the metrics server (``ost.metrics``) and the terminal's progress bars (``ost.progress``).

Beside the app, the Binance simulator (``ost.sim``) is a witness that the tests check the core
against: nothing below the app imports it, and it imports nothing of alerts, orchestration or the
app. ``uv run lint-imports`` checks all of this (the contracts are in ``pyproject.toml``).

``ost`` is the one import root. The design card keeps ``flows/``, ``tasks/`` and ``alerts/`` at
the top of the repository, where ``prefect.yaml``'s entrypoints name them; ``ost/flows``,
``ost/tasks`` and ``ost/alerts`` are links to them, so they are imported (and shipped in the
wheel) as ``ost.flows``, ``ost.tasks`` and ``ost.alerts``, and installing ost-ingest never puts a
generic ``flows`` or ``alerts`` package into site-packages.
"""
