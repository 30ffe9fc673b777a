"""Replication lag over time for the console's chart: a sampler thread reads running migrations from
the store every few seconds and keeps the last points of each task in memory (a restart starts the
chart afresh; the store keeps only the latest observation)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from cloudmig.domain.enums import MigrateStage

log = logging.getLogger(__name__)

# Finished tasks whose history is kept for their pages after they stop being sampled.
KEEP_FINISHED = 50


@dataclass(frozen=True)
class Point:
    at: float  # epoch seconds of the observation
    lag_bytes: int
    lag_seconds: float | None


class LagHistory:
    def __init__(self, ctx: Any, *, interval: float, points: int) -> None:
        self.ctx = ctx
        self.interval = interval
        self.points = points
        self._series: dict[int, deque[Point]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="console-lag-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def series(self, task_id: int) -> list[Point]:
        with self._lock:
            return list(self._series.get(task_id, ()))

    def record(self, task_id: int, progress: dict[str, Any]) -> None:
        rep = progress.get("Replication") or {}
        lag, at = rep.get("LagBytes"), rep.get("ObservedAt")
        if not isinstance(lag, int) or not isinstance(at, (int, float)):
            return
        secs = rep.get("LagSeconds")
        point = Point(float(at), lag, float(secs) if isinstance(secs, (int, float)) else None)
        with self._lock:
            dq = self._series.setdefault(task_id, deque(maxlen=self.points))
            if not dq or dq[-1].at != point.at:
                dq.append(point)

    def sample_once(self) -> None:
        from cloudmig.services import migrations as migration_svc

        live: set[int] = set()
        for t in migration_svc.running_migrations(self.ctx):
            if t.stage in (MigrateStage.STARTUP, MigrateStage.INCREMENT, MigrateStage.SWITCH):
                live.add(t.id)
                self.record(t.id, t.progress)
        with self._lock:
            finished = [tid for tid in self._series if tid not in live]
            for tid in finished[:-KEEP_FINISHED] if len(finished) > KEEP_FINISHED else []:
                del self._series[tid]

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except Exception:
                log.exception("console: sampling replication lag failed")
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.1))
