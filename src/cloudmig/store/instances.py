"""Queries on managed instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from cloudmig.domain.enums import InstanceStatus, TaskStatus
from cloudmig.store.records import InstanceRecord
from cloudmig.store.tables import instances, task_events, tasks


def insert_instance(engine: Engine, values: dict[str, Any]) -> None:
    with engine.begin() as c:
        c.execute(insert(instances).values(**values))


def get_instance(engine: Engine, instance_id: str) -> InstanceRecord | None:
    with engine.connect() as c:
        row = c.execute(select(instances).where(instances.c.id == instance_id)).mappings().first()
    return InstanceRecord.from_row(row) if row else None


def get_by_client_token(engine: Engine, token: str) -> InstanceRecord | None:
    with engine.connect() as c:
        row = c.execute(select(instances).where(instances.c.client_token == token)).mappings().first()
    return InstanceRecord.from_row(row) if row else None


def list_instances(
    engine: Engine,
    *,
    instance_id: str | None = None,
    db_engine: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> tuple[int, list[InstanceRecord]]:
    conds = []
    if instance_id:
        conds.append(instances.c.id == instance_id)
    if db_engine:
        conds.append(func.lower(instances.c.engine) == db_engine.lower())
    q = select(instances).where(*conds)
    count = select(func.count()).select_from(instances).where(*conds)
    q = q.order_by(instances.c.created_at, instances.c.id).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as c:
        total = int(c.execute(count).scalar_one())
        rows = c.execute(q).mappings().all()
    return total, [InstanceRecord.from_row(r) for r in rows]


def used_ports(engine: Engine) -> set[int]:
    with engine.connect() as c:
        return {int(p) for p in c.execute(select(instances.c.port)).scalars()}


def in_status(engine: Engine, *statuses: InstanceStatus) -> list[InstanceRecord]:
    with engine.connect() as c:
        rows = (
            c.execute(select(instances).where(instances.c.status.in_([s.value for s in statuses])))
            .mappings()
            .all()
        )
    return [InstanceRecord.from_row(r) for r in rows]


def set_status(
    engine: Engine, instance_id: str, status: InstanceStatus, now: datetime, *, reason: str = ""
) -> None:
    with engine.begin() as c:
        c.execute(
            update(instances)
            .where(instances.c.id == instance_id)
            .values(status=status.value, status_reason=reason, modified_at=now)
        )


def release_migration(engine: Engine, instance_id: str, task_id: int, now: datetime) -> None:
    with engine.begin() as c:
        c.execute(
            update(instances)
            .where(instances.c.id == instance_id, instances.c.migration_task_id == task_id)
            .values(migration_task_id=None, modified_at=now)
        )


def release_succeeded(engine: Engine, now: datetime) -> list[str]:
    """Release the instances still held by a task that succeeded (a service stopped between the
    switchover's last step and the release): held, a new primary would not be started again when
    its server goes down (engine/loop.py keeps only free instances up)."""
    done = select(tasks.c.id).where(tasks.c.status == TaskStatus.SUCCEEDED.value)
    with engine.begin() as c:
        held = [
            str(i)
            for i in c.execute(
                select(instances.c.id).where(instances.c.migration_task_id.in_(done))
            ).scalars()
        ]
        if held:
            c.execute(
                update(instances)
                .where(instances.c.id.in_(held), instances.c.migration_task_id.in_(done))
                .values(migration_task_id=None, modified_at=now)
            )
    return held


def delete_instance(engine: Engine, instance_id: str) -> None:
    with engine.begin() as c:
        task_ids = select(tasks.c.id).where(tasks.c.instance_id == instance_id)
        c.execute(task_events.delete().where(task_events.c.task_id.in_(task_ids)))
        c.execute(tasks.delete().where(tasks.c.instance_id == instance_id))
        c.execute(instances.delete().where(instances.c.id == instance_id))
