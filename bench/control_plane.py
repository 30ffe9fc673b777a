"""Control plane: DescribeCloudMigrationResult latency (median, p99) and requests per second with
10,000 tasks in the store, against the same service with only one instance's tasks (the baseline).

The store is filled directly through cloudmig's own tables (one transaction; inserting through the
API would take minutes): finished precheck and migration tasks with check reports, results,
ReplicationInfo, Progress and events like real ones, spread over 200 instances. The instance the
client asks about is a real one with 50 of those tasks.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from tests.support import flows
from tests.support.service import Service

from bench.common import (
    PG_MAJOR,
    MachineLoad,
    Mode,
    Result,
    Workspace,
    goal,
    log,
    new_instance,
    percentile,
    summarize,
)
from cloudmig.checks import CATALOGUE

NAME = "control"
TITLE = "Control plane"
TASKS_PER_INSTANCE = 50
PHASES = ("small", "big")
# The real catalogue, so the filler tasks carry reports of the size and shape real ones have.
CHECKS = [(check.section, check.name) for check, _ in CATALOGUE]
EVENTS = [
    (
        "Backup source data",
        "Start full backup of source data by pg_basebackup through slot cloudmig_task_{id}",
    ),
    ("Backup source data", "Full backup finished: 1612.4 MB in 41.3 s"),
    ("Start RDS instance", "Start RDS instance as slave for data replication"),
    ("Synchronize data", "Synchronize data from source to RDS by streaming replication "),
    ("Synchronize data", "Standby caught up with the source; replication is streaming"),
    ("Switch over", "Switchover requested (SwitchTimeMode 0)"),
    ("Switch over", "Target promoted on timeline 2; replication slot dropped on the source"),
]


def _report() -> str:
    out, section = [], None
    for sec, name in CHECKS:
        if sec != section:
            out.append(f"[{sec}]")
            section = sec
        out.append(f"{name}: success")
    out.append("*Migrate check success*")
    return "".join(line + "\n" for line in out)


def _replication_info(lsn: str) -> str:
    return json.dumps(
        {
            "Status": "streaming",
            "ReceiveStartLsn": "0/3000000",
            "ReceiveStartTli": "1",
            "ReceivedLsn": lsn,
            "ReceivedTli": "1",
            "LatestEndLsn": lsn,
            "LatestEndTime": "2024-05-01 10:00:00.123+00",
            "LastMsgSendTime": "2024-05-01 10:00:00.123+00",
            "LastMsgReceiptTime": "2024-05-01 10:00:00.124+00",
            "ReplayLsn": lsn,
            "ReplayTimestamp": "2024-05-01 10:00:00.100+00",
            "ReplayLag": "0",
            "Synced": "true",
            "IsSlave": "false",
            "Conninfo": "user=migratetest passfile=/run/cloudmig/passfiles/task-1.pgpass host=127.0.0.1 "
            "port=1 application_name=rds_db_instance",
        },
        separators=(",", ":"),
    )


def fill_store(svc: Service, real_instance: str, total: int, *, only_real: bool) -> int:
    """Insert finished tasks (and their events) into the service's SQLite; returns how many."""
    from cloudmig.store.db import make_engine
    from cloudmig.store.tables import instances, task_events, tasks

    engine = make_engine(f"sqlite:///{svc.data_dir / 'cloudmig.db'}")
    rnd = random.Random(7)
    now = datetime.now(UTC)
    report = _report()
    results = json.dumps([{"Section": s, "Name": n, "Level": "success", "Message": ""} for s, n in CHECKS])
    with engine.begin() as c:
        max_port = max([int(p) for p in c.execute(select(instances.c.port)).scalars()] or [0])
        targets = [real_instance]
        if not only_real:
            n_fake = max(0, (total - TASKS_PER_INSTANCE) // TASKS_PER_INSTANCE)
            fakes = [
                {
                    "id": "pgm-"
                    + "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16)),
                    "status": "Running",
                    "engine": "PostgreSQL",
                    "engine_version": str(PG_MAJOR),
                    "instance_class": "pg.n2.medium.2c",
                    "storage_gb": 20,
                    "port": max_port + 1000 + i,
                    "created_at": now,
                    "modified_at": now,
                }
                for i in range(n_fake)
            ]
            c.execute(insert(instances), fakes)
            targets = [f["id"] for f in fakes]
        count = TASKS_PER_INSTANCE if only_real else total - TASKS_PER_INSTANCE
        rows = []
        for i in range(count):
            inst = targets[i % len(targets)]
            kind = "migration" if i % 2 else "precheck"
            # Finished more than a day ago: the post-switch watch of every one of them is over.
            at = now - timedelta(days=1, minutes=8 * (count - i))
            lsn = f"0/{rnd.randrange(1 << 28, 1 << 31):X}"
            rows.append(
                {
                    "kind": kind,
                    "name": f"bench-{kind}-{'r' if only_real else 'f'}-{i}",
                    "instance_id": inst,
                    "source_ip": "127.0.0.1",
                    "source_port": 1,
                    "source_account": "migratetest",
                    "source_password_enc": "gAAAAAB-not-a-real-token",
                    "source_category": "ecsonvpc",
                    "stage": "success" if kind == "migration" else "precheck",
                    "replication_state": "finish" if kind == "migration" else "unstarted",
                    "status": "succeeded",
                    "reason": "",
                    "report": report,
                    "check_results": results,
                    "replication_info": _replication_info(lsn) if kind == "migration" else "",
                    "progress": json.dumps(
                        {
                            "BaseBackup": {
                                "Phase": "done",
                                "BytesDone": 1690000000,
                                "BytesTotal": 1690000000,
                                "RateBytesPerSecond": 40900000,
                                "EtaSeconds": 0.0,
                                "ElapsedSeconds": 41.3,
                            },
                            "Replication": {
                                "SourceLsn": lsn,
                                "ReceivedLsn": lsn,
                                "ReplayedLsn": lsn,
                                "LagBytes": 0,
                                "ObservedAt": at.timestamp(),
                                "LagSeconds": 0.0,
                                "CatchUpSeconds": 0.0,
                            },
                        }
                    )
                    if kind == "migration"
                    else "{}",
                    "evidence": json.dumps(
                        {
                            "CutLsn": lsn,
                            "ReplayLsnAtPromote": lsn,
                            "NewTimeline": 2,
                            "WatchUntil": at.timestamp() + 3600,
                        }
                    )
                    if kind == "migration"
                    else "{}",
                    "request": "{}",
                    "created_at": at,
                    "modified_at": at,
                }
            )
        c.execute(insert(tasks), rows)
        ids = c.execute(
            select(tasks.c.id, tasks.c.kind).where(
                tasks.c.name.like(f"bench-%-{'r' if only_real else 'f'}-%")
            )
        ).all()
        events = []
        for tid, kind in ids:
            for sec, text in EVENTS if kind == "migration" else EVENTS[:0]:
                events.append({"task_id": tid, "at": now, "section": sec, "text": text.format(id=tid)})
        if events:
            c.execute(insert(task_events), events)
    engine.dispose()
    return count


def _describe(client: Any, instance_id: str, task_id: int | None) -> int:
    if task_id is None:
        return len(flows.migration_items(client, instance_id))
    return len(flows.migration_items(client, instance_id, task_id=task_id))


def latencies(svc: Service, instance_id: str, task_id: int | None, n: int) -> list[float]:
    client = svc.tea()
    _describe(client, instance_id, task_id)  # warm up (connection, caches)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        _describe(client, instance_id, task_id)
        out.append(time.perf_counter() - t)
    return out


def _client_loop(args: tuple[str, int, str, str, str, int, float, float]) -> tuple[list[float], int, str]:
    """One load-generating process: Describe by TaskId from `start` to `end` (wall clock)."""
    base, port, key_id, secret, instance_id, task_id, start, end = args
    from pathlib import Path

    svc = Service(Path(base), port=port)
    svc.key_id, svc.key_secret = key_id, secret
    client = svc.tea()
    lat: list[float] = []
    errors, first = 0, ""
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < end:
        t = time.perf_counter()
        try:
            _describe(client, instance_id, task_id)
            lat.append(time.perf_counter() - t)
        except Exception as exc:
            errors += 1
            first = first or f"{type(exc).__name__}: {str(exc)[:300]}"
    return lat, errors, first


def _warm(seconds: float) -> int:
    """Runs once in each client process before any measurement: imports done, workers busy."""
    import alibabacloud_rds20140815.client  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def client_pool(clients: int) -> Any:
    """Fresh interpreters (spawn: no connection inherited from this process), imports done."""
    pool = multiprocessing.get_context("spawn").Pool(clients)
    pids = set(pool.map(_warm, [1.0] * clients, chunksize=1))
    if len(pids) < clients:
        pool.map(_warm, [2.0] * clients, chunksize=1)
    return pool


def throughput(
    pool: Any, svc: Service, instance_id: str, task_id: int, clients: int, seconds: float
) -> dict[str, Any]:
    start = time.time() + 0.5  # all processes start together
    end = start + seconds
    args = [(str(svc.base), svc.port, svc.key_id, svc.key_secret, instance_id, task_id, start, end)] * clients
    parts = pool.map(_client_loop, args, chunksize=1)
    lat = [x for p, _, _ in parts for x in p]
    return {
        "seconds": seconds,
        "requests": len(lat),
        "errors": sum(e for _, e, _ in parts),
        "first_error": next((f for _, _, f in parts if f), ""),
        "latencies": lat,
    }


def _lat_summary(xs: list[float]) -> dict[str, Any]:
    s = summarize(xs)
    if s.get("n"):
        s["p99"] = percentile(xs, 99)
        s["p90"] = percentile(xs, 90)
        del s["values"]
    return s


def _pid_cpu(svc: Service) -> float:
    from bench.common import proc_cpu_seconds

    assert svc.proc is not None
    return proc_cpu_seconds(svc.proc.pid)


def _idle_cpu(svcs: dict[str, Service], seconds: float) -> dict[str, float]:
    """Share of one CPU each service used over the same idle window (no API calls)."""
    c0 = {k: _pid_cpu(s) for k, s in svcs.items()}
    time.sleep(seconds)
    return {k: (_pid_cpu(s) - c0[k]) / seconds for k, s in svcs.items()}


def run(mode: Mode) -> Result:
    res = Result(
        NAME,
        TITLE,
        params={
            "store_tasks": mode.store_tasks,
            "tasks_of_the_instance": TASKS_PER_INSTANCE,
            "samples": mode.describe_samples,
            "rps_clients": mode.rps_clients,
            "rps_seconds": mode.rps_seconds,
            "idle_seconds": mode.control_idle_seconds,
            "client": "alibabacloud-rds20140815 (tea, V3 signatures), on the same machine",
            "throttle": "disabled (CLOUDMIG_THROTTLE_RATE_PER_SECOND=0); the default is 50 req/s per key",
        },
    )
    with Workspace(NAME) as ws, MachineLoad() as load:
        # Two services side by side, the baseline with one instance's tasks and the other with the
        # full store; measurements alternate between them so that both see the same machine.
        svcs: dict[str, Service] = {}
        ids: dict[str, tuple[str, int]] = {}

        def setup(phase: str) -> None:
            # The per-key throttle (50 req/s by default) would measure itself, not the service.
            svc = svcs[phase] = ws.service(CLOUDMIG_THROTTLE_RATE_PER_SECOND="0")
            client = svc.tea()
            instance_id = new_instance(svc, client).dbinstance_id
            fill_store(svc, instance_id, mode.store_tasks, only_real=True)
            task_id = int(flows.migration_items(client, instance_id)[0].task_id)
            if phase == "big":
                t = time.monotonic()
                fill_store(svc, instance_id, mode.store_tasks, only_real=False)
                res.data["fill_seconds"] = time.monotonic() - t
            ids[phase] = (instance_id, task_id)

        with ThreadPoolExecutor(len(PHASES)) as setups:
            for f in [setups.submit(setup, phase) for phase in PHASES]:
                f.result()
        pool = client_pool(mode.rps_clients)
        ws.defer(pool.terminate)
        log(f"  control: stores ready ({mode.store_tasks} tasks filled in {res.data['fill_seconds']:.1f} s)")
        idle = _idle_cpu(svcs, mode.control_idle_seconds)
        by_id: dict[str, list[float]] = {p: [] for p in PHASES}
        page: dict[str, list[float]] = {p: [] for p in PHASES}
        rounds = 5
        for r in range(rounds):
            for phase in PHASES if r % 2 == 0 else PHASES[::-1]:
                svc, (iid, tid) = svcs[phase], ids[phase]
                by_id[phase] += latencies(svc, iid, tid, mode.describe_samples // rounds)
                page[phase] += latencies(svc, iid, None, max(4, mode.describe_samples // (3 * rounds)))
        tps: dict[str, list[dict[str, Any]]] = {p: [] for p in PHASES}
        for r in range(2):
            for phase in PHASES if r % 2 == 0 else PHASES[::-1]:
                svc, (iid, tid) = svcs[phase], ids[phase]
                cpu0 = _pid_cpu(svc)
                tp = throughput(pool, svc, iid, tid, mode.rps_clients, mode.rps_seconds / 2)
                tp["service_cpu_seconds"] = _pid_cpu(svc) - cpu0
                tps[phase].append(tp)
        phases: dict[str, Any] = {}
        for phase in PHASES:
            a, b = tps[phase]
            requests = a["requests"] + b["requests"]
            lat = a["latencies"] + b["latencies"]
            phases[phase] = {
                "by_task_id": _lat_summary(by_id[phase]),
                "page": _lat_summary(page[phase]),
                "idle_cpu_share": idle[phase],
                "throughput": {
                    "clients": mode.rps_clients,
                    "seconds": a["seconds"] + b["seconds"],
                    "requests": requests,
                    "errors": a["errors"] + b["errors"],
                    "first_error": a["first_error"] or b["first_error"],
                    "rps": requests / (a["seconds"] + b["seconds"]),
                    "latency": _lat_summary(lat),
                    "service_cpu_seconds_per_request": (a["service_cpu_seconds"] + b["service_cpu_seconds"])
                    / max(requests, 1),
                },
            }
            log(
                f"  control {phase}: by TaskId median {phases[phase]['by_task_id']['median'] * 1000:.1f} ms, "
                f"page median {phases[phase]['page']['median'] * 1000:.1f} ms, "
                f"{phases[phase]['throughput']['rps']:.0f} req/s, idle CPU {idle[phase] * 100:.1f}%"
            )
    res.load = load.as_dict()
    res.data["phases"] = phases
    big, small = phases["big"], phases["small"]
    res.data["ratio_big_over_small"] = {
        "by_task_id_median": big["by_task_id"]["median"] / small["by_task_id"]["median"],
        "page_median": big["page"]["median"] / small["page"]["median"],
        "rps": big["throughput"]["rps"] / small["throughput"]["rps"],
    }
    p99 = big["by_task_id"]["p99"]
    res.goals.append(
        goal(
            f"Describe by TaskId with {mode.store_tasks:,} tasks: p99 (one client)",
            "≤ 100 ms",
            p99,
            p99 <= 0.1,
            f"median {big['by_task_id']['median'] * 1000:.1f} ms",
            source="proposed",
        )
    )
    r = res.data["ratio_big_over_small"]["by_task_id_median"]
    res.goals.append(
        goal(
            f"Describe latency does not grow with the store (median, {mode.store_tasks:,} vs "
            f"{TASKS_PER_INSTANCE} tasks)",
            "≤ 1.5x",
            r,
            r <= 1.5,
            source="proposed",
        )
    )
    for phase in PHASES:
        t = phases[phase]["throughput"]
        if t["errors"]:
            res.notes.append(
                f"{t['errors']} failed requests under load ({phase} store), e.g. {t['first_error']}"
            )
    return res


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def render(res: Result) -> str:
    d, p = res.data, res.params
    ph = d["phases"]
    stores = (("small", f"{p['tasks_of_the_instance']} tasks"), ("big", f"{p['store_tasks']:,} tasks"))
    lines = [
        f"One real instance with {p['tasks_of_the_instance']} finished tasks (half of them migrations, each "
        f"with a full check report, ReplicationInfo, Progress, evidence and events). Baseline: a service "
        f"with only those; the other service has {p['store_tasks']:,} such tasks over 200 instances. Both "
        f"run side by side and the measurements alternate between them. Latency: {p['samples']} sequential "
        f"calls from one client; throughput: {p['rps_clients']} client processes for {p['rps_seconds']:.0f} s. "
        f"Client: {p['client']}, so client and service share the CPUs. Throttle: {p['throttle']}.",
        "",
        "| call | store | median | p90 | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("by_task_id", "Describe, TaskId filter (1 item)"),
        ("page", "Describe, page of 25 items"),
    ):
        for phase, store in stores:
            s = ph[phase][key]
            lines.append(
                f"| {label} | {store} | {_ms(s['median'])} | {_ms(s['p90'])} | {_ms(s['p99'])} | {_ms(s['max'])} |"
            )
    lines += [
        "",
        "| store | req/s (TaskId filter) | median | p99 | errors | service CPU per request | "
        f"service CPU when idle ({p['idle_seconds']:.0f} s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, store in stores:
        t = ph[phase]["throughput"]
        lines.append(
            f"| {store} | {t['rps']:.0f} | {_ms(t['latency']['median'])} | "
            f"{_ms(t['latency']['p99'])} | {t['errors']} | {_ms(t['service_cpu_seconds_per_request'])} | "
            f"{ph[phase]['idle_cpu_share'] * 100:.1f}% of a CPU |"
        )
    r = d["ratio_big_over_small"]
    lines += [
        "",
        f"{p['store_tasks']:,}-task store / baseline: by-TaskId median x{r['by_task_id_median']:.2f}, page median "
        f"x{r['page_median']:.2f}, req/s x{r['rps']:.2f}.",
    ]
    return "\n".join(lines)
