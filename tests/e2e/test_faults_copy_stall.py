"""A source that answers nothing during the full copy (a frozen host, a network partition): no
connection breaks, pg_basebackup just waits, and before this the task went on showing a copy in
progress (`unstarted`, no word in Detail) for as long as the source stayed away.

Now the copy's silence is watched (engine/copy_stall.py): past CLOUDMIG_COPY_STALL_SECONDS the task
shows `disconnect` and says why; the copy goes on when the source is back, or, silent past
CLOUDMIG_COPY_STALL_LIMIT_SECONDS, starts again once the source answers. The source is frozen with
SIGSTOP on its postmaster and every child (its kernel still accepts connections, so nothing fails
fast)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.support.faults import children, cloudmig_slots, connect_target, item, postmaster_pid, stopped
from tests.support.flows import start_throttled_migration, wait_for, wait_streaming

pytestmark = pytest.mark.e2e


def _copying(svc: Any, instance_id: str, task_id: int) -> bool:
    it = item(svc, instance_id, task_id)
    return it["MigrateStage"] == "basebackup" and it["Progress"].get("BaseBackup", {}).get("BytesDone", 0) > 0


def _bytes_done(svc: Any, instance_id: str, task_id: int) -> int:
    return int(item(svc, instance_id, task_id)["Progress"]["BaseBackup"]["BytesDone"])


def _copy_started(svc: Any, make_source: Any, limit: int) -> tuple[Any, Any, str, Any, int]:
    """A throttled copy (about 25 s) under a 3 s stall and `limit`, once it has copied something:
    (source, client, instance id, instance attribute, task id)."""
    svc.extra_env.update(CLOUDMIG_COPY_STALL_SECONDS="3", CLOUDMIG_COPY_STALL_LIMIT_SECONDS=str(limit))
    source = make_source(scale=1)
    client, instance_id, attr, task_id = start_throttled_migration(svc, source, rate_kb=1024)
    wait_for(lambda: _copying(svc, instance_id, task_id), 60, interval=0.2, what="the copy to start")
    return source, client, instance_id, attr, task_id


def _check_copy(svc: Any, source: Any, instance_id: str, port: int) -> None:
    with connect_target(svc, instance_id, port) as conn:
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100000,)
    [(_, active, _)] = cloudmig_slots(source)
    assert active, "the standby does not stream through the task's slot"


def test_a_frozen_source_during_the_copy_is_disconnect_and_the_copy_goes_on(
    fresh_service, make_source
) -> None:
    svc = fresh_service
    source, client, instance_id, attr, task_id = _copy_started(svc, make_source, limit=300)

    pm = postmaster_pid(source.pgdata)
    with stopped(pm, *children(pm)):
        frozen_at = time.monotonic()
        it = wait_for(
            lambda: (x := item(svc, instance_id, task_id))["ReplicationState"] == "disconnect" and x,
            30,
            interval=0.2,
            what="disconnect",
        )
        # Silence (3 s) and a look at the source that waits for its connect timeout (5 s).
        assert time.monotonic() - frozen_at < 20
        assert it["MigrateStage"] == "basebackup" and it["Status"] == "running"
        assert "the source does not answer: waiting for it, up to 300 s" in it["Detail"], it["Detail"]
        done = _bytes_done(svc, instance_id, task_id)
        time.sleep(10)
        it = item(svc, instance_id, task_id)  # the API answers; the copy waits, nothing is retried
        assert it["ReplicationState"] == "disconnect" and it["Status"] == "running"
        assert _bytes_done(svc, instance_id, task_id) == done
        assert "[Retrying]" not in it["Detail"]

    wait_for(
        lambda: item(svc, instance_id, task_id)["ReplicationState"] != "disconnect",
        30,
        what="the copy to go on",
    )
    done_item = wait_streaming(client, instance_id, task_id, timeout=180)
    # Whichever the copy saw first: its data again, or the source answering again.
    assert re.search(r"The (copy receives data from the|source answers) again", done_item.detail), (
        done_item.detail
    )
    assert "Restart full backup" not in done_item.detail, "the same copy went on"
    assert "[Task failed]" not in done_item.detail
    _check_copy(svc, source, instance_id, int(attr.port))


def test_a_copy_silent_past_the_limit_starts_again(fresh_service, make_source) -> None:
    svc = fresh_service
    source, client, instance_id, attr, task_id = _copy_started(svc, make_source, limit=12)

    pm = postmaster_pid(source.pgdata)
    with stopped(pm, *children(pm)):
        it = wait_for(
            lambda: "[Retrying]" in (x := item(svc, instance_id, task_id))["Detail"] and x,
            60,
            interval=0.5,
            what="the stalled copy to be given up",
        )
        assert "the copy stalled: the copy received nothing for" in it["Detail"], it["Detail"]
        assert it["ReplicationState"] == "disconnect" and it["Status"] == "running"

    done_item = wait_streaming(client, instance_id, task_id, timeout=240)
    assert "Restart full backup of source data" in done_item.detail
    assert "[Task failed]" not in done_item.detail
    _check_copy(svc, source, instance_id, int(attr.port))
