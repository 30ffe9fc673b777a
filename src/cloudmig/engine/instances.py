"""Instance lifecycle steps: Creating -> Running, Deleting -> gone, and Running ones kept running."""

from __future__ import annotations

import logging

from cloudmig.domain import classes
from cloudmig.domain.enums import InstanceStatus, MigrateStage, TaskKind
from cloudmig.engine.cleanup import drop_source_slot
from cloudmig.engine.taskctx import TaskContext
from cloudmig.services.context import ServiceContext
from cloudmig.store import instances as instance_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import InstanceRecord

log = logging.getLogger(__name__)


def create(ctx: ServiceContext, inst: InstanceRecord) -> None:
    cls = classes.lookup(inst.instance_class)
    assert cls is not None
    try:
        ctx.provider.create(inst.id, port=inst.port, cls=cls, major=inst.major)
    except Exception as exc:
        log.exception("creating instance %s failed", inst.id)
        instance_store.set_status(ctx.db, inst.id, InstanceStatus.FAILED, ctx.now(), reason=str(exc)[:2000])
        return
    instance_store.set_status(ctx.db, inst.id, InstanceStatus.RUNNING, ctx.now())


def delete(ctx: ServiceContext, inst: InstanceRecord) -> None:
    for t in task_store.tasks_of_instance(ctx.db, inst.id, TaskKind.MIGRATION):
        if t.stage not in (MigrateStage.PRECHECK, MigrateStage.SUCCESS):
            problem = drop_source_slot(TaskContext(ctx, t))
            if problem:
                log.warning("instance %s: %s", inst.id, problem)
            TaskContext(ctx, t).remove_passfile()
    ctx.provider.destroy(inst.id, inst.major)
    instance_store.delete_instance(ctx.db, inst.id)


def ensure_running(ctx: ServiceContext, inst: InstanceRecord) -> None:
    """After a restart of the host, bring Running instances back (a standby being copied is not one)."""
    if inst.migration_task_id is not None:
        return  # its task's stage decides whether the cluster should run
    if not ctx.provider.is_running(inst.id, inst.major):
        ctx.provider.start(inst.id, inst.major)
