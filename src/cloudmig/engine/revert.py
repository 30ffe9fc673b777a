"""Undo of a migration that failed before the point of no return: the source without cloudmig's
slot, the target an empty running cluster again (a complete copy kept aside), the instance free."""

from __future__ import annotations

import logging

from cloudmig.domain.detail import SECTION_FAILURE
from cloudmig.engine import slots
from cloudmig.engine.taskctx import TaskContext
from cloudmig.store import instances as instance_store

log = logging.getLogger(__name__)


def release_instance(tc: TaskContext) -> None:
    instance_store.release_migration(tc.ctx.db, tc.task.instance_id, tc.task.id, tc.ctx.now())


def undo_copy(tc: TaskContext) -> None:
    """Drop the slot (durably), remove the passfile, reset the target, release the instance."""
    slots.drop_task_slot(tc.ctx, tc.task, reason="the migration failed")
    tc.remove_passfile()
    inst = tc.instance()
    inst.reset()
    kept = tc.ctx.provider.kept_copy(inst.id)
    where = f"; the copy made so far is kept in {kept} until the next copy succeeds" if kept else ""
    tc.event(
        SECTION_FAILURE, f"The instance was reset to an empty cluster{where}; the migration can be retried"
    )
    release_instance(tc)
