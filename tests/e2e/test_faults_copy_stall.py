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
from pathlib import Path
from typing import Any

import pytest

from tests.support.faults import (
    children,
    cloudmig_slots,
    connect_target,
    is_alive,
    item,
    postmaster_pid,
    stopped,
)
from tests.support.flowdrop import FlowDroppingForwarder
from tests.support.flows import (
    MIGRATION_PASSWORD,
    create_instance,
    create_migration,
    start_throttled_migration,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import SourceCluster, make_base_dir, require_migratable_major

pytestmark = pytest.mark.e2e


def _copying(svc: Any, instance_id: str, task_id: int) -> bool:
    it = item(svc, instance_id, task_id)
    return it["MigrateStage"] == "basebackup" and it["Progress"].get("BaseBackup", {}).get("BytesDone", 0) > 0


def _bytes_done(svc: Any, instance_id: str, task_id: int) -> int:
    return int(item(svc, instance_id, task_id)["Progress"]["BaseBackup"]["BytesDone"])


def _copy_started(svc: Any, make_source: Any, limit: int, via: Any = None) -> tuple[Any, Any, str, Any, int]:
    """A throttled copy (about 25 s) under a 3 s stall and `limit`, once it has copied something:
    (source, client, instance id, instance attribute, task id). `via(source)` gives what the
    migration is told to connect to (something with a port on 127.0.0.1), the source by default."""
    svc.extra_env.update(CLOUDMIG_COPY_STALL_SECONDS="3", CLOUDMIG_COPY_STALL_LIMIT_SECONDS=str(limit))
    source = make_source(scale=1)
    endpoint = source if via is None else via(source)
    client, instance_id, attr, task_id = start_throttled_migration(svc, endpoint, rate_kb=1024)
    wait_for(lambda: _copying(svc, instance_id, task_id), 60, interval=0.2, what="the copy to start")
    return source, client, instance_id, attr, task_id


def _check_copy(svc: Any, source: Any, instance_id: str, port: int) -> None:
    with connect_target(svc, instance_id, port) as conn:
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100000,)
    [(_, active, _)] = cloudmig_slots(source)
    assert active, "the standby does not stream through the task's slot"


def _given_up(svc: Any, instance_id: str, task_id: int, timeout: float, why: str) -> dict[str, Any]:
    """The task's item once its copy was given up, to be retried; Detail gives `why` (a regex)."""
    it = wait_for(
        lambda: "[Retrying]" in (x := item(svc, instance_id, task_id))["Detail"] and x,
        timeout,
        interval=0.5,
        what="the copy to be given up",
    )
    assert re.search(why, it["Detail"]), it["Detail"]
    assert it["Status"] == "running"
    return it


def _copied_again(svc: Any, client: Any, source: Any, instance_id: str, task_id: int, port: int) -> str:
    """The task streams after a new copy, which is correct; its Detail."""
    detail = str(wait_streaming(client, instance_id, task_id, timeout=240).detail)
    assert "Restart full backup of source data" in detail
    assert "[Task failed]" not in detail
    _check_copy(svc, source, instance_id, port)
    return detail


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
        it = _given_up(svc, instance_id, task_id, 60, "the copy stalled: the copy received nothing for")
        assert it["ReplicationState"] == "disconnect"

    _copied_again(svc, client, source, instance_id, task_id, int(attr.port))


def _copy_sender(source: Any) -> int:
    """The pid of the copy's base backup sender on the source (not its WAL stream's)."""
    pid = source.scalar("SELECT pid FROM pg_stat_progress_basebackup")
    assert pid is not None, "no base backup runs on the source"
    return int(pid)


def test_a_copy_whose_sender_sends_nothing_starts_again_and_that_sender_is_ended(
    fresh_service, make_source
) -> None:
    """The source answers, the copy's sender runs there, and sends nothing (a frozen sender here;
    a middlebox that lost the copy's flow below). Before this, the copy waited for ever."""
    svc = fresh_service
    source, client, instance_id, attr, task_id = _copy_started(svc, make_source, limit=12)

    sender = _copy_sender(source)
    with stopped(sender):
        _given_up(svc, instance_id, task_id, 60, r"its sender on the source has sent nothing for \d+ s")
        # The next copy runs beside the frozen sender, which was told to end.
        wait_for(
            lambda: source.scalar(
                "SELECT count(*) FROM pg_stat_progress_basebackup WHERE pid <> %s", (sender,)
            ),
            60,
            interval=0.5,
            what="the next copy",
        )
    # Thawed, the sender ends at once: it no longer holds one of the source's max_wal_senders.
    wait_for(lambda: not is_alive(sender), 10, interval=0.2, what="the earlier copy's sender to end")
    detail = _copied_again(svc, client, source, instance_id, task_id, int(attr.port))
    assert "Ended the sender of an earlier, interrupted copy" in detail, detail


def _copy_senders(source: Any, *, holding_no_slot: bool = False) -> list[int]:
    """The pids of every copy's senders on the source; `holding_no_slot`: only base backups' (a
    copy's WAL stream holds its slot)."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'"
        " AND application_name LIKE 'cloudmig\\_basebackup:%'"
    )
    if holding_no_slot:
        query += " AND pid NOT IN (SELECT active_pid FROM pg_replication_slots WHERE active_pid IS NOT NULL)"
    return [int(r[0]) for r in source.sql(query)]


def test_a_copy_whose_flow_a_middlebox_lost_starts_again_and_its_senders_are_ended(
    fresh_service, make_source
) -> None:
    """A NAT or firewall on the way loses the copy's flow (it restarted, its table overflowed):
    no end hears anything, nothing is refused, new connections pass. The source's sender waits on
    the lost connection until TCP gives up (about 15 min), holding the slot through its WAL stream
    until wal_sender_timeout. Before this, the copy waited as long as the sender ran."""
    svc = fresh_service
    forwarders: list[FlowDroppingForwarder] = []

    def through_a_middlebox(source: Any) -> FlowDroppingForwarder:
        forwarders.append(FlowDroppingForwarder(source.port))
        return forwarders[0]

    try:
        source, client, instance_id, attr, task_id = _copy_started(
            svc, make_source, limit=12, via=through_a_middlebox
        )
        (middlebox,) = forwarders
        earlier = _copy_senders(source)
        assert len(earlier) == 2, earlier  # the copy's sender and its WAL stream
        assert middlebox.drop_established() >= 2
        _given_up(svc, instance_id, task_id, 90, r"its sender on the source has sent nothing for \d+ s")
        detail = _copied_again(svc, client, source, instance_id, task_id, int(attr.port))
        assert "Ended the sender of an earlier, interrupted copy" in detail, detail
        assert "Ended a WAL stream of an earlier, interrupted copy" in detail, detail
        # Nothing of the lost copy holds one of the source's max_wal_senders any more.
        assert not set(earlier) & set(_copy_senders(source))
        assert not any(is_alive(pid) for pid in earlier)
    finally:
        for f in forwarders:
            f.close()


def test_a_copy_from_a_source_before_13_whose_sender_sends_nothing_starts_again(
    fresh_service, e2e_base: Path
) -> None:
    """Before PostgreSQL 13 the source shows no count of what a base backup's sender has sent: a
    copy whose sender ran and sent nothing (frozen here; behind a lost flow alike) waited for ever.
    Past the copy's first data (its checkpoint is over), a silence as long as the limit is a stall."""
    require_migratable_major(12)
    svc = fresh_service
    svc.extra_env.update(
        CLOUDMIG_COPY_STALL_SECONDS="3",
        CLOUDMIG_COPY_STALL_LIMIT_SECONDS="12",
        CLOUDMIG_BASEBACKUP_MAX_RATE_KB="1024",
    )
    source = SourceCluster.create(make_base_dir("src12-", parent=e2e_base), major=12)
    try:
        source.create_migration_account("migratetest", MIGRATION_PASSWORD)
        source.sql(
            "CREATE TABLE filler AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 200000) g"
        )
        svc.start()
        client = svc.tea()
        instance_id = create_instance(client, klass="pg.n2.small.2c", major=12)
        port = int(wait_running(client, instance_id).port)
        task_id = create_migration(client, instance_id, source).task_id
        wait_for(lambda: _copying(svc, instance_id, task_id), 90, interval=0.2, what="the copy to start")

        [sender] = _copy_senders(source, holding_no_slot=True)
        with stopped(sender):
            _given_up(
                svc,
                instance_id,
                task_id,
                60,
                "its sender runs on the source, which does not show what it sends",
            )
            wait_for(
                lambda: set(_copy_senders(source, holding_no_slot=True)) - {sender},
                60,
                interval=0.5,
                what="the next copy",
            )
        wait_for(lambda: not is_alive(sender), 10, interval=0.2, what="the earlier copy's sender to end")
        detail = str(wait_streaming(client, instance_id, task_id, timeout=240).detail)
        assert "Restart full backup of source data" in detail
        assert "Ended the sender of an earlier, interrupted copy" in detail, detail
        assert "[Task failed]" not in detail
        with connect_target(svc, instance_id, port) as conn:
            assert conn.execute("SELECT count(*) FROM filler").fetchone() == (200000,)
    finally:
        source.destroy()
