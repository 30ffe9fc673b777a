"""PostgreSQL LSNs as text ('16/B374D848') and as byte positions."""

from __future__ import annotations


def parse_lsn(text: str) -> int:
    hi, _, lo = text.partition("/")
    if not lo:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
