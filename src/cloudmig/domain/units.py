"""Byte counts as people read them, in binary units (KiB, MiB, GiB: powers of 1024) on every surface:
the CLI, the console, and the events in Detail."""

from __future__ import annotations


def human_bytes(n: float | None, unknown: str = "-") -> str:
    if n is None:
        return unknown
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
