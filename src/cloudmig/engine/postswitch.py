"""After a switchover, watch the old source: rows written there after the cut are not on the new
primary. Only real loss is reported.

At the cut the watch records, per database, the change counters of user tables
(`pg_stat_user_tables`: inserted + updated + deleted rows) and the ANALYZE counts, and the source's
transaction-id horizon. Later, rows changed since the cut count as lost only when transactions
other than ANALYZE (autovacuum's bookkeeping takes a transaction id) ended after the cut: counters
that grow without any such transaction are statistics of writes from before the cut reaching the
server late (a backend reports them up to ~10 s after its last transaction), and are absorbed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import psycopg

from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.lsn import format_lsn
from cloudmig.domain.switchover import DataLoss, SwitchEvidence
from cloudmig.engine import fence
from cloudmig.pg import activity, probes, tablestats
from cloudmig.pg.source import Source
from cloudmig.pg.tablestats import TableCounters
from cloudmig.runtime import AppContext, task_source
from cloudmig.store import tasks as task_store
from cloudmig.store.records import TaskRecord

log = logging.getLogger(__name__)

APPLICATION_NAME = "cloudmig-watch"


def _counters(source: Source, conn: psycopg.Connection) -> dict[str, list[int]]:
    """Per database (statistics views show only the connected one): `conn` for its own, a session
    of its own for each other."""
    out: dict[str, list[int]] = {}
    for db in tablestats.databases(conn):
        try:
            if db == conn.info.dbname:
                c = tablestats.counters(conn)
            else:
                with source.connect(db, application_name=APPLICATION_NAME) as dbconn:
                    c = tablestats.counters(dbconn)
        except psycopg.Error:
            continue  # a database the account may not enter: nothing to compare
        out[db] = [c.user_row_changes, c.analyzes]
    return out


def take_baseline(source: Source, conn: psycopg.Connection, cut_xid: int | None) -> dict[str, Any]:
    """What the watch compares against, taken at the cut (kept private in the task's progress)."""
    xid = cut_xid if cut_xid is not None else activity.completed_xid_horizon(conn)
    return {"Xid": xid, "Databases": _counters(source, conn)}


def unexplained_transactions(source: Source, conn: psycopg.Connection, watch: dict[str, Any]) -> int:
    """Transactions with an id that ended on the source since the baseline and that ANALYZE (which
    takes one and changes no user row) does not explain."""
    ended = activity.completed_xid_horizon(conn) - int(watch["Xid"])
    if ended <= 0:
        return 0
    analyzes = max(_sum(_counters(source, conn)).analyzes - _sum(watch["Databases"]).analyzes, 0)
    return max(ended - analyzes, 0)


def check_all(ctx: AppContext) -> None:
    since = ctx.now() - timedelta(hours=ctx.settings.post_switch_watch_hours)
    for task in task_store.succeeded_migrations(ctx.db, since):
        ev = SwitchEvidence.load(task.evidence)
        if ev.watch_until is None or ev.watch_until < ctx.now() or not task.progress.get("_Watch"):
            continue
        try:
            check_one(ctx, task)
        except Exception:
            log.exception("post-switch check of task %s failed", task.id)


def _sum(counters: dict[str, list[int]]) -> TableCounters:
    total = TableCounters(0, 0)
    for rows, analyzes in counters.values():
        total = total + TableCounters(rows, analyzes)
    return total


def check_one(ctx: AppContext, task: TaskRecord) -> None:
    ev = SwitchEvidence.load(task.evidence)
    watch: dict[str, Any] = dict(task.progress["_Watch"])
    source = task_source(ctx, task)
    now = ctx.now()
    try:
        with source.connect(application_name=APPLICATION_NAME) as conn:
            xid_now = activity.completed_xid_horizon(conn)
            lsn = probes.current_wal_lsn(conn)
            counters = _counters(source, conn)
            ev.fence_still_up = fence.still_up(conn, ev)
    except psycopg.Error:
        ev.source_checked_at, ev.source_reachable = now, False
        task_store.update_task_quietly(ctx.db, task.id, evidence=ev.to_json())
        return
    base: dict[str, list[int]] = watch["Databases"]
    rows_after = sum(max(rows - base.get(db, [rows, 0])[0], 0) for db, (rows, _a) in counters.items())
    analyzes_after = max(_sum(counters).analyzes - _sum(base).analyzes, 0)
    writers_ended = xid_now - int(watch["Xid"]) > analyzes_after
    if rows_after and not writers_ended:
        # Statistics of pre-cut writes arriving late: absorb them into the baseline.
        watch["Databases"] = {db: [c[0], base.get(db, c)[1]] for db, c in counters.items()}
        rows_after = 0
    first_time = rows_after > 0 and not ev.source_writes_after_switch
    ev.source_checked_at, ev.source_reachable, ev.source_lsn_now = now, True, lsn
    ev.source_row_changes_after_cut = rows_after
    ev.source_writes_after_switch = bool(ev.source_writes_after_switch) or rows_after > 0
    values: dict[str, Any] = {"progress": {**task.progress, "_Watch": watch}}
    if rows_after > 0:
        known = ev.data_loss
        ev.data_loss = DataLoss(
            rows_after_cut=rows_after,
            bytes_not_replayed=known.bytes_not_replayed if known else ev.bytes_not_replayed or None,
            detected_at=known.detected_at if known and known.rows_after_cut else now,
        )
        values["reason"] = (
            f"writes reached the old source after the switchover: {rows_after} row change(s) are not on "
            "the new primary"
        )
    values["evidence"] = ev.to_json()
    task_store.update_task_quietly(ctx.db, task.id, **values)
    if first_time:
        task_store.add_event(
            ctx.db,
            task.id,
            now,
            SECTION_SWITCH,
            f"Writes reached the old source after the switchover ({rows_after} row changes in user tables "
            f"after the cut {format_lsn(ev.cut_lsn or 0)}); they are not on the new primary",
        )
