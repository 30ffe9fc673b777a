"""How cloudmig may make the source read-only at the switchover (the fence), decided from what the
migration account is allowed to do. Pure: pg/privileges.py reads the privileges, the assessment and
the switchover both decide with `choose_fence`.

- `alter_system` (PostgreSQL 15+, or a superuser): `ALTER SYSTEM SET default_transaction_read_only
  = on`, `pg_reload_conf()`, then end client sessions so that they reconnect read-only.
- `role_settings` (before 16, with CREATEROLE): `ALTER ROLE … SET default_transaction_read_only =
  on` for the application roles, then end their sessions. PostgreSQL 16 restricts CREATEROLE to roles
  the account administers, so it is not offered there.
- `none`: the operator must stop the application's writes before the switchover.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# The first major with GRANT ALTER SYSTEM ON PARAMETER.
PARAMETER_GRANTS_SINCE = 15
# The first major where CREATEROLE no longer covers every non-superuser role.
CREATEROLE_RESTRICTED_SINCE = 16

_BARE_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class FencePrivileges:
    """What the migration account may do on the source that matters for a fence."""

    major: int
    superuser: bool
    createrole: bool
    alter_system_dtro: bool  # ALTER SYSTEM on default_transaction_read_only (15+)
    execute_reload: bool  # EXECUTE on pg_reload_conf()
    signal_backend: bool  # member of pg_signal_backend (may end other roles' sessions)


class FenceMethod(StrEnum):
    ALTER_SYSTEM = "alter_system"
    ROLE_SETTINGS = "role_settings"
    NONE = "none"


def choose_fence(p: FencePrivileges) -> FenceMethod:
    """The fence the account can raise, the server-wide one first."""
    if p.superuser:
        return FenceMethod.ALTER_SYSTEM
    if p.major >= PARAMETER_GRANTS_SINCE and p.alter_system_dtro and p.execute_reload and p.signal_backend:
        return FenceMethod.ALTER_SYSTEM
    if p.major < CREATEROLE_RESTRICTED_SINCE and p.createrole and p.signal_backend:
        return FenceMethod.ROLE_SETTINGS
    return FenceMethod.NONE


def quote_role(name: str) -> str:
    """A role name as an SQL identifier (double-quoted unless it is plain lower case)."""
    if _BARE_IDENTIFIER.match(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def fence_grants(major: int, account: str) -> list[str]:
    """The statements (run by a superuser) that let `account` fence a source of this major."""
    role = quote_role(account)
    if major >= PARAMETER_GRANTS_SINCE:
        return [
            f"GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO {role};",
            f"GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {role};",
            f"GRANT pg_signal_backend TO {role};",
        ]
    # Before 15 only a superuser may ALTER SYSTEM: fence per role instead.
    return [f"ALTER ROLE {role} CREATEROLE;", f"GRANT pg_signal_backend TO {role};"]
