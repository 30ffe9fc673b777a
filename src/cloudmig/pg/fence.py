"""The switchover fence on a source: new transactions read-only, by ALTER SYSTEM (PostgreSQL 15+
with `GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only`, or a superuser) or by
per-role settings (CREATEROLE before 16). Raising and lifting are idempotent."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[tuple[Any, ...]]

SETTING = "default_transaction_read_only"
# How long a reload may take to reach new sessions, and to reach this one (a setting of the
# account's own can hide it from this session: fresh sessions are asked then).
RELOAD_WAIT_SECONDS = 10.0
OWN_SESSION_WAIT_SECONDS = 0.5

LIFT_ALTER_SYSTEM = f"ALTER SYSTEM RESET {SETTING}; SELECT pg_reload_conf();"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lift_role_hint(roles: list[str]) -> str:
    return " ".join(f"ALTER ROLE {_ident(r)} RESET {SETTING};" for r in roles)


def auto_conf_value(conn: Conn) -> str | None:
    """The value postgresql.auto.conf (ALTER SYSTEM) gives the setting, if it gives one.

    pg_settings says which file the value in effect came from (to pg_read_all_settings members,
    which pg_monitor includes): postgresql.auto.conf is read last, so if it sets the parameter that
    is where the value comes from, unless a role or database setting beats it (the fence reports
    that setting; this then reads as unset). pg_file_settings, for superusers, when the source of
    the value is hidden."""
    row = conn.execute(
        "SELECT setting, source, sourcefile FROM pg_settings WHERE name = %s", (SETTING,)
    ).fetchone()
    if row is not None and (row[2] is not None or row[1] != "configuration file"):
        auto = row[1] == "configuration file" and str(row[2]).endswith("postgresql.auto.conf")
        return str(row[0]) if auto else None
    try:
        row = conn.execute(
            "SELECT setting FROM pg_file_settings WHERE name = %s AND sourcefile LIKE %s"
            " ORDER BY seqno DESC LIMIT 1",
            (SETTING, "%postgresql.auto.conf"),
        ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None  # nothing tells: lifting the fence resets the parameter
    return None if row is None else str(row[0])


def _reload_and_wait(conn: Conn, connect: Any, expected: str) -> None:
    """Reload, then wait until new sessions get `expected`. This session sees the new value once
    the postmaster has re-read the file and passed the reload on (new sessions then get it too);
    unless a setting of the account's own hides it from this session: then ask fresh sessions."""
    conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + OWN_SESSION_WAIT_SECONDS
    while time.monotonic() < deadline:
        if _current(conn) == expected:
            return
        time.sleep(0.005)
    deadline = time.monotonic() + RELOAD_WAIT_SECONDS
    while True:
        # A new session shows what the postmaster hands to new backends.
        with connect() as fresh:
            if _current(fresh) == expected:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{SETTING} did not become {expected} after a reload")
        time.sleep(0.05)


def _current(conn: Conn) -> str | None:
    row = conn.execute("SELECT current_setting(%s)", (SETTING,)).fetchone()
    return None if row is None else str(row[0])


def raise_by_alter_system(conn: Conn, connect: Any) -> None:
    conn.execute(f"ALTER SYSTEM SET {SETTING} = on")
    _reload_and_wait(conn, connect, "on")


def lift_by_alter_system(conn: Conn, connect: Any, previous: str | None) -> None:
    if previous is None:
        conn.execute(f"ALTER SYSTEM RESET {SETTING}")
    else:
        conn.execute(sql.SQL("ALTER SYSTEM SET " + SETTING + " = {}").format(sql.Literal(previous)))
    conn.execute("SELECT pg_reload_conf()")


def fenceable_roles(conn: Conn) -> list[str]:
    """Login roles a CREATEROLE account may fence: not superusers, not the account itself, and
    without a role-wide setting of their own for the parameter (which the fence must not clobber)."""
    rows = conn.execute(
        "SELECT r.rolname FROM pg_roles r"
        " WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> current_user"
        " AND r.rolname NOT LIKE 'pg\\_%%'"
        " AND NOT EXISTS (SELECT 1 FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0"
        "   AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE %s))"
        " ORDER BY 1",
        (SETTING + "=%",),
    ).fetchall()
    return [str(r[0]) for r in rows]


def raise_for_role(conn: Conn, role: str) -> None:
    conn.execute(sql.SQL("ALTER ROLE {} SET " + SETTING + " = on").format(sql.Identifier(role)))


def lift_for_role(conn: Conn, role: str) -> None:
    try:
        conn.execute(sql.SQL("ALTER ROLE {} RESET " + SETTING).format(sql.Identifier(role)))
    except psycopg.errors.UndefinedObject:  # the role was dropped meanwhile
        return


def new_sessions_read_only(conn: Conn) -> bool:
    """Whether a new session of this account gets read-only transactions (the ALTER SYSTEM fence)."""
    row = conn.execute("SELECT current_setting(%s)", (SETTING,)).fetchone()
    return row is not None and str(row[0]) == "on"


def roles_still_fenced(conn: Conn, roles: list[str]) -> bool:
    if not roles:
        return False
    row = conn.execute(
        "SELECT count(DISTINCT r.rolname) FROM pg_roles r JOIN pg_db_role_setting s ON s.setrole = r.oid"
        " AND s.setdatabase = 0 WHERE r.rolname = ANY(%s)"
        " AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c = %s)",
        (roles, SETTING + "=on"),
    ).fetchone()
    return row is not None and int(row[0]) == len(roles)


def overriding_settings(conn: Conn, method_role_settings: bool) -> list[str]:
    """Role or database settings of the parameter that beat the fence: new sessions they apply to
    are not read-only. ALTER SYSTEM loses to every role and database setting; a role-wide setting
    loses only to settings of roles it could not fence (their own role-wide value, or one for a
    single database)."""
    rows = conn.execute(
        "SELECT coalesce(r.rolname, ''), coalesce(d.datname, ''), c FROM pg_db_role_setting s"
        " LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase,"
        " unnest(s.setconfig) c WHERE c LIKE %s AND c <> %s",
        (SETTING + "=%", SETTING + "=on"),
    ).fetchall()
    out: list[str] = []
    for role, db, setting in rows:
        if method_role_settings and not role:
            continue  # a database's setting loses to the fence's role-wide one
        where = " in ".join(x for x in (f"role {role}" if role else "", f"database {db}" if db else "") if x)
        out.append(f"{where} sets {setting}")
    return out
