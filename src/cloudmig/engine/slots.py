"""No slot of cloudmig's is ever left on a source.

Dropping a task's slot is durable work: recorded in the store first (`slot_drops`), then tried, and
retried with back-off until it succeeds, across source outages and restarts of the service. A sweep
(at start and every `slot_sweep_seconds`) looks on every known source for slots with this
installation's prefix that no live task uses, and drops them the same way.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg

from cloudmig.domain.detail import SECTION_SLOTS
from cloudmig.domain.enums import MigrateStage, TaskKind, TaskStatus
from cloudmig.domain.ids import slot_prefix
from cloudmig.domain.tls import SourceTlsRequest
from cloudmig.pg import probes
from cloudmig.pg import slots as pg_slots
from cloudmig.pg.source import Source
from cloudmig.runtime import AppContext, task_source
from cloudmig.runtime.context import tls_for
from cloudmig.store import slot_drops as drop_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import SlotDropRecord, TaskRecord

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
# While a walsender still holds the slot (right after a promotion, a killed copy), try this often.
IN_USE_ATTEMPTS = 20
IN_USE_PAUSE = 0.25


def _record(ctx: AppContext, slot: str, source_task: TaskRecord, owner_id: int | None, reason: str) -> None:
    now = ctx.now()
    drop_store.schedule(
        ctx.db,
        {
            "slot_name": slot,
            "source_ip": source_task.source_ip,
            "source_port": source_task.source_port,
            "source_account": source_task.source_account,
            "source_password_enc": source_task.source_password_enc,
            "source_tls": source_task.request.get("SourceTls") or {},
            "task_id": owner_id,
            "reason": reason,
            "created_at": now,
            "next_attempt_at": now,
        },
    )


def schedule(ctx: AppContext, task: TaskRecord, reason: str) -> None:
    """Record that the task's slot must go (before anything is tried)."""
    if task.slot_name:
        _record(ctx, task.slot_name, task, task.id, reason)


def _source_of(ctx: AppContext, rec: SlotDropRecord) -> Source:
    sealed = rec.source_password_enc
    return Source(
        rec.source_ip,
        rec.source_port,
        rec.source_account,
        lambda: ctx.box.open(sealed),
        tls=tls_for(ctx, SourceTlsRequest.from_json(rec.source_tls), "", f"drop-{rec.id}.crt"),
        connect_timeout=ctx.settings.source_connect_timeout,
    )


def drop_on_source(source: Source, slot: str) -> str | None:
    """Drop `slot`, ending a walsender that still holds it; None when it is gone, else why not."""
    problem = "the slot is still in use"
    for _ in range(IN_USE_ATTEMPTS):
        try:
            with source.connect() as conn:
                try:
                    probes.drop_slot(conn, slot)
                    return None
                except psycopg.errors.ObjectInUse:
                    probes.terminate_slot_holder(conn, slot)
        except psycopg.Error as exc:
            return f"{exc.sqlstate or type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        time.sleep(IN_USE_PAUSE)
    return problem


def attempt(ctx: AppContext, rec: SlotDropRecord) -> str | None:
    """One try at a recorded drop; on success the record goes and the task's Detail says so."""
    problem = drop_on_source(_source_of(ctx, rec), rec.slot_name)
    if problem is None:
        drop_store.done(ctx.db, rec.id)
        if rec.task_id is not None and task_store.get_task(ctx.db, rec.task_id) is not None:
            after = f" after {rec.attempts + 1} attempts" if rec.attempts else ""
            task_store.add_event(
                ctx.db,
                rec.task_id,
                ctx.now(),
                SECTION_SLOTS,
                f"Dropped replication slot {rec.slot_name} on the source{after}",
            )
        return None
    delay = min(FIRST_RETRY_SECONDS * 2**rec.attempts, MAX_RETRY_SECONDS)
    drop_store.failed_attempt(ctx.db, rec.id, problem, ctx.now() + timedelta(seconds=delay))
    if rec.attempts == 0 and rec.task_id is not None and task_store.get_task(ctx.db, rec.task_id) is not None:
        task_store.add_event(
            ctx.db,
            rec.task_id,
            ctx.now(),
            SECTION_SLOTS,
            f"Replication slot {rec.slot_name} could not be dropped yet ({problem}); cloudmig retries "
            "until it is gone",
        )
    return problem


def drop_task_slot(ctx: AppContext, task: TaskRecord, reason: str) -> str | None:
    """Record the drop of the task's slot, then try it at once. None when it is gone."""
    if not task.slot_name:
        return None
    schedule(ctx, task, reason)
    for rec in drop_store.pending(ctx.db):
        if rec.task_id == task.id and rec.slot_name == task.slot_name:
            return attempt(ctx, rec)
    return None


def process_due(ctx: AppContext) -> None:
    for rec in drop_store.due(ctx.db, ctx.now()):
        try:
            attempt(ctx, rec)
        except Exception:
            log.exception("dropping slot %s failed", rec.slot_name)


def _live_slots(ctx: AppContext) -> set[str]:
    return {
        t.slot_name
        for t in task_store.running_migrations(ctx.db)
        if t.slot_name and t.stage is not MigrateStage.PRECHECK
    }


def sweep(ctx: AppContext, installation_id: str) -> None:
    """Drop slots of this installation that no live task uses, on every source cloudmig knows."""
    prefix = slot_prefix(installation_id)
    for task in task_store.known_sources(ctx.db, TaskKind.MIGRATION):
        try:
            with task_source(ctx, task).connect() as conn:
                found = pg_slots.slots_with_prefix(conn, prefix)
        except psycopg.Error:
            continue  # the source is down; a later sweep looks again
        # Read after listing: a task records its slot's name before it creates the slot.
        live = _live_slots(ctx)
        for name, _active in found:
            owner = task_store.task_with_slot(ctx.db, name)
            if name in live or (owner is not None and owner.status is TaskStatus.RUNNING):
                continue
            log.warning(
                "slot %s on %s:%s is used by no live task; dropping it",
                name,
                task.source_ip,
                task.source_port,
            )
            _record(ctx, name, task, owner.id if owner is not None else None, "no live task uses it")
    process_due(ctx)
