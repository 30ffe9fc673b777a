"""Queries on precheck and migration tasks, their leases and their events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, or_, select, update

from cloudmig.domain.detail import Event
from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskKind, TaskStatus
from cloudmig.domain.transitions import TRANSITIONS, Transition, sources_of, target_stage
from cloudmig.store.records import TaskRecord
from cloudmig.store.tables import instances, task_events, tasks

_JSON_COLUMNS = frozenset({"check_results", "progress", "evidence", "request"})


@dataclass(frozen=True)
class TaskFilter:
    instance_id: str
    kind: TaskKind
    task_id: int | None = None
    task_name: str | None = None
    source_ip: str | None = None
    source_port: int | None = None


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k in _JSON_COLUMNS and not isinstance(v, str):
            out[k] = json.dumps(v, sort_keys=True)
        elif hasattr(v, "value") and k in {"kind", "stage", "replication_state", "status"}:
            out[k] = v.value
        else:
            out[k] = v
    return out


def insert_task(engine: Engine, values: dict[str, Any]) -> int:
    with engine.begin() as c:
        res = c.execute(insert(tasks).values(**_encode(values)))
        pk = res.inserted_primary_key
    assert pk is not None
    return int(pk[0])


def get_task(engine: Engine, task_id: int) -> TaskRecord | None:
    with engine.connect() as c:
        row = c.execute(select(tasks).where(tasks.c.id == task_id)).mappings().first()
    return TaskRecord.from_row(row) if row else None


def find_tasks(engine: Engine, f: TaskFilter, *, offset: int, limit: int) -> tuple[int, list[TaskRecord]]:
    conds = [tasks.c.instance_id == f.instance_id, tasks.c.kind == f.kind.value]
    if f.task_id is not None:
        conds.append(tasks.c.id == f.task_id)
    if f.task_name:
        conds.append(tasks.c.name == f.task_name)
    if f.source_ip:
        conds.append(tasks.c.source_ip == f.source_ip)
    if f.source_port is not None:
        conds.append(tasks.c.source_port == f.source_port)
    with engine.connect() as c:
        total = int(c.execute(select(func.count()).select_from(tasks).where(*conds)).scalar_one())
        rows = (
            c.execute(select(tasks).where(*conds).order_by(tasks.c.id.desc()).offset(offset).limit(limit))
            .mappings()
            .all()
        )
    return total, [TaskRecord.from_row(r) for r in rows]


def name_taken(engine: Engine, instance_id: str, kind: TaskKind, name: str) -> bool:
    with engine.connect() as c:
        n = c.execute(
            select(func.count())
            .select_from(tasks)
            .where(tasks.c.instance_id == instance_id, tasks.c.kind == kind.value, tasks.c.name == name)
        ).scalar_one()
    return int(n) > 0


def update_task(engine: Engine, task_id: int, now: datetime, **values: Any) -> None:
    with engine.begin() as c:
        c.execute(update(tasks).where(tasks.c.id == task_id).values(modified_at=now, **_encode(values)))


def update_task_quietly(engine: Engine, task_id: int, **values: Any) -> None:
    """Observation refreshes that must not count as a modification (GmtModified stays)."""
    with engine.begin() as c:
        c.execute(update(tasks).where(tasks.c.id == task_id).values(**_encode(values)))


def claimable_ids(engine: Engine, now: datetime) -> list[int]:
    with engine.connect() as c:
        return [
            int(i)
            for i in c.execute(
                select(tasks.c.id).where(
                    tasks.c.status == TaskStatus.RUNNING.value,
                    or_(tasks.c.lease_owner.is_(None), tasks.c.lease_expires < now),
                )
            ).scalars()
        ]


def unreverted_ids(engine: Engine, now: datetime) -> list[int]:
    """Failed tasks whose revert has not finished, with no live lease: the revert's last step
    releases the instance, so a failed task that still holds a Running instance was cut short (the
    service stopped, or a step of the revert failed) and its revert is to be run again."""
    with engine.connect() as c:
        return [
            int(i)
            for i in c.execute(
                select(tasks.c.id)
                .join(instances, instances.c.migration_task_id == tasks.c.id)
                .where(
                    tasks.c.status == TaskStatus.FAILED.value,
                    instances.c.status == InstanceStatus.RUNNING.value,
                    or_(tasks.c.lease_owner.is_(None), tasks.c.lease_expires < now),
                )
            ).scalars()
        ]


def try_claim(
    engine: Engine,
    task_id: int,
    owner: str,
    now: datetime,
    ttl: float,
    status: TaskStatus = TaskStatus.RUNNING,
) -> bool:
    """Take the task's lease if it is in `status` and nobody else holds a live lease on it."""
    with engine.begin() as c:
        res = c.execute(
            update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.status == status.value,
                or_(tasks.c.lease_owner.is_(None), tasks.c.lease_expires < now, tasks.c.lease_owner == owner),
            )
            .values(lease_owner=owner, lease_expires=now + timedelta(seconds=ttl))
        )
    return res.rowcount == 1


def renew_leases(engine: Engine, owner: str, task_ids: list[int], now: datetime, ttl: float) -> set[int]:
    """Extend this owner's leases; returns the ids still held (a lost lease means stop working on it)."""
    if not task_ids:
        return set()
    with engine.begin() as c:
        c.execute(
            update(tasks)
            .where(tasks.c.id.in_(task_ids), tasks.c.lease_owner == owner)
            .values(lease_expires=now + timedelta(seconds=ttl))
        )
        held = c.execute(select(tasks.c.id).where(tasks.c.id.in_(task_ids), tasks.c.lease_owner == owner))
        return {int(i) for i in held.scalars()}


def release_lease(engine: Engine, task_id: int, owner: str) -> None:
    with engine.begin() as c:
        c.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires=None)
        )


def add_event(engine: Engine, task_id: int, at: datetime, section: str, text: str) -> None:
    with engine.begin() as c:
        c.execute(insert(task_events).values(task_id=task_id, at=at, section=section, text=text))
        c.execute(update(tasks).where(tasks.c.id == task_id).values(modified_at=at))


def events_for(engine: Engine, task_ids: list[int]) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {i: [] for i in task_ids}
    if not task_ids:
        return out
    with engine.connect() as c:
        rows = c.execute(
            select(task_events).where(task_events.c.task_id.in_(task_ids)).order_by(task_events.c.id)
        ).mappings()
        for r in rows:
            out[int(r["task_id"])].append(Event(r["at"], r["section"], r["text"]))
    return out


class _InstanceTaken(Exception):
    """Raised inside a transaction to roll back a task insert whose instance is already claimed."""


def insert_task_claiming_instance(engine: Engine, values: dict[str, Any], now: datetime) -> int | None:
    """Insert a migration task and make it the instance's only one, atomically; None if taken."""
    instance_id = values["instance_id"]
    try:
        with engine.begin() as c:
            res = c.execute(insert(tasks).values(**_encode(values)))
            assert res.inserted_primary_key is not None
            task_id = int(res.inserted_primary_key[0])
            claimed = c.execute(
                update(instances)
                .where(
                    instances.c.id == instance_id,
                    instances.c.status == InstanceStatus.RUNNING.value,
                    instances.c.migration_task_id.is_(None),
                )
                .values(migration_task_id=task_id, modified_at=now)
            )
            if claimed.rowcount != 1:
                raise _InstanceTaken
    except _InstanceTaken:
        return None
    return task_id


def tasks_of_instance(engine: Engine, instance_id: str, kind: TaskKind) -> list[TaskRecord]:
    with engine.connect() as c:
        rows = (
            c.execute(select(tasks).where(tasks.c.instance_id == instance_id, tasks.c.kind == kind.value))
            .mappings()
            .all()
        )
    return [TaskRecord.from_row(r) for r in rows]


def release_foreign_leases(engine: Engine, owner: str) -> int:
    """Drop leases of other owners. Only safe while this process holds the data dir's lock."""
    with engine.begin() as c:
        res = c.execute(
            update(tasks)
            .where(tasks.c.lease_owner.is_not(None), tasks.c.lease_owner != owner)
            .values(lease_owner=None, lease_expires=None)
        )
    return int(res.rowcount)


def transition(
    engine: Engine,
    task_id: int,
    move: Transition,
    now: datetime,
    *,
    current: MigrateStage | None = None,
    **values: Any,
) -> bool:
    """Move a running task's stage by a named transition, atomically: only if it is still running
    and in a stage the transition may start from (`current` narrows that to one stage). False when
    the task changed meanwhile (a concurrent request, a cancellation)."""
    sources = sources_of(move)
    if current is not None:
        target_stage(current, move)  # raises IllegalTransition
        sources = frozenset({current})
    stage = TRANSITIONS[move][1]
    with engine.begin() as c:
        res = c.execute(
            update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.status == TaskStatus.RUNNING.value,
                tasks.c.stage.in_([s.value for s in sources]),
            )
            .values(modified_at=now, stage=stage.value, **_encode(values))
        )
    return res.rowcount == 1


def succeeded_migrations(engine: Engine, switched_since: datetime) -> list[TaskRecord]:
    with engine.connect() as c:
        rows = (
            c.execute(
                select(tasks).where(
                    tasks.c.kind == TaskKind.MIGRATION.value,
                    tasks.c.status == TaskStatus.SUCCEEDED.value,
                    tasks.c.switch_time >= switched_since,
                )
            )
            .mappings()
            .all()
        )
    return [TaskRecord.from_row(r) for r in rows]


def running_among(engine: Engine, task_ids: list[int]) -> set[int]:
    if not task_ids:
        return set()
    with engine.connect() as c:
        rows = c.execute(
            select(tasks.c.id).where(tasks.c.id.in_(task_ids), tasks.c.status == TaskStatus.RUNNING.value)
        )
        return {int(i) for i in rows.scalars()}


def running_migrations(engine: Engine) -> list[TaskRecord]:
    with engine.connect() as c:
        rows = (
            c.execute(
                select(tasks).where(
                    tasks.c.kind == TaskKind.MIGRATION.value, tasks.c.status == TaskStatus.RUNNING.value
                )
            )
            .mappings()
            .all()
        )
    return [TaskRecord.from_row(r) for r in rows]


def task_with_slot(engine: Engine, slot_name: str) -> TaskRecord | None:
    with engine.connect() as c:
        row = c.execute(select(tasks).where(tasks.c.slot_name == slot_name)).mappings().first()
    return TaskRecord.from_row(row) if row else None


def known_sources(engine: Engine, kind: TaskKind) -> list[TaskRecord]:
    """The newest task of each distinct source (address, port, account) cloudmig has used."""
    newest = (
        select(func.max(tasks.c.id))
        .where(tasks.c.kind == kind.value)
        .group_by(tasks.c.source_ip, tasks.c.source_port, tasks.c.source_account)
    )
    with engine.connect() as c:
        rows = c.execute(select(tasks).where(tasks.c.id.in_(newest))).mappings().all()
    return [TaskRecord.from_row(r) for r in rows]
