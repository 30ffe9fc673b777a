"""Human-readable numbers for the console's templates."""

from __future__ import annotations

from datetime import datetime

DASH = "\u2013"  # what an unknown value shows


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return DASH
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


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
