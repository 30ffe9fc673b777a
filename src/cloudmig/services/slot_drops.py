"""Slot drops still pending, for the operator on the service host.

A slot that must go is dropped again and again until it is gone (`engine/slots.py`), and /metrics
counts it meanwhile. When its source is gone for good (decommissioned, restored elsewhere) only the
operator can tell: `give_up` stops the retries and says so in the task's Detail, with the statement
that drops the slot by hand. Should the source come back with the slot, the orphan sweep still
finds and drops it.
"""

from __future__ import annotations

import logging

from cloudmig.domain.detail import SECTION_SLOTS
from cloudmig.runtime import AppContext
from cloudmig.store import slot_drops as drop_store
from cloudmig.store import tasks as task_store
from cloudmig.store.records import SlotDropRecord

log = logging.getLogger(__name__)


class AmbiguousDrop(ValueError):
    """A slot name pending on more than one source: the drop's id tells them apart."""


def list_pending(ctx: AppContext) -> list[SlotDropRecord]:
    return drop_store.pending(ctx.db)


def find(ctx: AppContext, which: str) -> SlotDropRecord | None:
    """The pending drop with id `which`, or of the slot named `which`."""
    pending = drop_store.pending(ctx.db)
    if which.isdigit():
        by_id = [r for r in pending if r.id == int(which)]
        if by_id:
            return by_id[0]
    named = [r for r in pending if r.slot_name == which]
    if len(named) > 1:
        sources = ", ".join(f"{r.id} ({r.source_ip}:{r.source_port})" for r in named)
        raise AmbiguousDrop(f"slot {which} is pending on several sources; give its id: {sources}")
    return named[0] if named else None


def manual_drop_sql(slot: str) -> str:
    quoted = slot.replace("'", "''")
    return f"SELECT pg_drop_replication_slot('{quoted}');"


def give_up(ctx: AppContext, rec: SlotDropRecord) -> None:
    """Stop retrying `rec`'s drop; the task it belongs to says that the slot may still be there."""
    drop_store.done(ctx.db, rec.id)
    tried = f"after {rec.attempts} attempts ({rec.last_error})" if rec.attempts else "before any attempt"
    log.warning(
        "the drop of slot %s on %s:%s was given up by the operator %s",
        rec.slot_name,
        rec.source_ip,
        rec.source_port,
        tried,
    )
    if rec.task_id is None or task_store.get_task(ctx.db, rec.task_id) is None:
        return
    task_store.add_event(
        ctx.db,
        rec.task_id,
        ctx.now(),
        SECTION_SLOTS,
        f"The drop of replication slot {rec.slot_name} on the source was given up by the operator "
        f"{tried}; if the source still has it, drop it there: {manual_drop_sql(rec.slot_name)}",
    )
