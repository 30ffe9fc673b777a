"""Durable slot drops: a slot that must go is recorded first, then dropped, retried until done."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from cloudmig.store.records import SlotDropRecord
from cloudmig.store.tables import slot_drops


def schedule(engine: Engine, values: dict[str, Any]) -> None:
    """Record that a slot must be dropped (once per source and slot name)."""
    row = dict(values)
    row["source_tls"] = json.dumps(row.get("source_tls") or {}, sort_keys=True)
    try:
        with engine.begin() as c:
            c.execute(insert(slot_drops).values(**row))
    except IntegrityError:  # already due: make it due now
        with engine.begin() as c:
            c.execute(
                update(slot_drops)
                .where(
                    slot_drops.c.source_ip == row["source_ip"],
                    slot_drops.c.source_port == row["source_port"],
                    slot_drops.c.slot_name == row["slot_name"],
                )
                .values(next_attempt_at=row["next_attempt_at"])
            )


def due(engine: Engine, now: datetime) -> list[SlotDropRecord]:
    with engine.connect() as c:
        rows = c.execute(
            select(slot_drops).where(slot_drops.c.next_attempt_at <= now).order_by(slot_drops.c.id)
        ).mappings()
        return [SlotDropRecord.from_row(r) for r in rows]


def pending(engine: Engine) -> list[SlotDropRecord]:
    with engine.connect() as c:
        rows = c.execute(select(slot_drops).order_by(slot_drops.c.id)).mappings()
        return [SlotDropRecord.from_row(r) for r in rows]


def failed_attempt(engine: Engine, drop_id: int, error: str, next_attempt_at: datetime) -> None:
    with engine.begin() as c:
        c.execute(
            update(slot_drops)
            .where(slot_drops.c.id == drop_id)
            .values(attempts=slot_drops.c.attempts + 1, last_error=error, next_attempt_at=next_attempt_at)
        )


def done(engine: Engine, drop_id: int) -> None:
    with engine.begin() as c:
        c.execute(delete(slot_drops).where(slot_drops.c.id == drop_id))
