"""Quick read-only looks at a managed instance, used before a migration is accepted."""

from __future__ import annotations

import psycopg

from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.store.records import InstanceRecord

_SYSTEM_DATABASES = ("template0", "template1", "postgres")


def non_empty_reason(provider: LocalInstanceProvider, inst: InstanceRecord) -> str | None:
    """Why the instance cannot receive a migration (a database or a table exists), or None."""
    try:
        with provider.connect_admin(inst.id, inst.port) as conn:
            row = conn.execute(
                "SELECT datname FROM pg_database WHERE NOT (datname = ANY(%s)) ORDER BY datname LIMIT 1",
                (list(_SYSTEM_DATABASES),),
            ).fetchone()
            if row:
                return f"database {row[0]} exists"
            row = conn.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r','p','v','m','S','f')"
                " AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname !~ '^pg_toast'"
                " LIMIT 1"
            ).fetchone()
            if row:
                return f"relation {row[0]} exists in database postgres"
    except psycopg.OperationalError as exc:
        # The admin role only exists on an instance cloudmig initialised and never migrated into.
        return f"cloudmig cannot inspect it ({exc.sqlstate or 'connection failed'})"
    return None
