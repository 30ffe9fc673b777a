"""Human-readable numbers for the console's templates."""

from __future__ import annotations

from datetime import datetime

from cloudmig.domain import units

DASH = "\u2013"  # what an unknown value shows


def human_bytes(n: float | None) -> str:
    return units.human_bytes(n, unknown=DASH)


def human_seconds(s: float | int | None) -> str:
    if s is None:
        return DASH
    total = round(float(s))
    if total < 60:
        return f"{float(s):.1f} s" if total < 10 else f"{total} s"
    h, rem = divmod(total, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def human_rate(n: float | int | None) -> str:
    return DASH if n is None else f"{human_bytes(n)}/s"


def local_time(dt: datetime | None) -> str:
    return DASH if dt is None else dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")
