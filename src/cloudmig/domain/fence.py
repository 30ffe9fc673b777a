"""Which fence cloudmig can put on a source at the switchover, from the migration account's
privileges, and the grants that would let it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FenceMethod(StrEnum):
    ALTER_SYSTEM = "alter_system"  # ALTER SYSTEM SET default_transaction_read_only = on; reload
    ROLE_SETTINGS = "role_settings"  # ALTER ROLE ... SET default_transaction_read_only = on (before 16)
    NONE = "none"  # the operator stops the writes; cloudmig proves the source quiet


@dataclass(frozen=True)
class FencePrivileges:
    major: int
    superuser: bool
    createrole: bool
    alter_system_dtro: bool  # ALTER SYSTEM ON PARAMETER default_transaction_read_only (15+)
    execute_reload: bool  # EXECUTE on pg_reload_conf()
    signal_backend: bool  # member of pg_signal_backend: may end other roles' sessions


def choose_fence(p: FencePrivileges) -> FenceMethod:
    if p.superuser:
        return FenceMethod.ALTER_SYSTEM
    if p.major >= 15 and p.alter_system_dtro and p.execute_reload and p.signal_backend:
        return FenceMethod.ALTER_SYSTEM
    # Since 16, CREATEROLE only reaches roles the account has ADMIN OPTION on.
    if p.major < 16 and p.createrole and p.signal_backend:
        return FenceMethod.ROLE_SETTINGS
    return FenceMethod.NONE


def _ident(name: str) -> str:
    return name if name.isidentifier() and name.islower() else '"' + name.replace('"', '""') + '"'


def fence_grants(major: int, account: str) -> list[str]:
    """The statements (run by a superuser on the source) that let `account` fence the source."""
    who = _ident(account)
    if major >= 15:
        return [
            f"GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO {who};",
            f"GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {who};",
            f"GRANT pg_signal_backend TO {who};",
        ]
    # Before 15 ALTER SYSTEM is for superusers only; per-role settings need CREATEROLE.
    return [f"ALTER ROLE {who} CREATEROLE;", f"GRANT pg_signal_backend TO {who};"]
