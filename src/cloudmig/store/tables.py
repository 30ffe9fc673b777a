"""The schema. Column values that are enums hold the stable strings of cloudmig.domain.enums."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite (which keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


access_keys = Table(
    "access_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("secret_enc", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("description", String(256), nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

nonces = Table(
    "nonces",
    metadata,
    Column("access_key_id", String(64), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("engine", String(32), nullable=False),
    Column("engine_version", String(16), nullable=False),
    Column("instance_class", String(64), nullable=False),
    Column("storage_gb", Integer, nullable=False),
    Column("port", Integer, nullable=False, unique=True),
    Column("description", String(256), nullable=False, server_default=""),
    Column("client_token", String(128), nullable=True, unique=True),
    # Set while a task has turned the instance into a standby or owns its data directory.
    Column("migration_task_id", BigInteger, nullable=True),
    Column("status_reason", Text, nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("modified_at", UTCDateTime(), nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    Column("instance_id", String(32), ForeignKey("instances.id"), nullable=False),
    Column("source_ip", String(256), nullable=False),
    Column("source_port", Integer, nullable=False),
    Column("source_account", String(128), nullable=False),
    Column("source_password_enc", Text, nullable=False),
    Column("source_category", String(32), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("replication_state", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    # Check report text (Detail's head) and the machine-readable results (JSON list).
    Column("report", Text, nullable=False, server_default=""),
    Column("check_results", Text, nullable=False, server_default="[]"),
    Column("replication_info", Text, nullable=False, server_default=""),
    # JSON objects written by the engine: full-copy progress, replication progress, switchover evidence.
    Column("progress", Text, nullable=False, server_default="{}"),
    Column("evidence", Text, nullable=False, server_default="{}"),
    # What the user asked for beyond creation (e.g. a switchover request), JSON.
    Column("request", Text, nullable=False, server_default="{}"),
    Column("switch_time", UTCDateTime(), nullable=True),
    # The physical slot the task holds on its source (unique per installation, never reused).
    Column("slot_name", String(63), nullable=True),
    # The typed failure of a failed task (errors.TaskFailure.code); Reason has its text.
    Column("reason_code", String(64), nullable=False, server_default=""),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("modified_at", UTCDateTime(), nullable=False),
    UniqueConstraint("instance_id", "kind", "name", name="uq_tasks_instance_kind_name"),
    Index("ix_tasks_instance_kind", "instance_id", "kind"),
    Index("ix_tasks_status", "status"),
    # Never reuse a task id (its slot name and the API's TaskId carry it), SQLite included.
    sqlite_autoincrement=True,
)

task_events = Table(
    "task_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("task_id", BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("section", String(64), nullable=False),
    Column("text", Text, nullable=False),
)

# Facts about this installation (its id: part of every slot name, so that two cloudmig services
# migrating from one source never touch each other's slots).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Replication slots to drop on a source: durable work, retried with back-off until it succeeds
# (also across restarts and source outages), so that no slot of cloudmig's holds a source's WAL.
slot_drops = Table(
    "slot_drops",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("slot_name", String(63), nullable=False),
    Column("source_ip", String(256), nullable=False),
    Column("source_port", Integer, nullable=False),
    Column("source_account", String(128), nullable=False),
    Column("source_password_enc", Text, nullable=False),
    # libpq TLS settings of the source connection (JSON), as the task had them.
    Column("source_tls", Text, nullable=False, server_default="{}"),
    Column("task_id", BigInteger, nullable=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source_ip", "source_port", "slot_name", name="uq_slot_drops_slot"),
)
