"""Damaged partition files never crash the process that reads them: each is read in a child.

fastparquet's thrift decoder segfaulted on some damaged footers; one such file stopped every
stream of the flow process. Here a real partition file (the simulator's candles, written by the
store) is damaged in many deterministic ways, and a child process reads each damaged copy
through the store's four readers. The child must end normally, and each read either raises
PartitionCorrupt/StoreCorrupt or returns exactly what was written.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from oracle import assert_candles, simulator_candles

from ost import intervals, klines
from ost.store import CandleStore, partition_path

SYMBOL, INTERVAL = "BTCUSDT", "1m"
PERIOD = dt.date(2024, 2, 29)
START_MS = intervals.date_ms(PERIOD) + 60 * intervals.MINUTE_MS
COUNT = 300
NOW_MS = START_MS + 2 * intervals.DAY_MS
#: Damaged copies read by one child process (each child costs an interpreter start).
BATCH = 40
#: The damages that flip bytes in the data pages (between the head magic and the footer).
DATA_FLIPS = tuple(f"data flip {seed}" for seed in range(20))

#: The child: for each store root given, the four reads, one JSON line each, printed before the
#: next read starts (so a crash names the damage it met). Frames read go to a pickle.
CHILD = """
import json, sys
from ost.errors import StoreCorrupt, PartitionCorrupt
from ost.store import CandleStore
import datetime as dt
period = dt.date.fromisoformat(sys.argv[1])
for root in sys.argv[2:]:
    store = CandleStore(root)
    calls = {
        "load_klines": lambda: store.load_klines("BTCUSDT", "1m"),
        "read_partition": lambda: store.read_partition("BTCUSDT", "1m", period),
        "partition_extent": lambda: store.partition_extent("BTCUSDT", "1m", period),
        "last_open_time": lambda: store.last_open_time("BTCUSDT", "1m"),
    }
    for name, call in calls.items():
        print(json.dumps({"root": root, "call": name, "started": True}), flush=True)
        try:
            value = call()
        except (StoreCorrupt, PartitionCorrupt) as exc:
            outcome, value = "corrupt", type(exc).__name__
        except Exception as exc:
            outcome, value = "error", repr(exc)
        else:
            outcome = "value"
            if hasattr(value, "to_pickle"):
                value.to_pickle(f"{root}/{name}.pkl")
                value = "pickled"
            elif value is not None and not isinstance(value, int):
                value = [value.rows, value.first_open_ms, value.last_open_ms]
        print(json.dumps({"root": root, "call": name, "outcome": outcome, "value": value}),
              flush=True)
"""


def footer_bounds(data: bytes) -> tuple[int, int]:
    """Where the footer (thrift FileMetaData) starts and ends in a Parquet file's bytes."""
    size = int.from_bytes(data[-8:-4], "little")
    return len(data) - 8 - size, len(data) - 8


def flipped(data: bytes, seed: int, low: int, high: int, flips: int = 3) -> bytes:
    """``data`` with ``flips`` bytes in ``[low, high)`` set to random values (seeded)."""
    chosen = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        out[chosen.randrange(low, high)] = chosen.randrange(256)
    return bytes(out)


def new_footer(data: bytes, footer: bytes) -> bytes:
    """``data`` with its footer replaced by ``footer`` (its length field says so)."""
    start, _ = footer_bounds(data)
    return data[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def with_length(data: bytes, length: int) -> bytes:
    """``data`` with the footer-length field set to ``length``."""
    return data[:-8] + length.to_bytes(4, "little") + data[-4:]


def damages(data: bytes) -> dict[str, bytes]:
    """Deterministic damages of a partition file's bytes, by name."""
    start, end = footer_bounds(data)
    size = len(data)
    footer = data[start:end]
    cuts = sorted({0, 1, 4, 8, 12, size // 4, size // 2, start, start + 1, (start + end) // 2})
    cuts += [end, size - 5, size - 4, size - 1]
    found = {f"truncated at {cut}": data[:cut] for cut in cuts}
    found |= {f"footer flip {seed}": flipped(data, seed, start, end) for seed in range(60)}
    found |= {name: flipped(data, seed, 4, start) for seed, name in enumerate(DATA_FLIPS)}
    prefixes = random.Random(1)
    for _ in range(10):
        cut = prefixes.randrange(len(footer))
        found[f"footer cut to {cut} bytes"] = new_footer(data, footer[:cut])
        found[f"footer from byte {cut}"] = new_footer(data, footer[cut:])
    found |= {
        "zeroed footer length": with_length(data, 0),
        "huge footer length": with_length(data, 0xFFFFFFFF),
        "footer length of the whole file": with_length(data, size),
        "footer length one too long": with_length(data, end - start + 1),
        "head magic lost": b"\0\0\0\0" + data[4:],
        "tail magic lost": data[:-4] + b"\0\0\0\0",
        "zeroed footer": data[:start] + bytes(end - start) + data[end:],
    }
    return found


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, pd.DataFrame]:
    """A partition file's bytes as the store writes the simulator's candles, and those candles."""
    root = tmp_path_factory.mktemp("store")
    end_ms = START_MS + COUNT * intervals.MINUTE_MS
    candles = simulator_candles(SYMBOL, INTERVAL, START_MS, end_ms, NOW_MS)
    assert len(candles) == COUNT
    CandleStore(str(root)).merge(SYMBOL, INTERVAL, candles)
    return Path(partition_path(str(root), SYMBOL, INTERVAL, PERIOD)).read_bytes(), candles


def read_in_children(
    found: dict[str, bytes], tmp_path: Path
) -> tuple[dict[str, str], dict[tuple[str, str], dict[str, object]]]:
    """Each damaged copy in a store of its own, read by ``CHILD`` processes (``BATCH`` each).

    Returns the damage of each store root, and each (root, call)'s outcome. Every child must
    end normally: a crash (a negative return code: a signal) names the damage it met.
    """
    roots: dict[str, str] = {}
    for number, (name, damaged) in enumerate(found.items()):
        root = tmp_path / f"store-{number}"
        path = Path(partition_path(str(root), SYMBOL, INTERVAL, PERIOD))
        path.parent.mkdir(parents=True)
        path.write_bytes(damaged)
        roots[str(root)] = name
    names = list(roots)
    results: dict[tuple[str, str], dict[str, object]] = {}
    for first in range(0, len(names), BATCH):
        batch = names[first : first + BATCH]
        child = subprocess.run(
            [sys.executable, "-c", CHILD, PERIOD.isoformat(), *batch],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines = [json.loads(line) for line in child.stdout.splitlines()]
        last = roots.get(str(lines[-1]["root"]), "none") if lines else "none"
        assert child.returncode == 0, (child.returncode, last, child.stderr[-2000:])
        for line in lines:
            if "outcome" in line:
                results[(str(line["root"]), str(line["call"]))] = line
    assert len(results) == 4 * len(names)
    return roots, results


def wrong_reads(
    roots: dict[str, str], results: dict[tuple[str, str], dict[str, object]], candles: pd.DataFrame
) -> list[tuple[str, str, object]]:
    """The reads that neither raised PartitionCorrupt/StoreCorrupt nor returned what was written."""
    open_ms = klines.open_time_ms(candles)
    extent = [COUNT, int(open_ms[0]), int(open_ms[-1])]
    wrong = []
    for (root, call), line in results.items():
        value = line["value"]
        if line["outcome"] == "corrupt":
            continue
        if line["outcome"] != "value":  # another exception: a raw error, not a report
            ok = False
        elif call in ("load_klines", "read_partition"):
            got = pd.read_pickle(f"{root}/{call}.pkl")  # noqa: S301  # our own child wrote it
            try:
                assert_candles(got, candles)
            except AssertionError:
                ok = False
            else:
                ok = True
        elif call == "partition_extent":  # None: the footer cannot say (the full read names it)
            ok = value in (None, extent)
        else:
            ok = value == extent[2]
        if not ok:
            wrong.append((roots[root], call, value))
    return wrong


def test_damaged_partition_files_are_reported_and_never_crash_the_reader(
    written: tuple[bytes, pd.DataFrame], tmp_path: Path
) -> None:
    """No damage crashes the reader; each ends in PartitionCorrupt/StoreCorrupt or the candles.

    Flipped data pages are only required not to crash here (see the next test).
    """
    data, candles = written
    found = damages(data)
    roots, results = read_in_children(found, tmp_path)
    wrong = wrong_reads(roots, results, candles)
    assert [read for read in wrong if read[0] not in DATA_FLIPS] == []
    corrupt = {roots[root] for (root, _), line in results.items() if line["outcome"] == "corrupt"}
    assert len(corrupt) > len(found) // 2, sorted(set(found) - corrupt)


def test_flipped_data_pages_are_reported_and_never_crash_the_reader(
    written: tuple[bytes, pd.DataFrame], tmp_path: Path
) -> None:
    """Bytes flipped in the data pages are reported, or read as the candles written."""
    data, candles = written
    found = {name: damaged for name, damaged in damages(data).items() if name in DATA_FLIPS}
    roots, results = read_in_children(found, tmp_path)
    assert wrong_reads(roots, results, candles) == []
