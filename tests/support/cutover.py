"""Switchover steps the cutover tests and the switchover benchmark share, through the official SDKs."""

from __future__ import annotations

import time
from typing import Any

from alibabacloud_rds20140815 import models as rds
from psycopg import sql as pgsql

from tests.support.flows import (
    connect_target_tcp,
    create_instance,
    create_migration,
    migration_item,
    raw_items,
    wait_for,
    wait_running,
    wait_streaming,
)

ACCOUNT = "migratetest"

# What a superuser runs on a PostgreSQL 15+ source so that cloudmig may fence it (issue 11).
FENCE_GRANTS = (
    "GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO {}",
    "GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {}",
    "GRANT pg_signal_backend TO {}",
)
FENCE_REVOKES = (
    "REVOKE ALTER SYSTEM ON PARAMETER default_transaction_read_only FROM {}",
    "REVOKE EXECUTE ON FUNCTION pg_reload_conf() FROM {}",
    "REVOKE pg_signal_backend FROM {}",
)


def grant_fence(source: Any, account: str = ACCOUNT) -> None:
    for stmt in FENCE_GRANTS:
        source.sql(pgsql.SQL(stmt).format(pgsql.Identifier(account)))


def revoke_fence(source: Any, account: str = ACCOUNT) -> None:
    for stmt in FENCE_REVOKES:
        source.sql(pgsql.SQL(stmt).format(pgsql.Identifier(account)))


def lift_fence_by_hand(source: Any) -> None:
    """What Detail tells the operator to run on the old source after a switchover."""
    source.sql("ALTER SYSTEM RESET default_transaction_read_only")
    source.sql("SELECT pg_reload_conf()")


def new_sessions_read_only(source: Any) -> bool:
    with source.connect() as conn:  # a fresh session: what the server hands to new backends
        row = conn.execute("SHOW default_transaction_read_only").fetchone()
    return row is not None and row[0] == "on"


def activate(client: Any, instance_id: str, force: bool = False) -> Any:
    return client.activate_migration_target_instance(
        rds.ActivateMigrationTargetInstanceRequest(
            dbinstance_name=instance_id, switch_time_mode="0", force_switch="1" if force else None
        )
    ).body


def activate_refusal(client: Any, instance_id: str) -> str | None:
    """The refusal's message when Activate is refused (IncorrectDBInstanceState), None when accepted."""
    from Tea.exceptions import TeaException

    try:
        activate(client, instance_id)
    except TeaException as exc:
        assert exc.code == "IncorrectDBInstanceState", f"{exc.code}: {exc.message}"
        return str(exc.message)
    return None


def evidence(service: Any, instance_id: str, task_id: int) -> dict[str, Any]:
    return dict(raw_items(service, instance_id, task_id=task_id)[0].get("Evidence") or {})


def raw_item(service: Any, instance_id: str, task_id: int) -> dict[str, Any]:
    return dict(raw_items(service, instance_id, task_id=task_id)[0])


def wait_success(
    client: Any, instance_id: str, task_id: int, timeout: float = 90, interval: float = 0.05
) -> Any:
    def done() -> Any:
        it = migration_item(client, instance_id, task_id)
        assert "[Task failed]" not in it.detail, it.detail
        return it if it.migrate_stage == "success" else None

    return wait_for(done, timeout, interval=interval, what="switchover to succeed")


def wait_outcome(client: Any, instance_id: str, task_id: int, timeout: float = 90) -> str:
    """`success`, or `increment` when the switchover was given up after the call returned."""

    def settled() -> str | None:
        it = migration_item(client, instance_id, task_id)
        assert "[Task failed]" not in it.detail, it.detail
        return it.migrate_stage if it.migrate_stage in ("success", "increment") else None

    return wait_for(settled, timeout, interval=0.05, what="the switchover to end")


def wait_increment(client: Any, instance_id: str, task_id: int, timeout: float = 60) -> Any:
    def back() -> Any:
        it = migration_item(client, instance_id, task_id)
        assert it.migrate_stage in ("switch", "increment"), it.migrate_stage
        return it if it.migrate_stage == "increment" else None

    return wait_for(back, timeout, interval=0.1, what="task back in increment")


def timeline(attr: Any) -> int:
    with connect_target_tcp(attr) as conn:
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        wal = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None and wal is not None
    return max(int(row[0]), int(str(wal[0])[:8], 16))


def migrate(client: Any, source: Any, timeout: float = 240) -> tuple[str, int, Any]:
    """A new instance and a migration from `source` up to streaming: (instance id, task id, attr)."""
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)
    task_id = int(create_migration(client, instance_id, source).task_id)
    wait_streaming(client, instance_id, task_id, timeout=timeout)
    return instance_id, task_id, attr


def elapsed(t0: float) -> float:
    return round(time.monotonic() - t0, 3)
