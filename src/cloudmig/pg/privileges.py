"""What the session's role may do on a server, for the switchover fence (domain/fence.py decides)."""

from __future__ import annotations

from typing import Any

import psycopg

from cloudmig.domain.fence import PARAMETER_GRANTS_SINCE, FencePrivileges

Conn = psycopg.Connection[tuple[Any, ...]]


def fence_privileges(conn: Conn) -> FencePrivileges:
    """The session role's privileges that matter for fencing the server (read-only queries)."""
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int / 10000, r.rolsuper, r.rolcreaterole,"
        " has_function_privilege('pg_catalog.pg_reload_conf()', 'EXECUTE'),"
        " pg_has_role('pg_signal_backend', 'MEMBER')"
        " FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    if row is None:
        raise LookupError("the session's role is not in pg_roles")
    major = int(row[0])
    alter_system = False
    if major >= PARAMETER_GRANTS_SINCE:  # has_parameter_privilege exists from 15 on
        granted = conn.execute(
            "SELECT has_parameter_privilege('default_transaction_read_only', 'ALTER SYSTEM')"
        ).fetchone()
        alter_system = bool(granted and granted[0])
    return FencePrivileges(
        major=major,
        superuser=bool(row[1]),
        createrole=bool(row[2]),
        alter_system_dtro=alter_system,
        execute_reload=bool(row[3]),
        signal_backend=bool(row[4]),
    )
