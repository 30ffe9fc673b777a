"""In-process nudges: a use case that changes a task's desired state wakes its worker at once.

The store stays the source of truth; a worker in another process simply notices on its next tick.
"""

from __future__ import annotations

import threading

_events: dict[int, threading.Event] = {}
_lock = threading.Lock()


def _event(task_id: int) -> threading.Event:
    with _lock:
        return _events.setdefault(task_id, threading.Event())


def wake(task_id: int) -> None:
    _event(task_id).set()


def sleep(task_id: int, seconds: float, stop: threading.Event) -> None:
    """Sleep up to `seconds`, returning early when the task is woken or `stop` is set."""
    ev = _event(task_id)
    deadline = seconds
    step = 0.05
    while deadline > 0 and not stop.is_set():
        if ev.wait(min(step, deadline)):
            ev.clear()
            return
        deadline -= step


def forget(task_id: int) -> None:
    with _lock:
        _events.pop(task_id, None)


# The engine loop itself: woken when a task or an instance is created, so it is claimed at once
# instead of on the next tick.
_engine = threading.Event()


def wake_engine() -> None:
    _engine.set()


def engine_sleep(seconds: float, stop: threading.Event) -> None:
    step = 0.05
    left = seconds
    while left > 0 and not stop.is_set():
        if _engine.wait(min(step, left)):
            _engine.clear()
            return
        left -= step
