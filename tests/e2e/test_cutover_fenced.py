"""Cutover with the application still running: cloudmig fences the source (issue 11).

Four writers insert numbered rows at their own rates through ActivateMigrationTargetInstance; they
never stop, reconnect to the source when it ends their sessions, and move to the new primary once
Describe says success. Every acknowledged row must be on the new primary, the source must have
refused writes once fenced, and nothing may have been written on the source that the new primary
does not have.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.cutover import (
    activate,
    grant_fence,
    migrate,
    new_sessions_read_only,
    raw_item,
    timeline,
    wait_success,
)
from tests.support.flows import connect_target_tcp
from tests.support.writers import (
    APP_PASSWORD,
    APP_ROLE,
    Endpoint,
    Route,
    Writer,
    WriterPool,
    ledger_rows,
    prepare_source,
)

pytestmark = pytest.mark.e2e

RATES = (1, 10, 50, 200)  # rows a second, one writer each


def test_writers_that_never_stop_are_fenced_and_lose_nothing(
    service: Any, make_source: Any, record_property: Any
) -> None:
    client = service.tea()
    source = make_source(scale=1)
    prepare_source(source)
    grant_fence(source)
    instance_id, task_id, attr = migrate(client, source)

    route = Route(Endpoint.tcp("127.0.0.1", source.port, APP_ROLE, APP_PASSWORD))
    with WriterPool(Writer(i, rate, route) for i, rate in enumerate(RATES, start=1)) as pool:
        pool.wait_acks(2)
        t_call = time.monotonic()
        try:
            body = activate(client, instance_id)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{raw_item(service, instance_id, task_id)['Detail']}") from None
        t_returned = time.monotonic()
        assert body.task_id == task_id
        wait_success(client, instance_id, task_id)
        t_success = time.monotonic()
        # The application is told the switch is over and writes to the new primary from now on.
        route.move_to(Endpoint.tcp(attr.connection_string, int(attr.port), APP_ROLE, APP_PASSWORD))
        pool.wait_acks(1, side="target")
    errors = pool.errors()

    with connect_target_tcp(attr) as conn:
        on_target = ledger_rows(conn)
        on_target_from_source = {
            (int(r[0]), int(r[1]))
            for r in conn.execute("SELECT writer, n FROM ledger WHERE side = 'source'").fetchall()
        }
    acked = pool.rows("source")
    missing = sorted(acked - on_target)
    assert missing == [], f"{len(missing)} acknowledged rows are not on the new primary: {missing[:20]}"
    assert pool.rows("target") <= on_target
    # Nothing the source committed (acknowledged or not) is missing on the new primary.
    with source.connect() as conn:
        on_source = ledger_rows(conn)
    assert on_source == on_target_from_source, sorted(on_source ^ on_target_from_source)[:20]

    # The source refused writes once fenced, and stays fenced.
    assert errors["read_only_source"] > 0, dict(errors)
    assert new_sessions_read_only(source)
    item = raw_item(service, instance_id, task_id)
    ev = item["Evidence"]
    assert ev["Fence"] == "alter_system" and ev["FenceState"] == "up", ev
    assert ev["TimelineAfter"] == ev["TimelineBefore"] + 1 == 2
    assert ev["BytesNotReplayed"] == 0 and not item.get("DataLoss") and "DataLoss" not in ev
    assert timeline(attr) == 2
    assert "Source fenced (alter_system)" in item["Detail"]
    assert "ALTER SYSTEM RESET default_transaction_read_only" in item["Detail"]

    unavailable = pool.unavailability()
    assert unavailable is not None
    numbers = {
        "unavailability_s": round(unavailable, 3),
        "activate_call_s": round(t_returned - t_call, 3),
        "activate_to_success_s": round(t_success - t_call, 3),
        "acked_on_source": len(acked),
        "writer_errors": dict(errors),
        "gate_s": ev.get("GateSeconds"),
        "catchup_s": ev.get("CatchupSeconds"),
        "promote_s": ev.get("PromoteSeconds"),
        "total_s": ev.get("TotalSeconds"),
    }
    record_property("cutover", numbers)
    print(f"\nfenced cutover with writers {RATES}/s: {numbers}")
