"""A source's physical replication slots as cloudmig watches them: its own, and their health."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from cloudmig.domain.lsn import parse_lsn

Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True)
class SlotHealth:
    name: str
    active: bool
    # Bytes of WAL the slot keeps on the source (current position minus restart_lsn).
    retained_bytes: int | None
    # reserved / extended / unreserved / lost (13+); None before 13.
    wal_status: str | None
    # Bytes that can still be written before the slot is at risk (13+, with max_slot_wal_keep_size).
    safe_wal_size: int | None

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost"


def _major(conn: Conn) -> int:
    return conn.info.server_version // 10000


def slot_health(conn: Conn, name: str) -> SlotHealth | None:
    extra = ", wal_status::text, safe_wal_size::text" if _major(conn) >= 13 else ", NULL, NULL"
    row = conn.execute(
        "SELECT slot_name, active, restart_lsn::text, pg_current_wal_lsn()::text"
        + extra
        + " FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    restart, current = row[2], row[3]
    retained = None if restart is None else max(parse_lsn(str(current)) - parse_lsn(str(restart)), 0)
    return SlotHealth(
        name=str(row[0]),
        active=bool(row[1]),
        retained_bytes=retained,
        wal_status=None if row[4] is None else str(row[4]),
        safe_wal_size=None if row[5] is None else int(row[5]),
    )


def slots_with_prefix(conn: Conn, prefix: str) -> list[tuple[str, bool]]:
    """(name, active) of the physical slots whose name starts with `prefix`."""
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    rows = conn.execute(
        "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'"
        " AND slot_name LIKE %s ORDER BY 1",
        (pattern,),
    ).fetchall()
    return [(str(r[0]), bool(r[1])) for r in rows]


def wal_size_settings_mb(conn: Conn) -> tuple[int, int | None]:
    """(max_wal_size, max_slot_wal_keep_size or None when unlimited or absent) in MB."""
    rows: dict[str, str] = dict(
        conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('max_wal_size', 'max_slot_wal_keep_size')"
        ).fetchall()
    )
    keep = rows.get("max_slot_wal_keep_size")
    keep_mb = int(keep) if keep is not None and int(keep) >= 0 else None
    return int(rows.get("max_wal_size", 1024)), keep_mb
