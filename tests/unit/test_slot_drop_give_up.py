"""Giving up a pending slot drop (services/slot_drops.py) on the in-memory setup: found by id or by
slot name, an ambiguous name refused, the task's Detail told how to drop the slot by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.engine_fakes import add_migration, make_context

from cloudmig.domain.enums import MigrateStage
from cloudmig.runtime import AppContext
from cloudmig.services import slot_drops
from cloudmig.store import slot_drops as drop_store
from cloudmig.store import tasks as task_store


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return make_context(tmp_path)


def _pending(ctx: AppContext, slot: str, port: int, task_id: int | None) -> None:
    drop_store.schedule(
        ctx.db,
        {
            "slot_name": slot,
            "source_ip": "127.0.0.1",
            "source_port": port,
            "source_account": "migratetest",
            "source_password_enc": ctx.box.seal("secret"),
            "source_tls": {},
            "task_id": task_id,
            "reason": "the task failed",
            "created_at": ctx.now(),
            "next_attempt_at": ctx.now(),
        },
    )


def test_give_up_by_name_tells_the_task_how_to_drop_the_slot_by_hand(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.BASEBACKUP)
    _pending(ctx, "cloudmig_ab_1", 5432, task_id)
    [rec] = slot_drops.list_pending(ctx)
    drop_store.failed_attempt(ctx.db, rec.id, "08006: connection refused", ctx.now())

    found = slot_drops.find(ctx, "cloudmig_ab_1")
    assert found is not None and found.attempts == 1
    slot_drops.give_up(ctx, found)

    assert slot_drops.list_pending(ctx) == []
    texts = [e.text for e in task_store.events_for(ctx.db, [task_id])[task_id]]
    [said] = [t for t in texts if "given up by the operator" in t]
    assert "after 1 attempts (08006: connection refused)" in said
    assert "SELECT pg_drop_replication_slot('cloudmig_ab_1');" in said


def test_a_name_pending_on_two_sources_needs_the_id(ctx: AppContext) -> None:
    _pending(ctx, "cloudmig_ab_2", 5432, None)
    _pending(ctx, "cloudmig_ab_2", 5433, None)
    with pytest.raises(slot_drops.AmbiguousDrop, match="several sources"):
        slot_drops.find(ctx, "cloudmig_ab_2")
    second = slot_drops.list_pending(ctx)[1]
    found = slot_drops.find(ctx, str(second.id))
    assert found is not None and found.source_port == 5433
    slot_drops.give_up(ctx, found)  # no task: nothing to tell, the record goes
    assert [r.source_port for r in slot_drops.list_pending(ctx)] == [5432]
    assert slot_drops.find(ctx, "no-such-slot") is None


def test_the_manual_statement_quotes_the_name() -> None:
    assert slot_drops.manual_drop_sql("a'b") == "SELECT pg_drop_replication_slot('a''b');"
