"""Time as the services and the engine see it; tests drive a fake one."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from cloudmig.domain.time import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall-clock time (what the store and the API show)."""

    def monotonic(self) -> float:
        """Seconds for measuring intervals; never goes back."""


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()
