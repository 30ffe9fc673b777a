"""What the migration account may do on a source, read with its own connection."""

from __future__ import annotations

from typing import Any

import psycopg

from cloudmig.domain.fence import FencePrivileges

Conn = psycopg.Connection[tuple[Any, ...]]


def fence_privileges(conn: Conn) -> FencePrivileges:
    major = conn.info.server_version // 10000
    alter_system = (
        "has_parameter_privilege('default_transaction_read_only', 'ALTER SYSTEM')" if major >= 15 else "false"
    )
    row = conn.execute(
        "SELECT r.rolsuper, r.rolcreaterole, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),"
        " has_function_privilege('pg_reload_conf()', 'EXECUTE'), "
        + alter_system
        + " FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    if row is None:
        raise LookupError("the migration account is not in pg_roles")
    superuser, createrole, signal, reload, alter = (bool(v) for v in row)
    return FencePrivileges(
        major=major,
        superuser=superuser,
        createrole=createrole,
        alter_system_dtro=alter,
        execute_reload=reload,
        signal_backend=signal,
    )
