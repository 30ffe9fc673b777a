"""Named queries against a source or a target; each takes an open psycopg connection.

Every query is parameterised; names of slots and roles travel as parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from cloudmig.domain.lsn import parse_lsn
from cloudmig.pg import compat

Conn = psycopg.Connection[tuple[Any, ...]]

# The keys of wal_receiver()'s row, whatever the server's major (compat.wal_receiver_select).
WAL_RECEIVER_COLUMNS = tuple(compat.wal_receiver_select(compat.MAX_MAJOR))


def _one(conn: Conn, query: Any, params: tuple[Any, ...] | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def server_version_num(conn: Conn) -> int:
    return int(_one(conn, "SELECT current_setting('server_version_num')"))


def server_major(conn: Conn) -> int:
    """The server's major, from the connection's startup parameters (no query)."""
    return compat.major_of_version_num(conn.info.server_version)


def current_wal_lsn(conn: Conn) -> int:
    """The primary's current WAL write position (allowed to any role, pg_monitor included)."""
    return parse_lsn(_one(conn, "SELECT pg_current_wal_lsn()::text"))


def is_in_recovery(conn: Conn) -> bool:
    return bool(_one(conn, "SELECT pg_is_in_recovery()"))


def postmaster_start_time(conn: Conn) -> float:
    """When the server started, in seconds since the epoch."""
    return float(_one(conn, "SELECT extract(epoch FROM pg_postmaster_start_time())"))


def replay_lsn(conn: Conn) -> int | None:
    """Last WAL position replayed by a standby (None on a server that never was one)."""
    value = _one(conn, "SELECT pg_last_wal_replay_lsn()::text")
    return None if value is None else parse_lsn(value)


def receive_lsn(conn: Conn) -> int | None:
    """Last WAL position received and flushed by a standby's WAL receiver."""
    value = _one(conn, "SELECT pg_last_wal_receive_lsn()::text")
    return None if value is None else parse_lsn(value)


def replay_timestamp(conn: Conn) -> str | None:
    """Commit time of the last transaction replayed, as text (None if none replayed yet)."""
    value = _one(conn, "SELECT pg_last_xact_replay_timestamp()::text")
    return None if value is None else str(value)


def wal_receiver(conn: Conn) -> dict[str, str] | None:
    """The row of pg_stat_wal_receiver as text values ("" for NULL), or None when no WAL receiver
    runs. conninfo is the server's obfuscated form (a password would show as ********). Needs a
    superuser or pg_read_all_stats to see the values. The keys are the 13+ column names on every
    major: before 13, written_lsn and flushed_lsn are both received_lsn; before 11 sender_host and
    sender_port are empty."""
    columns = compat.wal_receiver_select(server_major(conn))
    select = ", ".join(f"({expr})::text" for expr in columns.values())
    cur = conn.execute(f"SELECT {select} FROM pg_stat_wal_receiver")  # fixed expressions
    row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    return {col: "" if value is None else str(value) for col, value in zip(columns, row, strict=True)}


def timeline_id(conn: Conn) -> int:
    """The timeline the server is on. On a primary it comes from the current WAL file name, which
    changes at promotion (the checkpoint's timeline only after the next checkpoint); on a standby,
    the latest of the last restartpoint's and the WAL receiver's."""
    if is_in_recovery(conn):
        checkpoint = int(_one(conn, "SELECT timeline_id FROM pg_control_checkpoint()"))
        received = _one(conn, "SELECT received_tli FROM pg_stat_wal_receiver")
        return max(checkpoint, int(received or 0))
    walfile = str(_one(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())"))
    return int(walfile[:8], 16)


def identify_system(conn: Conn) -> dict[str, str]:
    """IDENTIFY_SYSTEM on a replication connection (sql.connect_replication): systemid, timeline,
    xlogpos, dbname (text values)."""
    cur = conn.execute("IDENTIFY_SYSTEM")
    row = cur.fetchone()
    if row is None or cur.description is None:
        raise RuntimeError("IDENTIFY_SYSTEM returned no row")
    return {d.name: _text(v) for d, v in zip(cur.description, row, strict=True)}


def _text(value: object) -> str:
    # A walsender's result columns may come back undecoded (bytes).
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def system_identifier(conn: Conn) -> str:
    return str(_one(conn, "SELECT system_identifier::text FROM pg_control_system()"))


def slot_exists(conn: Conn, name: str) -> bool:
    return bool(
        _one(conn, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (name,))
    )


def create_physical_slot(conn: Conn, name: str) -> None:
    """Create a physical slot reserving WAL right away; no error if it already exists."""
    if slot_exists(conn, name):
        return
    with contextlib.suppress(pgerrors.DuplicateObject):  # created concurrently
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (name,))


def terminate_slot_holder(conn: Conn, name: str) -> bool:
    """End the walsender streaming from a slot (e.g. left by a killed copy); True if there was one.
    The migration account may signal its own backends."""
    row = conn.execute(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
        " WHERE slot_name = %s AND active_pid IS NOT NULL",
        (name,),
    ).fetchone()
    return bool(row and row[0])


# The phases of pg_stat_progress_basebackup in which a sender's byte count moves while it works.
_STREAMING_PHASES = ("streaming database files", "transferring wal files")


def copy_sender(conn: Conn, application_name: str) -> tuple[bool, int | None]:
    """(whether a walsender of `application_name` runs, the bytes its base backup has sent):
    the count only where it moves while the sender works (13+, a streaming phase), else None.
    A copy's sender runs as the migration account: only its own sessions count, and it sees
    them in full."""
    if not compat.has_basebackup_progress(server_major(conn)):
        running = _one(
            conn,
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
            " WHERE backend_type = 'walsender' AND application_name = %s AND usename = current_user)",
            (application_name,),
        )
        return bool(running), None
    row = conn.execute(
        "SELECT count(*), max(p.backup_streamed) FILTER (WHERE p.phase = ANY(%s))"
        " FROM pg_stat_activity a LEFT JOIN pg_stat_progress_basebackup p USING (pid)"
        " WHERE a.backend_type = 'walsender' AND a.application_name = %s AND a.usename = current_user",
        (list(_STREAMING_PHASES), application_name),
    ).fetchone()
    assert row is not None
    return row[0] > 0, None if row[1] is None else int(row[1])


def terminate_walsenders(conn: Conn, name_prefix: str) -> int:
    """End every walsender of this account whose application_name starts with `name_prefix` and
    that holds no slot (a WAL stream is terminate_slot_holder's): the senders of a task's
    interrupted copies. Another role's session is not a copy's (and would refuse the signal). A
    sender that waits on a dropped connection would hold one of the source's max_wal_senders, and
    its backup, until TCP gives up. Returns how many were told to end."""
    return int(
        _one(
            conn,
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'walsender' AND left(application_name, length(%s)) = %s"
            " AND usename = current_user"
            " AND pid NOT IN (SELECT active_pid FROM pg_replication_slots WHERE active_pid IS NOT NULL)",
            (name_prefix, name_prefix),
        )
    )


def drop_slot(conn: Conn, name: str) -> None:
    """Drop a slot; no error if it does not exist. Raises ObjectInUse while a client streams from it."""
    if not slot_exists(conn, name):
        return
    with contextlib.suppress(pgerrors.UndefinedObject):  # dropped concurrently
        conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))


def slot_info(conn: Conn, name: str) -> dict[str, str] | None:
    """slot_type, active, restart_lsn, wal_status of a slot as text ("" for NULL), or None.
    wal_status exists since 13 ("" before)."""
    wal_status = "wal_status::text" if compat.has_slot_wal_limit(server_major(conn)) else "NULL::text"
    cur = conn.execute(
        "SELECT slot_type::text, active::text, restart_lsn::text, "
        + wal_status
        + " FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("slot_type", "active", "restart_lsn", "wal_status")
    return {k: "" if v is None else str(v) for k, v in zip(keys, row, strict=True)}


def role_exists(conn: Conn, name: str) -> bool:
    return bool(_one(conn, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (name,)))


def bootstrap_superuser(conn: Conn) -> str:
    """Name of the role created by initdb (OID 10): a superuser that exists on every cluster."""
    return str(_one(conn, "SELECT rolname FROM pg_roles WHERE oid = 10"))


def total_database_size(conn: Conn) -> int:
    """Sum of pg_database_size over all databases (needs CONNECT on each, or pg_read_all_stats)."""
    return int(_one(conn, "SELECT COALESCE(sum(pg_database_size(oid)), 0)::bigint FROM pg_database") or 0)


def settings(conn: Conn, names: Iterable[str]) -> dict[str, str]:
    """Current values of the named settings (unknown names are left out)."""
    wanted = list(names)
    cur = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (wanted,))
    return {str(name): str(value) for name, value in cur.fetchall()}


def tablespace_locations(conn: Conn) -> dict[str, str]:
    """User tablespaces (name → directory on the source host); plain base backups on the same host
    need a --tablespace-mapping for each."""
    cur = conn.execute(
        "SELECT spcname, pg_tablespace_location(oid) FROM pg_tablespace"
        " WHERE spcname NOT IN ('pg_default', 'pg_global')"
    )
    return {str(name): str(location) for name, location in cur.fetchall()}


class PromoteUnsupported(Exception):
    """pg_promote() does not exist on this server (before 12): use ctl.promote (pg_ctl promote)."""


def promote(conn: Conn, *, wait_seconds: int = 60) -> bool:
    """pg_promote(wait => true): True once the server left recovery within `wait_seconds`.
    Raises PromoteUnsupported before 12."""
    major = server_major(conn)
    if not compat.has_pg_promote(major):
        raise PromoteUnsupported(f"pg_promote() needs PostgreSQL 12 or later (server is {major})")
    return bool(_one(conn, "SELECT pg_promote(true, %s)", (int(wait_seconds),)))
