"""One Prefect progress artifact fed by several stream tasks at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ClassVar
from uuid import UUID

from prefect.artifacts import update_progress_artifact

from ost.intervals import Interval, Stream, Symbol

#: Update the artifact at most this often (each update is an API call).
MIN_UPDATE_INTERVAL_S = 1.0


class SharedProgress:
    """Sums ``done/total`` over streams into one percentage, throttled."""

    _instances: ClassVar[dict[UUID, SharedProgress]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, artifact_id: UUID) -> None:
        self.artifact_id = artifact_id
        self._streams: dict[Stream, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._last_update = 0.0

    @classmethod
    def get(cls, artifact_id: UUID | None) -> SharedProgress | None:
        """The process's tracker for ``artifact_id`` (None: no artifact, no tracking)."""
        if artifact_id is None:
            return None
        with cls._instances_lock:
            return cls._instances.setdefault(artifact_id, cls(artifact_id))

    def reporter(self, symbol: Symbol, interval: Interval) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback for one stream."""

        def report(done: int, total: int) -> None:
            self.report(symbol, interval, done, total)

        return report

    def report(self, symbol: Symbol, interval: Interval, done: int, total: int) -> None:
        """Record a stream's progress, and update the artifact if it is time to."""
        with self._lock:
            self._streams[Stream(symbol, interval)] = (done, total)
            finished = done >= total
            now = time.monotonic()
            if not finished and now - self._last_update < MIN_UPDATE_INTERVAL_S:
                return
            self._last_update = now
            done_all = sum(d for d, _ in self._streams.values())
            total_all = sum(t for _, t in self._streams.values())
        percent = 100.0 * done_all / total_all if total_all else 100.0
        update_progress_artifact(
            self.artifact_id, percent, description=f"{done_all} of {total_all} candles"
        )
