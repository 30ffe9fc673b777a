"""SIGKILL of the service after the fence went up and before the promotion (issue 11).

Replay is paused on the target so the switch waits in its catch-up with the source fenced; the
service is killed there. After a restart the switch either completes (replay resumed: promoted
once, every acknowledged row there) or, past its SwitchoverTimeout, is given up with the fence
lifted and the task back in increment. Never a fenced source with an unpromoted target left
behind, never two promotions.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.cutover import (
    activate,
    evidence,
    grant_fence,
    migrate,
    new_sessions_read_only,
    raw_item,
    timeline,
    wait_success,
)
from tests.support.flows import connect_target_tcp, migration_item, wait_for, wait_streaming
from tests.support.writers import APP_PASSWORD, APP_ROLE, Endpoint, Route, Writer, ledger_rows, prepare_source

pytestmark = pytest.mark.e2e

TIMEOUT_SECONDS = 10  # SwitchoverTimeout's minimum


def _on_target_as_superuser(svc: Any, instance_id: str, attr: Any, query: str) -> None:
    with psycopg.connect(
        host=str(svc.runtime_dir / "sockets" / instance_id),
        port=int(attr.port),
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(query)


def _in_recovery(attr: Any) -> bool:
    with connect_target_tcp(attr) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize("after_restart", ["replay_resumes", "timeout_passes"])
def test_sigkill_with_the_fence_up_before_promotion(
    fresh_service: Any, make_source: Any, after_restart: str
) -> None:
    svc = fresh_service
    svc.extra_env.update(
        CLOUDMIG_SWITCH_CATCHUP_TIMEOUT=str(TIMEOUT_SECONDS if after_restart == "timeout_passes" else 300),
        CLOUDMIG_SWITCH_VERDICT_SECONDS="1",
    )
    svc.start()
    client = svc.tea()
    source = make_source(scale=1)
    prepare_source(source)
    grant_fence(source)
    instance_id, task_id, attr = migrate(client, source)

    writer = Writer(1, 20, Route(Endpoint.tcp("127.0.0.1", source.port, APP_ROLE, APP_PASSWORD)))
    writer.start()
    try:
        wait_for(lambda: len(writer.acks()) >= 5, 30, interval=0.05, what="writer")
        # Hold replay: the switch fences the source, takes its cut and waits for the target.
        _on_target_as_superuser(svc, instance_id, attr, "SELECT pg_wal_replay_pause()")
        # WAL the paused target has not replayed, whatever the writer's timing: the cut is ahead.
        source.sql("CREATE TABLE behind_the_cut AS SELECT 1 AS x")
        activate(client, instance_id)
        wait_for(
            lambda: (
                (ev := evidence(svc, instance_id, task_id)).get("Phase") == "catchup"
                and ev.get("FenceState") == "up"
            ),
            30,
            interval=0.05,
            what="fenced and waiting for the target",
        )
        svc.kill()
        # The moment the kill left behind: fenced, not promoted.
        assert new_sessions_read_only(source) and _in_recovery(attr)
        acked_before_restart = {(writer.wid, a.n) for a in writer.acks("source")}
        if after_restart == "replay_resumes":
            _on_target_as_superuser(svc, instance_id, attr, "SELECT pg_wal_replay_resume()")
        svc.start()
        client = svc.tea()

        if after_restart == "replay_resumes":
            item = wait_success(client, instance_id, task_id, timeout=120)
            assert item.replication_state == "finish"
            assert not _in_recovery(attr) and new_sessions_read_only(source)  # the fence stays up
            with connect_target_tcp(attr) as conn:
                on_target = ledger_rows(conn)
            missing = sorted(acked_before_restart - on_target)
            assert missing == [], f"{len(missing)} acknowledged rows are not on the new primary"
        else:
            # Past SwitchoverTimeout: given up, the fence lifted, replication goes on.
            def settled() -> Any:
                it = migration_item(client, instance_id, task_id)
                assert it.migrate_stage in ("switch", "increment"), it.detail
                return it if it.migrate_stage == "increment" else None

            item = wait_for(settled, 120, interval=0.2, what="the switchover to be given up")
            assert not new_sessions_read_only(source), "the fence is still up after the switch was given up"
            assert _in_recovery(attr), "the target was promoted although the switch was given up"
            assert "Fence lifted" in item.detail and "Switchover aborted" in item.detail
            ev = evidence(svc, instance_id, task_id)
            assert ev["Phase"] == "aborted" and ev["FenceState"] == "lifted", ev
            # The application writes on the source again.
            count = len(writer.acks("source"))
            wait_for(lambda: len(writer.acks("source")) > count + 5, 30, interval=0.1, what="writes again")
            _on_target_as_superuser(svc, instance_id, attr, "SELECT pg_wal_replay_resume()")
            wait_streaming(client, instance_id, task_id)
    finally:
        writer.stop()

    if after_restart == "timeout_passes":
        # The switchover can be made again, and promotes exactly once.
        activate(client, instance_id)
        wait_success(client, instance_id, task_id)
        with connect_target_tcp(attr) as conn:
            on_target = ledger_rows(conn)
        assert {(writer.wid, a.n) for a in writer.acks("source")} <= on_target
    assert timeline(attr) == 2, "promoted more than once, or not at all"
    ev = evidence(svc, instance_id, task_id)
    assert ev["TimelineBefore"] == 1 and ev["TimelineAfter"] == 2 and ev["FenceState"] == "up"
    assert not raw_item(svc, instance_id, task_id).get("DataLoss")
    assert source.sql("SELECT slot_name FROM pg_replication_slots") == []
