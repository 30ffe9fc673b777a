"""Named read-only catalog queries the assessment runs on a source or a target.

Each takes an open psycopg connection and returns plain values; every query is parameterised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]


def _rows(conn: Conn, query: Any, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    return list(conn.execute(query, params).fetchall())


def _column(conn: Conn, query: Any, params: tuple[Any, ...] | None = None) -> list[str]:
    return [str(row[0]) for row in _rows(conn, query, params)]


def read_only_session(conn: Conn) -> None:
    """Make every later transaction of this session read-only (a guard: the assessment only reads)."""
    conn.execute("SET default_transaction_read_only = on")


# ---- the account and the server -------------------------------------------------------------------


def account_attributes(conn: Conn) -> tuple[bool, bool, bool, bool] | None:
    """(superuser, replication, createrole, member of pg_monitor) of the session's role."""
    row = conn.execute(
        "SELECT rolsuper, rolreplication, rolcreaterole, pg_has_role(current_user, 'pg_monitor', 'MEMBER')"
        " FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    return None if row is None else (bool(row[0]), bool(row[1]), bool(row[2]), bool(row[3]))


def raw_settings(conn: Conn, names: Iterable[str]) -> dict[str, str]:
    """pg_settings.setting (the base unit, no unit suffix) of the named settings that exist."""
    return {
        str(name): str(value)
        for name, value in _rows(
            conn, "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
        )
    }


def shown_settings(conn: Conn) -> dict[str, str]:
    """Every setting the session may see, in SHOW form, by lower-case name."""
    rows = _rows(conn, "SELECT name, current_setting(name) FROM pg_settings")
    return {str(name).lower(): str(value) for name, value in rows}


def config_file_settings(conn: Conn) -> list[tuple[str, str]]:
    """(name, SHOW value) of the settings whose value comes from a configuration file
    (postgresql.conf, its includes, postgresql.auto.conf)."""
    rows = _rows(
        conn,
        "SELECT name, current_setting(name) FROM pg_settings WHERE source = 'configuration file' ORDER BY name",
    )
    return [(str(name), str(value)) for name, value in rows]


@dataclass(frozen=True)
class FileSetting:
    """The last entry for a setting in the configuration files, beside what the server runs with."""

    name: str
    in_file: str  # as written in the file
    shown: str | None  # SHOW form now (None: an unknown, e.g. extension, setting)
    raw: str | None  # pg_settings.setting (base unit)
    unit: str | None
    vartype: str | None


def file_settings(conn: Conn) -> list[FileSetting]:
    """The last valid configuration-file entry of every setting (pg_file_settings re-reads the files,
    so this includes what is not applied yet). Needs superuser, or SELECT on pg_file_settings and
    EXECUTE on pg_show_all_file_settings()."""
    rows = _rows(
        conn,
        "SELECT f.name, f.setting, current_setting(f.name, true), s.setting, s.unit, s.vartype FROM ("
        " SELECT DISTINCT ON (lower(name)) name, setting, error FROM pg_file_settings"
        " ORDER BY lower(name), seqno DESC) f"
        " LEFT JOIN pg_settings s ON lower(s.name) = lower(f.name)"
        " WHERE f.error IS NULL OR f.error = 'setting could not be applied'"
        " ORDER BY f.name",
    )
    return [
        FileSetting(str(name), str(in_file or ""), _text(shown), _text(raw), _text(unit), _text(vartype))
        for name, in_file, shown, raw, unit, vartype in rows
    ]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def wal_senders_in_use(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
    return 0 if row is None else int(row[0])


def replication_slots(conn: Conn) -> list[tuple[str, str]]:
    """(slot_name, slot_type) of every replication slot."""
    rows = _rows(conn, "SELECT slot_name, slot_type FROM pg_replication_slots ORDER BY slot_name")
    return [(str(name), str(kind)) for name, kind in rows]


def role_names(conn: Conn) -> list[str]:
    return _column(conn, "SELECT rolname FROM pg_roles ORDER BY rolname")


def tablespace_names(conn: Conn) -> list[str]:
    return _column(conn, "SELECT spcname FROM pg_tablespace ORDER BY spcname")


def session_uses_ssl(conn: Conn) -> bool:
    """Whether this very connection is encrypted (pg_stat_ssl of the session's own backend)."""
    row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    return bool(row and row[0])


# ---- databases ------------------------------------------------------------------------------------


def databases(conn: Conn, major: int | None) -> list[tuple[str, bool, str | None]]:
    """(name, allows connections, libc collation version or None) of every database.

    From 15 the version the database was created with (datcollversion, libc databases only); before,
    the source host's glibc version for every database with a real libc locale (not C or POSIX).
    """
    if major is not None and major >= 15:
        query = (
            "SELECT datname, datallowconn, CASE WHEN datlocprovider = 'c' THEN datcollversion END"
            " FROM pg_database ORDER BY datname"
        )
    else:
        query = (
            "SELECT datname, datallowconn,"
            " CASE WHEN datcollate IN ('C', 'POSIX') OR datcollate LIKE 'C.%%' THEN NULL"
            " ELSE (SELECT v FROM (SELECT pg_collation_actual_version(oid) AS v FROM pg_collation"
            "       WHERE collprovider = 'c') s WHERE v IS NOT NULL LIMIT 1) END"
            " FROM pg_database ORDER BY datname"
        )
    return [(str(n), bool(allow), None if v is None else str(v)) for n, allow, v in _rows(conn, query)]


def database_names(conn: Conn) -> list[str]:
    return _column(conn, "SELECT datname FROM pg_database ORDER BY 1")


def database_size(conn: Conn, name: str) -> int:
    row = conn.execute("SELECT pg_database_size(%s::name)", (name,)).fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"no size for database {name}")
    return int(row[0])


# ---- inside one database --------------------------------------------------------------------------


def installed_extensions(conn: Conn) -> list[str]:
    return _column(conn, "SELECT extname FROM pg_extension ORDER BY extname")


def unlogged_tables(conn: Conn) -> list[str]:
    """schema.name of the UNLOGGED tables of the connected database (their contents are not in WAL)."""
    return _column(
        conn,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p') ORDER BY 1",
    )


def user_tables(conn: Conn) -> list[str]:
    """schema.name of the tables (plain, partitioned, foreign) outside the system schemas."""
    return _column(
        conn,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'f')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
        " ORDER BY 1",
    )


def available_extensions(conn: Conn) -> frozenset[str]:
    return frozenset(_column(conn, "SELECT name FROM pg_available_extensions"))


def libc_collation_version(conn: Conn, major: int) -> str | None:
    """The glibc collation version the server would use: template1's (15+), else any libc collation's."""
    if major >= 15:
        row = conn.execute(
            "SELECT CASE WHEN datlocprovider = 'c' THEN"
            " coalesce(datcollversion, pg_database_collation_actual_version(oid)) END"
            " FROM pg_database WHERE datname = 'template1'"
        ).fetchone()
        if row is not None and row[0] is not None:
            return str(row[0])
    # Every libc collation reports the same (glibc) version; C and POSIX report none.
    row = conn.execute(
        "SELECT v FROM (SELECT pg_collation_actual_version(oid) AS v FROM pg_collation"
        " WHERE collprovider = 'c') s WHERE v IS NOT NULL LIMIT 1"
    ).fetchone()
    return str(row[0]) if row is not None and row[0] is not None else None
