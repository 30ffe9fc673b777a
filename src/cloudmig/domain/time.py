"""Time formats of the API."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def gmt(dt: datetime | None) -> str:
    """UTC `YYYY-MM-DDThh:mm:ssZ`, as GmtCreated/GmtModified/SwitchTime."""
    if dt is None:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
