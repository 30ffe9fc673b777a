"""Instance lifecycle steps: Creating -> Running, Deleting -> gone, and Running ones kept running."""

from __future__ import annotations

import logging
import time

from cloudmig.domain import classes
from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskKind
from cloudmig.engine.cleanup import drop_source_slot
from cloudmig.engine.taskctx import TaskContext
from cloudmig.runtime import AppContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord

log = logging.getLogger(__name__)


def create(ctx: AppContext, inst: InstanceRecord) -> None:
    cls = classes.lookup(inst.instance_class)
    assert cls is not None
    try:
        ctx.provider.create(inst.id, port=inst.port, cls=cls, major=inst.major)
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
    for t in task_store.tasks_of_instance(ctx.db, inst.id, TaskKind.MIGRATION):
        if t.stage not in (MigrateStage.PRECHECK, MigrateStage.SUCCESS):
            # The slot is busy while the task's pg_basebackup or standby streams through it.
            _wait_released(ctx, t.id)
            ctx.provider.stop(inst.id, inst.major)
            problem = drop_source_slot(TaskContext(ctx, t), attempts=120)
            if problem:
                log.warning("instance %s: %s; drop it by hand on the source", inst.id, problem)
            TaskContext(ctx, t).remove_passfile()
    ctx.provider.destroy(inst.id, inst.major)
    instance_store.delete_instance(ctx.db, inst.id)


def ensure_running(ctx: AppContext, inst: InstanceRecord) -> None:
    """After a restart of the host, bring Running instances back (a standby being copied is not one)."""
    if inst.migration_task_id is not None:
        return  # its task's stage decides whether the cluster should run
    if not ctx.provider.is_running(inst.id, inst.major):
        ctx.provider.start(inst.id, inst.major)
