"""Instance lifecycle steps: Creating -> Running, Deleting -> gone, and Running ones kept running."""

from __future__ import annotations

import logging
import time

from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskKind
from cloudmig.engine import slots
from cloudmig.instances.managed import ManagedInstance
from cloudmig.runtime import AppContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord

log = logging.getLogger(__name__)


def create(ctx: AppContext, inst: InstanceRecord) -> None:
    try:
        ManagedInstance.of(ctx.provider, inst).create()
    except Exception as exc:
        log.exception("creating instance %s failed", inst.id)
        instance_store.set_status(ctx.db, inst.id, InstanceStatus.FAILED, ctx.now(), reason=str(exc)[:2000])
        return
    instance_store.set_status(ctx.db, inst.id, InstanceStatus.RUNNING, ctx.now())


# How long a deletion waits for the cancelled tasks' workers to let go (a copy is killed at once).
WORKER_RELEASE_SECONDS = 60.0


def _wait_released(ctx: AppContext, task_id: int) -> None:
    deadline = time.monotonic() + WORKER_RELEASE_SECONDS
    while time.monotonic() < deadline:
        t = task_store.get_task(ctx.db, task_id)
        if t is None or t.lease_owner is None:
            return
        time.sleep(0.2)


def delete(ctx: AppContext, inst: InstanceRecord) -> None:
    managed = ManagedInstance.of(ctx.provider, inst)
    for t in task_store.tasks_of_instance(ctx.db, inst.id, TaskKind.MIGRATION):
        if t.stage not in (MigrateStage.PRECHECK, MigrateStage.SUCCESS):
            # The slot is busy while the task's pg_basebackup or standby streams through it.
            _wait_released(ctx, t.id)
            managed.stop()
            # Durable: if the source is down now, the drop is retried until it succeeds.
            problem = slots.drop_task_slot(ctx, t, reason="the instance was deleted")
            if problem:
                log.warning(
                    "instance %s: slot %s not dropped yet (%s); cloudmig retries",
                    inst.id,
                    t.slot_name,
                    problem,
                )
    managed.destroy()
    instance_store.delete_instance(ctx.db, inst.id)


def should_run(ctx: AppContext, inst: InstanceRecord) -> bool:
    """Whether the cluster should be up: always, except while its task copies into it."""
    if inst.migration_task_id is None:
        return True
    task = task_store.get_task(ctx.db, inst.migration_task_id)
    return task is None or task.stage not in (MigrateStage.BASEBACKUP,)


def ensure_running(ctx: AppContext, inst: InstanceRecord) -> bool:
    """Bring an instance back (after a restart of the host, a crash of its server), a standby or a
    promoted target included; True when it had to be started."""
    managed = ManagedInstance.of(ctx.provider, inst)
    if should_run(ctx, inst) and (managed.pgdata / "PG_VERSION").is_file():
        return managed.ensure_running()
    return False
