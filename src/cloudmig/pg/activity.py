"""What is writing on a server: transaction ids and the sessions that hold them.

A write takes a transaction id. The snapshot's xmax (one past the latest completed transaction id)
moves whenever a transaction that had an id ends, and `pg_stat_activity.backend_xid` shows who
holds one right now; together they prove a server quiet, unlike a moment of WAL silence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]

# How long ending sessions waits for them to be gone.
TERMINATE_WAIT_SECONDS = 5.0
# cloudmig's sessions on a source are named cloudmig, cloudmig-watch, ... (application_name).
OWN_APPLICATION_PREFIX = "cloudmig"

# The 64-bit (epoch-extended) snapshot xmax; pg_snapshot and pg_current_snapshot exist since 13.
_XMAX_13 = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"
_XMAX_OLD = "SELECT txid_snapshot_xmax(txid_current_snapshot())::text"


def _major(conn: Conn) -> int:
    return conn.info.server_version // 10000


def completed_xid_horizon(conn: Conn) -> int:
    """One past the latest completed transaction id (moves when a writing transaction ends).
    Read in its own statement, so in autocommit a fresh snapshot every call."""
    row = conn.execute(_XMAX_13 if _major(conn) >= 13 else _XMAX_OLD).fetchone()
    assert row is not None
    return int(row[0])


def current_wal_insert_lsn_text(conn: Conn) -> str:
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class Session:
    """A backend as an operator would name it in a refusal."""

    pid: int
    backend_type: str
    database: str
    user: str
    application_name: str
    client_addr: str
    superuser: bool
    holds_xid: bool
    # The first word of its current or last statement, and when its state last changed (epoch s,
    # the server's clock): a session that finished an INSERT a moment ago was writing.
    verb: str = ""
    state_change: float | None = None
    backend_start: float | None = None

    @property
    def last_statement_wrote(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def is_client(self) -> bool:
        return self.backend_type == "client backend"

    @property
    def is_maintenance(self) -> bool:
        # autovacuum's ANALYZE takes a transaction id; it writes no user data.
        return self.backend_type in ("autovacuum worker", "autovacuum launcher")

    @property
    def is_background_worker(self) -> bool:
        """A process other than a client that may take transaction ids: an autovacuum worker, or a
        background worker of an extension (pg_cron, logical replication, ...)."""
        return not self.is_client and self.backend_type not in _NEVER_TAKE_XIDS

    def describe(self) -> str:
        who = f"user {self.user or '?'} on database {self.database or '?'}"
        app = f", application {self.application_name}" if self.application_name else ""
        addr = f", from {self.client_addr}" if self.client_addr else ""
        su = ", superuser" if self.superuser else ""
        return f"pid {self.pid} ({who}{app}{addr}{su})"


# Server processes that take no transaction id of their own.
_NEVER_TAKE_XIDS = frozenset(
    {
        "autovacuum launcher",
        "logical replication launcher",
        "walsender",
        "walreceiver",
        "walwriter",
        "checkpointer",
        "background writer",
        "archiver",
        "startup",
        "parallel worker",  # works for a client's transaction, which holds the id
    }
)

WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE", "COMMIT", "END"})

_SESSIONS = (
    "SELECT a.pid, coalesce(a.backend_type, ''), coalesce(a.datname, ''), coalesce(a.usename, ''),"
    " coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''),"
    " coalesce(r.rolsuper, false), a.backend_xid IS NOT NULL,"
    " upper(split_part(ltrim(coalesce(a.query, '')), ' ', 1)), extract(epoch FROM a.state_change)::float8,"
    " extract(epoch FROM a.backend_start)::float8"
    " FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid"
    " WHERE a.pid <> pg_backend_pid()"
)


def sessions(conn: Conn, *, only_xid_holders: bool = False) -> list[Session]:
    """Other backends (pg_monitor sees every one)."""
    query = _SESSIONS + (" AND a.backend_xid IS NOT NULL" if only_xid_holders else "")
    return [
        Session(
            int(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            str(r[5]),
            bool(r[6]),
            bool(r[7]),
            str(r[8]).rstrip(";"),
            None if r[9] is None else float(r[9]),
            None if r[10] is None else float(r[10]),
        )
        for r in conn.execute(query).fetchall()
    ]


def server_epoch(conn: Conn) -> float:
    row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def is_own(s: Session, account: str) -> bool:
    """One of cloudmig's own sessions (its account, its application names)."""
    return s.user == account and s.application_name.startswith(OWN_APPLICATION_PREFIX)


def terminate_client_sessions(
    conn: Conn, *, may_end_superusers: bool, account: str = "", wait_seconds: float = TERMINATE_WAIT_SECONDS
) -> tuple[list[Session], list[Session]]:
    """End every client session but cloudmig's own (`account`'s, see is_own; walsenders are not
    client backends) and wait until they are gone: a backend ends its transaction (commit or abort)
    on its way out, and the proof that nothing writes must not start before. Returns the sessions
    ended (as they were just before) and the ones that could not be (superusers' sessions, for a
    non-superuser)."""
    ended: list[Session] = []
    kept: list[Session] = []
    for s in sessions(conn):
        if not s.is_client or is_own(s, account):
            continue
        if s.superuser and not may_end_superusers:
            kept.append(s)
            continue
        try:
            row = conn.execute("SELECT pg_terminate_backend(%s)", (s.pid,)).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            kept.append(s)
            continue
        if row and row[0]:
            ended.append(s)
    pids = [s.pid for s in ended]
    deadline = time.monotonic() + wait_seconds
    while pids and time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
        if not row or not row[0]:
            break
        time.sleep(0.01)
    return ended, kept
