"""Issue 10, failure 5: ForceSwitch works when the source is gone, which is what it is for.

With the source stopped, replication is `disconnect`: a plain Activate is refused with a hint,
ForceSwitch=1 is accepted and promotes the target with what it replayed; the evidence says the
source could not be read (bytes not replayed unknown, last known source LSN and time). cloudmig
never touches the old source afterwards except to drop the slot once it is back.
"""

from __future__ import annotations

import pytest
from Tea.exceptions import TeaException

from cloudmig.domain.lsn import parse_lsn
from tests.support.faults import (
    activate,
    cloudmig_slots,
    connect_target,
    item,
    ledger,
    migrate_to_streaming,
    timeline,
    wait_success,
)
from tests.support.flows import wait_for

pytestmark = pytest.mark.e2e

ROWS = 500


def test_forced_switch_with_the_source_gone(fresh_service, make_source) -> None:
    svc = fresh_service
    svc.extra_env.update({"CLOUDMIG_SLOT_SWEEP_SECONDS": "3600", "CLOUDMIG_POST_SWITCH_CHECK_SECONDS": "1"})
    svc.start()
    source = make_source(scale=1)
    ledger(source, ROWS)
    client, instance_id, attr, task_id = migrate_to_streaming(svc, source)
    port = int(attr.port)
    last_lsn = source.scalar("SELECT pg_current_wal_lsn()")

    def replayed() -> bool:
        with connect_target(svc, instance_id, port) as conn:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(last_lsn),)).fetchone()
        return bool(row and row[0])

    wait_for(replayed, 60, what="the rows to be replayed")
    source.stop()
    wait_for(
        lambda: item(svc, instance_id, task_id)["ReplicationState"] == "disconnect", 30, what="disconnect"
    )

    with pytest.raises(TeaException) as refused:
        activate(client, instance_id)
    assert refused.value.code == "IncorrectDBInstanceState" and "ForceSwitch=1" in refused.value.message

    body = activate(client, instance_id, force=True)
    assert body.task_id == task_id
    it = wait_success(svc, instance_id, task_id, timeout=60)
    ev = it["Evidence"]
    assert ev["Forced"] is True and ev["SourceReachableAtPromote"] is False
    assert "BytesNotReplayed" not in ev, "the bytes not replayed cannot be known without the source"
    assert parse_lsn(ev["LastKnownSourceLsn"]) >= parse_lsn(str(last_lsn)) and ev["LastKnownSourceAt"]
    assert "WatchUntil" not in ev and ev["FenceState"] == "none"
    assert "The source cannot be read: promoting with what was replayed" in it["Detail"]
    assert "bytes of source WAL not replayed: unknown (source unreachable)" in it["Detail"]
    [(slot, _, _)] = cloudmig_slots_when_up(source)
    assert f"Replication slot {slot} could not be dropped yet" in it["Detail"]
    with connect_target(svc, instance_id, port) as conn:
        assert timeline(conn) == 2
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (ROWS,)
        conn.execute("INSERT INTO ledger (id) VALUES (-1)")

    # Back: the slot goes, and nothing else happens to the old source.
    source.start()
    wait_for(lambda: cloudmig_slots(source) == [], 90, interval=0.5, what="the slot to be dropped")
    assert f"Dropped replication slot {slot} on the source after" in item(svc, instance_id, task_id)["Detail"]
    ev = item(svc, instance_id, task_id)["Evidence"]
    assert "SourceCheckedAt" not in ev and "SourceReachable" not in ev
    assert source.scalar("SHOW default_transaction_read_only") == "off"


def cloudmig_slots_when_up(source) -> list[tuple[str, bool, str | None]]:
    """The slots as the stopped source has them on disk (pg_replslot), without starting it."""
    names = sorted(
        p.name for p in (source.pgdata / "pg_replslot").iterdir() if p.name.startswith("cloudmig_")
    )
    return [(n, False, None) for n in names]
