"""Switchover: time from the ActivateMigrationTargetInstance call to the target accepting a write,
and write unavailability (last acknowledged write on the source to first acknowledged write on the
target), with an application writer that stops when Activate is called. The source is otherwise
idle and the migration caught up (streaming).

Baseline in the same run: the same writer and a hand-made standby (raw pg_basebackup, as in the
copy benchmark) switched over the way an operator would by hand: stop writes, wait until the
standby replayed the source's current LSN, `SELECT pg_promote()`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psycopg
from tests.support import flows
from tests.support.pgcluster import SourceCluster

from bench.common import (
    MIGRATION_ACCOUNT,
    MIGRATION_PASSWORD,
    MachineLoad,
    Mode,
    Result,
    Workspace,
    delete_instance,
    describe_raw,
    fmt_s,
    goal,
    log,
    new_instance,
    summarize,
)
from bench.fullcopy import RawStandby, drop_inactive_slots
from cloudmig.settings import Settings

NAME = "switchover"
TITLE = "Switchover"
GOAL_SECONDS = 1.0
WRITE_PAUSE = 0.005  # between the writer's statements
TABLE = "bench_switch"


class SourceWriter(threading.Thread):
    """Inserts rows on the source one by one (autocommit) until stopped; remembers the last ack."""

    def __init__(self, src: SourceCluster) -> None:
        super().__init__(daemon=True)
        self.src = src
        self.stop = threading.Event()
        self.last_ack = 0.0
        self.count = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            with self.src.connect() as conn:
                while not self.stop.is_set():
                    conn.execute(f"INSERT INTO {TABLE}(who) VALUES ('source')")
                    self.last_ack = time.monotonic()
                    self.count += 1
                    time.sleep(WRITE_PAUSE)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"


class TargetWriter(threading.Thread):
    """Tries to insert a row on the target until one is acknowledged (a standby refuses; a
    restarting server drops the connection: reconnect and try again)."""

    def __init__(self, connect: Any) -> None:
        super().__init__(daemon=True)
        self.connect = connect
        self.first_ack: float | None = None
        self.attempts = 0
        self.give_up = threading.Event()

    def run(self) -> None:
        conn = None
        while self.first_ack is None and not self.give_up.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                self.attempts += 1
                conn.execute(f"INSERT INTO {TABLE}(who) VALUES ('target')")
                self.first_ack = time.monotonic()
            except psycopg.errors.ReadOnlySqlTransaction:
                time.sleep(WRITE_PAUSE)
            except psycopg.Error:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                time.sleep(WRITE_PAUSE)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _prepare_source(src: SourceCluster) -> None:
    src.sql(f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), who text)")
    src.sql(f"GRANT INSERT, SELECT ON {TABLE} TO {MIGRATION_ACCOUNT}")
    src.sql(f"GRANT USAGE ON SEQUENCE {TABLE}_id_seq TO {MIGRATION_ACCOUNT}")


def _writes_then(src: SourceCluster, seconds: float) -> SourceWriter:
    w = SourceWriter(src)
    w.start()
    time.sleep(seconds)
    w.stop.set()
    w.join(10)
    if w.error:
        raise RuntimeError(f"source writer failed: {w.error}")
    return w


def run_cloudmig(svc: Any, client: Any, src: SourceCluster, write_seconds: float) -> dict[str, Any]:
    from alibabacloud_rds20140815 import models as rds

    attr = new_instance(svc, client)
    instance_id = attr.dbinstance_id
    try:
        created = flows.create_migration(client, instance_id, src)
        flows.wait_streaming(client, instance_id, created.task_id, timeout=300)

        def target() -> psycopg.Connection:
            return psycopg.connect(
                host=attr.connection_string,
                port=int(attr.port),
                user=MIGRATION_ACCOUNT,
                password=MIGRATION_PASSWORD,
                dbname="postgres",
                connect_timeout=2,
                autocommit=True,
            )

        # The application writes, then stops the moment the operator calls Activate.
        writer = _writes_then(src, write_seconds)
        tw = TargetWriter(target)
        t_call = time.monotonic()
        tw.start()
        refused = 0
        while True:
            try:
                client.activate_migration_target_instance(
                    rds.ActivateMigrationTargetInstanceRequest(
                        dbinstance_name=instance_id, switch_time_mode="0"
                    )
                )
                break
            except Exception as exc:
                # Background WAL (autovacuum, checkpoint) can make the quiet-source gate refuse.
                if "Writes are still arriving" not in str(exc) or refused >= 5:
                    tw.give_up.set()
                    raise
                refused += 1
        t_returned = time.monotonic()
        while True:
            item = describe_raw(svc, instance_id, created.task_id)
            if item.get("Status") == "failed":
                raise RuntimeError(f"switchover failed: {item.get('Reason')}")
            if item["MigrateStage"] == "success":
                t_success = time.monotonic()
                break
            if time.monotonic() - t_call > 120:
                raise RuntimeError("no success 120 s after Activate")
            time.sleep(0.1)
        tw.join(60)
        tw.give_up.set()
        if tw.first_ack is None:
            raise RuntimeError("the target never accepted a write")
        with target() as conn:
            on_target = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE who = 'source'").fetchone()
        on_source = src.scalar(f"SELECT count(*) FROM {TABLE} WHERE who = 'source'")
        evidence = item.get("Evidence") or {}
        return {
            "activate_to_write": tw.first_ack - t_call,
            "unavailable": tw.first_ack - writer.last_ack,
            "activate_call": t_returned - t_call,
            "to_success": t_success - t_call,
            "refused_not_quiet": refused,
            "writes_before": writer.count,
            "rows_missing_on_target": int(on_source) - int(on_target[0] if on_target else 0),
            "evidence": {
                k: evidence.get(k)
                for k in (
                    "CatchupSeconds",
                    "PromoteSeconds",
                    "TotalSeconds",
                    "BytesNotReplayed",
                    "SlotDropped",
                )
            },
        }
    finally:
        delete_instance(client, instance_id)
        drop_inactive_slots(src)


def run_raw(ws: Workspace, src: SourceCluster, rep: int, write_seconds: float) -> dict[str, Any]:
    raw = RawStandby(ws, src, f"bench_switch_{rep}")
    try:
        raw.copy(300)
        raw.start()
        raw.wait_streaming(time.monotonic(), 300)
        writer = _writes_then(src, write_seconds)
        tw = TargetWriter(raw.connect)
        t_call = time.monotonic()
        tw.start()
        with src.connect() as sconn, raw.connect() as tconn:
            cut = sconn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
            while True:
                ok = tconn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(cut),)).fetchone()
                if ok and ok[0]:
                    break
                time.sleep(0.005)
            tconn.execute("SELECT pg_promote(true, 60)")
        t_promoted = time.monotonic()
        tw.join(60)
        tw.give_up.set()
        if tw.first_ack is None:
            raise RuntimeError("the raw standby never accepted a write")
        return {
            "activate_to_write": tw.first_ack - t_call,
            "unavailable": tw.first_ack - writer.last_ack,
            "promote_call": t_promoted - t_call,
        }
    finally:
        raw.destroy()


def run(mode: Mode) -> Result:
    write_seconds = 1.0
    res = Result(
        NAME,
        TITLE,
        params={
            "repeats": mode.switch_repeats,
            "writer_seconds_before": write_seconds,
            # The product's defaults, as the service under test runs with them.
            "switch_quiet_seconds": Settings.model_fields["switch_quiet_seconds"].default,
            "switch_quiet_attempts": Settings.model_fields["switch_quiet_attempts"].default,
        },
    )
    cm: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    with Workspace(NAME) as ws, MachineLoad() as load:
        src = ws.source(1)
        _prepare_source(src)
        svc = ws.service()
        client = svc.tea()
        for rep in range(mode.switch_repeats):
            order = ("cloudmig", "raw") if rep % 2 == 0 else ("raw", "cloudmig")
            for m in order:
                if m == "cloudmig":
                    cm.append(run_cloudmig(svc, client, src, write_seconds))
                    log(
                        f"  switchover rep {rep + 1}: cloudmig write after {cm[-1]['activate_to_write']:.2f} s"
                    )
                else:
                    raw.append(run_raw(ws, src, rep, write_seconds))
                    log(
                        f"  switchover rep {rep + 1}: raw promote write after {raw[-1]['activate_to_write']:.2f} s"
                    )
    res.load = load.as_dict()
    d = res.data = {
        "cloudmig": {
            k: summarize([r[k] for r in cm])
            for k in ("activate_to_write", "unavailable", "activate_call", "to_success")
        },
        "raw": {
            k: summarize([r[k] for r in raw]) for k in ("activate_to_write", "unavailable", "promote_call")
        },
        "evidence": {
            k: summarize([r["evidence"][k] for r in cm if isinstance(r["evidence"].get(k), (int, float))])
            for k in ("CatchupSeconds", "PromoteSeconds", "TotalSeconds")
        },
        "refused_not_quiet": sum(r["refused_not_quiet"] for r in cm),
        "rows_missing_on_target": sum(r["rows_missing_on_target"] for r in cm),
        "runs": cm,
    }
    pairs = list(zip(cm, raw, strict=False))
    d["ratio_unavailable"] = summarize([c["unavailable"] / r["unavailable"] for c, r in pairs])
    d["overhead_unavailable"] = summarize([c["unavailable"] - r["unavailable"] for c, r in pairs])
    for key, label in (
        ("activate_to_write", "Activate call → first write on the target"),
        ("unavailable", "write unavailability"),
    ):
        med = d["cloudmig"][key].get("median")
        if med is not None:
            res.goals.append(
                goal(
                    f"switchover: {label} (median)",
                    f"< {GOAL_SECONDS:.0f} s",
                    med,
                    med < GOAL_SECONDS,
                    f"spread {fmt_s(d['cloudmig'][key])}",
                )
            )
    if d["rows_missing_on_target"]:
        res.notes.append(f"{d['rows_missing_on_target']} acknowledged source rows missing on the target!")
    if d["refused_not_quiet"]:
        res.notes.append(
            f"Activate refused {d['refused_not_quiet']} time(s) because the source's WAL moved "
            "during the quiet window (background WAL); retried."
        )
    return res


def render(res: Result) -> str:
    d, p = res.data, res.params
    c, r, e = d["cloudmig"], d["raw"], d["evidence"]
    lines = [
        f"Source pgbench scale 1, idle but for the writer: single-row INSERTs (autocommit) for "
        f"{p['writer_seconds_before']:.0f} s, stopped when Activate is called. Target writer: retries an INSERT "
        "(reconnecting if needed) from the call until one is acknowledged. Defaults: "
        f"switch_quiet_seconds {p['switch_quiet_seconds']}, switch_quiet_attempts {p['switch_quiet_attempts']}.",
        "",
        "| | cloudmig (Activate) | by hand (pg_promote on a raw standby) |",
        "|---|---|---|",
        f"| call → first write on the target | {fmt_s(c['activate_to_write'])} | {fmt_s(r['activate_to_write'])} |",
        f"| write unavailability | {fmt_s(c['unavailable'])} | {fmt_s(r['unavailable'])} |",
        f"| the call itself returns after | {fmt_s(c['activate_call'])} | {fmt_s(r['promote_call'])} |",
        f"| Describe shows success after | {fmt_s(c['to_success'])} | - |",
        "",
    ]
    if d["ratio_unavailable"].get("n"):
        lines.append(
            f"Unavailability cloudmig / by hand: median {d['ratio_unavailable']['median']:.2f}; cloudmig - by hand: "
            f"{fmt_s(d['overhead_unavailable'])}."
        )
    lines.append(
        f"From the task's evidence: catch-up {fmt_s(e['CatchupSeconds'])}, promote {fmt_s(e['PromoteSeconds'])}, "
        f"total {fmt_s(e['TotalSeconds'])}. Acknowledged source rows missing on the target: "
        f"{d['rows_missing_on_target']}."
    )
    return "\n".join(lines)
