"""What a failed or cancelled migration leaves behind is undone: slot, passfile, half-copied target."""

from __future__ import annotations

import contextlib
import logging
import time

import psycopg

from cloudmig.domain import classes
from cloudmig.domain.detail import SECTION_FAILURE
from cloudmig.domain.enums import InstanceStatus, MigrateStage
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg import probes
from cloudmig.store import instances as instance_store

log = logging.getLogger(__name__)


def drop_source_slot(tc: TaskContext, attempts: int = 20, *, terminate: bool = True) -> str | None:
    """Drop the task's slot on the source so it stops holding WAL; returns an error text or None.

    A walsender may still hold the slot (ObjectInUse): right after a promotion for a moment, or
    for good when a copy was killed. It is retried, ending the holder unless `terminate` is False.
    """
    src = tc.source()
    problem = ""
    for _ in range(attempts):
        try:
            with src.connect() as conn:
                probes.drop_slot(conn, tc.slot_name)
            return None
        except psycopg.errors.ObjectInUse:
            problem = "the slot is still in use"
            time.sleep(0.25)
            if terminate:
                with (
                    contextlib.suppress(psycopg.Error),
                    src.connect() as conn,
                ):
                    probes.terminate_slot_holder(conn, tc.slot_name)
        except psycopg.Error as exc:
            return f"could not drop replication slot {tc.slot_name} on the source: {exc.sqlstate or type(exc).__name__}"
    return f"could not drop replication slot {tc.slot_name} on the source: {problem}"


def undo(tc: TaskContext) -> None:
    """Leave the source without our slot and the target empty and running, as before the task."""
    t = tc.task
    inst = tc.instance()
    if t.stage is not MigrateStage.PRECHECK:
        problem = drop_source_slot(tc)
        if problem:
            tc.event(SECTION_FAILURE, problem + "; drop it by hand: SELECT pg_drop_replication_slot(...)")
        tc.remove_passfile()
        if inst.status is InstanceStatus.RUNNING:
            cls = classes.lookup(inst.instance_class)
            assert cls is not None
            tc.ctx.provider.destroy(inst.id, inst.major)
            tc.ctx.provider.create(inst.id, port=inst.port, cls=cls, major=inst.major)
            tc.event(
                SECTION_FAILURE, "The instance was reset to an empty cluster; the migration can be retried"
            )
    instance_store.release_migration(tc.ctx.db, inst.id, t.id, tc.ctx.now())
