"""After a switchover, watch the old source: writes that reach it are not on the new primary."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg

from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.lsn import format_lsn, parse_lsn
from cloudmig.engine.switch import ROW_CHANGES_SQL
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg import probes
from cloudmig.runtime import AppContext
from cloudmig.store import tasks as task_store

log = logging.getLogger(__name__)

# WAL the old source may write on its own after the cut (checkpoint and standby snapshot records)
# is not a sign of application writes; row changes are, and so is more WAL than this.
IDLE_WAL_ALLOWANCE = 1 << 20


def check_all(ctx: AppContext) -> None:
    now = time.time()
    since = ctx.now() - timedelta(hours=ctx.settings.post_switch_watch_hours)
    for task in task_store.succeeded_migrations(ctx.db, since):
        ev = task.evidence
        if not ev.get("CutLsn") or float(ev.get("WatchUntil") or 0) < now:
            continue
        try:
            check_one(TaskContext(ctx, task))
        except Exception:
            log.exception("post-switch check of task %s failed", task.id)


def check_one(tc: TaskContext) -> None:
    ev = dict(tc.task.evidence)
    try:
        with tc.source().connect() as c:
            lsn = probes.current_wal_lsn(c)
            row = c.execute(ROW_CHANGES_SQL).fetchone()
            rows_now = int(row[0]) if row else 0
    except psycopg.Error:
        ev["SourceCheckedAt"] = time.time()
        ev["SourceReachable"] = False
        tc.observe(evidence=ev)
        return
    cut = parse_lsn(str(ev["CutLsn"]))
    wal_after = max(lsn - cut, 0)
    rows_after = max(rows_now - int(ev.get("SourceRowChangesAtCut") or rows_now), 0)
    written = rows_after > 0 or wal_after > IDLE_WAL_ALLOWANCE
    first_time = written and not ev.get("SourceWritesAfterSwitch")
    ev.update(
        SourceCheckedAt=time.time(),
        SourceReachable=True,
        SourceLsnNow=format_lsn(lsn),
        SourceWalBytesAfterCut=wal_after,
        SourceRowChangesAfterCut=rows_after,
        SourceWritesAfterSwitch=bool(ev.get("SourceWritesAfterSwitch")) or written,
    )
    tc.observe(evidence=ev)
    if first_time:
        tc.event(
            SECTION_SWITCH,
            f"Writes reached the old source after the switchover ({rows_after} row changes, {wal_after} bytes "
            f"of WAL past the cut {ev['CutLsn']}); they are not on the new primary",
        )
