"""Change counters of a server's tables, per database: what the watch after a switchover compares.

Counters of user tables say whether application rows changed; ANALYZE counts (which take a
transaction id without changing user rows) tell maintenance apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]

_USER_ROWS = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables"
_ANALYZES = "SELECT coalesce(sum(analyze_count + autoanalyze_count), 0)::bigint FROM pg_stat_all_tables"


@dataclass(frozen=True)
class TableCounters:
    user_row_changes: int
    analyzes: int

    def __add__(self, other: TableCounters) -> TableCounters:
        return TableCounters(self.user_row_changes + other.user_row_changes, self.analyzes + other.analyzes)


def databases(conn: Conn) -> list[str]:
    """Databases that accept connections (template0 never does)."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template1' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def counters(conn: Conn) -> TableCounters:
    """This database's counters (statistics views only show the connected database)."""
    rows = conn.execute(_USER_ROWS).fetchone()
    analyzes = conn.execute(_ANALYZES).fetchone()
    return TableCounters(int(rows[0]) if rows else 0, int(analyzes[0]) if analyzes else 0)
