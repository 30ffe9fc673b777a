"""Switchover with the application still running: write unavailability (last acknowledged write on
the source to the first acknowledged write on the new primary) with writers that keep writing
through ActivateMigrationTargetInstance, at 10 and 500 transactions a second.

The migration account has the PostgreSQL 15 fence privileges, so cloudmig fences the source
(read-only for new transactions, sessions ended), proves nothing writes, waits for replay and
promotes. The writers (tests/support/writers.py: one row a transaction, autocommit) reconnect to
the source on errors and move to the new primary once Describe says `success` (polled every
50 ms, as an application waiting for the switch would).

Baseline in the same run, alternating with cloudmig: the same writers and a raw standby
(pg_basebackup) switched over by hand: `ALTER SYSTEM SET default_transaction_read_only = on`,
`pg_reload_conf()`, end the application's sessions, wait until the standby replayed the source's
WAL insert position, `pg_promote()`; the writers move once pg_promote returns.
"""

from __future__ import annotations

import time
from typing import Any

from tests.support import cutover, flows
from tests.support.pgcluster import SourceCluster
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

from bench.common import (
    MIGRATION_ACCOUNT,
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

NAME = "switchover"
TITLE = "Switchover"
GOAL_SECONDS = 1.0
GOAL_OVER_BASELINE_SECONDS = 0.3
RATES = (10, 500)  # transactions a second, all writers together
QUICK_RATES = (500,)  # the CI smoke check: one migration and one hand-made standby
PER_WRITER = 100  # a writer at most this many a second (one connection, one row at a time)
WRITE_BEFORE_SECONDS = 1.0
DESCRIBE_POLL_SECONDS = 0.05


_runs = [0]


def _writers(rate: int, route: Route) -> WriterPool:
    """Writers with ids of their own in this benchmark (the ledger keeps every run's rows)."""
    _runs[0] += 1
    n = max(1, rate // PER_WRITER)
    return WriterPool(Writer(_runs[0] * 100 + i, rate / n, route) for i in range(n))


def _source_endpoint(src: SourceCluster) -> Endpoint:
    return Endpoint.tcp(src.host, src.port, APP_ROLE, APP_PASSWORD)


def _lift_fence(src: SourceCluster) -> None:
    cutover.lift_fence_by_hand(src)
    flows.wait_for(lambda: not cutover.new_sessions_read_only(src), 10, interval=0.02, what="fence lifted")


def run_cloudmig(svc: Any, client: Any, src: SourceCluster, rate: int) -> dict[str, Any]:
    attr = new_instance(svc, client)
    instance_id = attr.dbinstance_id
    try:
        task_id = int(flows.create_migration(client, instance_id, src).task_id)
        flows.wait_streaming(client, instance_id, task_id, timeout=300)
        route = Route(_source_endpoint(src))
        with _writers(rate, route) as pool:
            time.sleep(WRITE_BEFORE_SECONDS)
            t_call = time.monotonic()
            refusal = cutover.activate_refusal(client, instance_id)
            if refusal is not None:
                raise RuntimeError(f"Activate refused: {refusal}")
            t_returned = time.monotonic()
            while (stage := flows.migration_item(client, instance_id, task_id).migrate_stage) != "success":
                if stage != "switch" or time.monotonic() - t_call > 120:
                    raise RuntimeError(f"switchover ended in stage {stage}")
                time.sleep(DESCRIBE_POLL_SECONDS)
            t_success = time.monotonic()
            route.move_to(Endpoint.tcp(attr.connection_string, int(attr.port), APP_ROLE, APP_PASSWORD))
            pool.wait_acks(1, side="target", timeout=60)
        with flows.connect_target_tcp(attr, APP_ROLE, APP_PASSWORD) as conn:
            on_target = ledger_rows(conn)
        item = describe_raw(svc, instance_id, task_id)
        ev = item.get("Evidence") or {}
        return {
            "unavailable": pool.unavailability(),
            "activate_call": t_returned - t_call,
            "to_success": t_success - t_call,
            "read_only_errors": pool.errors()["read_only_source"],
            "acked_missing_on_target": len(pool.rows("source") - on_target),
            "data_loss": item.get("DataLoss"),
            "evidence": {
                k: ev.get(k)
                for k in ("GateSeconds", "CatchupSeconds", "PromoteSeconds", "TotalSeconds", "Fence")
            },
        }
    finally:
        delete_instance(client, instance_id)
        _lift_fence(src)
        drop_inactive_slots(src)


def run_raw(ws: Workspace, src: SourceCluster, rate: int, rep: int) -> dict[str, Any]:
    raw = RawStandby(ws, src, f"bench_switch_{rate}_{rep}")
    try:
        raw.copy(300)
        raw.start()
        raw.wait_streaming(time.monotonic(), 300)
        route = Route(_source_endpoint(src))
        with _writers(rate, route) as pool:
            time.sleep(WRITE_BEFORE_SECONDS)
            t_call = time.monotonic()
            with src.connect() as sconn, raw.connect() as tconn:
                sconn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                sconn.execute("SELECT pg_reload_conf()")
                sconn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (APP_ROLE,)
                )
                cut = sconn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
                while not tconn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(cut),)
                ).fetchone()[0]:  # type: ignore[index]
                    time.sleep(0.005)
                tconn.execute("SELECT pg_promote()")
            t_promoted = time.monotonic()
            route.move_to(Endpoint.tcp(src.host, raw.port, APP_ROLE, APP_PASSWORD))
            pool.wait_acks(1, side="target", timeout=60)
        with raw.connect() as conn:
            on_target = ledger_rows(conn)
        return {
            "unavailable": pool.unavailability(),
            "promoted_after": t_promoted - t_call,
            "read_only_errors": pool.errors()["read_only_source"],
            "acked_missing_on_target": len(pool.rows("source") - on_target),
        }
    finally:
        raw.destroy()
        _lift_fence(src)


def run(mode: Mode) -> Result:
    repeats = mode.switch_repeats
    rates = QUICK_RATES if mode.quick else RATES
    res = Result(
        NAME,
        TITLE,
        params={"repeats": repeats, "rates": list(rates), "writer_seconds_before": WRITE_BEFORE_SECONDS},
    )
    cm: dict[int, list[dict[str, Any]]] = {r: [] for r in rates}
    raw: dict[int, list[dict[str, Any]]] = {r: [] for r in rates}
    with Workspace(NAME) as ws, MachineLoad() as load:
        src = ws.source(1)
        prepare_source(src)
        cutover.grant_fence(src, MIGRATION_ACCOUNT)
        svc = ws.service()
        client = svc.tea()
        for rep in range(repeats):
            for rate in rates:
                order = ("cloudmig", "raw") if rep % 2 == 0 else ("raw", "cloudmig")
                for m in order:
                    if m == "cloudmig":
                        cm[rate].append(run_cloudmig(svc, client, src, rate))
                        log(
                            f"  switchover {rate}/s rep {rep + 1}: cloudmig {cm[rate][-1]['unavailable']:.3f} s"
                        )
                    else:
                        raw[rate].append(run_raw(ws, src, rate, rep))
                        log(
                            f"  switchover {rate}/s rep {rep + 1}: by hand {raw[rate][-1]['unavailable']:.3f} s"
                        )
    res.load = load.as_dict()
    data: dict[str, Any] = {"rates": {}}
    for rate in rates:
        c, r = cm[rate], raw[rate]
        d = data["rates"][str(rate)] = {
            "cloudmig": {
                k: summarize([x[k] for x in c]) for k in ("unavailable", "activate_call", "to_success")
            },
            "raw": {k: summarize([x[k] for x in r]) for k in ("unavailable", "promoted_after")},
            "evidence": {
                k: summarize([x["evidence"][k] for x in c if isinstance(x["evidence"].get(k), int | float)])
                for k in ("GateSeconds", "CatchupSeconds", "PromoteSeconds", "TotalSeconds")
            },
            "overhead": summarize([a["unavailable"] - b["unavailable"] for a, b in zip(c, r, strict=False)]),
            "read_only_errors": sum(x["read_only_errors"] for x in c),
            "acked_missing_on_target": sum(x["acked_missing_on_target"] for x in c + r),
            "data_loss": [x["data_loss"] for x in c if x["data_loss"]],
            "runs": {"cloudmig": c, "raw": r},
        }
        med, base = d["cloudmig"]["unavailable"].get("median"), d["raw"]["unavailable"].get("median")
        if med is not None:
            res.goals.append(
                goal(
                    f"switchover at {rate} tx/s: write unavailability (median)",
                    f"< {GOAL_SECONDS:.0f} s",
                    med,
                    med < GOAL_SECONDS,
                    f"spread {fmt_s(d['cloudmig']['unavailable'])}",
                    source="issue #11",
                )
            )
        if med is not None and base is not None:
            res.goals.append(
                goal(
                    f"switchover at {rate} tx/s: cloudmig - by hand (medians)",
                    f"< {GOAL_OVER_BASELINE_SECONDS} s",
                    med - base,
                    med - base < GOAL_OVER_BASELINE_SECONDS,
                    f"by hand {fmt_s(d['raw']['unavailable'])}",
                    source="issue #11",
                )
            )
        if d["acked_missing_on_target"]:
            res.notes.append(
                f"{rate}/s: {d['acked_missing_on_target']} acknowledged rows missing on the new primary!"
            )
        if d["data_loss"]:
            res.notes.append(f"{rate}/s: DataLoss reported on a clean switchover: {d['data_loss']}")
    res.data = data
    return res


def render(res: Result) -> str:
    p = res.params
    lines = [
        f"Source pgbench scale 1; the migration account has the fence privileges. Writers insert one row a "
        f"transaction (autocommit; at most {PER_WRITER}/s a connection) for {p['writer_seconds_before']:.0f} s "
        "before the call and keep writing through it: on the source until told, reconnecting on errors, "
        f"then on the new primary (cloudmig: once Describe says success, polled every {DESCRIBE_POLL_SECONDS * 1000:.0f} ms; "
        "by hand: once pg_promote returns). Unavailability: last acknowledged write on the source to the first on "
        f"the new primary. {p['repeats']} run(s) per rate, alternating cloudmig and by hand.",
        "",
        "| rate | cloudmig unavailability | by hand | cloudmig - by hand (paired) | Activate returns | Describe success |",
        "|---|---|---|---|---|---|",
    ]
    for rate, d in res.data["rates"].items():
        c, r = d["cloudmig"], d["raw"]
        lines.append(
            f"| {rate}/s | {fmt_s(c['unavailable'])} | {fmt_s(r['unavailable'])} | {fmt_s(d['overhead'])} | "
            f"{fmt_s(c['activate_call'])} | {fmt_s(c['to_success'])} |"
        )
    lines.append("")
    for rate, d in res.data["rates"].items():
        e = d["evidence"]
        lines.append(
            f"- {rate}/s, from the evidence: gate (fence + proof) {fmt_s(e['GateSeconds'])}, request → promotion "
            f"{fmt_s(e['CatchupSeconds'])}, promotion {fmt_s(e['PromoteSeconds'])}, request → success "
            f"{fmt_s(e['TotalSeconds'])}; writes refused read-only by the fence: {d['read_only_errors']}; "
            f"acknowledged rows missing on the new primary: {d['acked_missing_on_target']}; DataLoss reported: "
            f"{len(d['data_loss'])}."
        )
    return "\n".join(lines)
