"""In-process nudges: a use case that changes a task's desired state wakes its worker at once, and a
new task or instance wakes the engine loop instead of waiting for its next tick.

The store stays the source of truth; a worker in another process simply notices on its next tick.
"""

from __future__ import annotations

import threading

_STEP_SECONDS = 0.05


class Notifier:
    def __init__(self) -> None:
        self._events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._engine = threading.Event()

    def _event(self, task_id: int) -> threading.Event:
        with self._lock:
            return self._events.setdefault(task_id, threading.Event())

    def wake(self, task_id: int) -> None:
        self._event(task_id).set()

    def sleep(self, task_id: int, seconds: float, stop: threading.Event) -> None:
        """Sleep up to `seconds`, returning early when the task is woken or `stop` is set."""
        _wait(self._event(task_id), seconds, stop)

    def forget(self, task_id: int) -> None:
        with self._lock:
            self._events.pop(task_id, None)

    def wake_engine(self) -> None:
        self._engine.set()

    def engine_sleep(self, seconds: float, stop: threading.Event) -> None:
        _wait(self._engine, seconds, stop)


def _wait(ev: threading.Event, seconds: float, stop: threading.Event) -> None:
    left = seconds
    while left > 0 and not stop.is_set():
        if ev.wait(min(_STEP_SECONDS, left)):
            ev.clear()
            return
        left -= _STEP_SECONDS
