"""Concurrency: N migrations of small databases at once on one service, against the same N one at a
time (the baseline); then the CPU the service uses per streaming migration while the sources are
idle, against the same service with no migration over the same length of time."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from tests.support import flows
from tests.support.pgcluster import SourceCluster
from tests.support.service import Service

from bench.common import (
    MachineLoad,
    Mode,
    Result,
    Workspace,
    describe_raw,
    goal,
    log,
    new_instance,
    proc_cpu_seconds,
    summarize,
)

NAME = "concurrency"
TITLE = "Concurrency and idle cost"
SCALE = 1  # pgbench scale of each small source (about 23 MB per cluster)
POLL_SECONDS = 0.3


def _create_instances(svc: Service, client: Any, n: int) -> list[str]:
    """n instances created back to back (the engine initialises them in parallel)."""
    ids = [flows.create_instance(client) for _ in range(n)]
    out = []
    for iid in ids:
        try:
            flows.wait_running(client, iid, timeout=300)
            out.append(iid)
        except AssertionError:
            out.append(new_instance(svc, client, timeout=300).dbinstance_id)
    return out


def _migrate_all(
    svc: Service, client: Any, pairs: list[tuple[str, SourceCluster]], timeout: float
) -> dict[str, Any]:
    """Start every migration, then poll until all stream; per-migration and total seconds."""
    t0 = time.monotonic()
    started: dict[str, tuple[int, float]] = {}
    for iid, src in pairs:
        created = flows.create_migration(client, iid, src)
        started[iid] = (created.task_id, time.monotonic())
    done: dict[str, float] = {}
    while len(done) < len(pairs):
        for iid, (task_id, t_start) in started.items():
            if iid in done:
                continue
            item = describe_raw(svc, iid, task_id)
            if item.get("Status") == "failed":
                raise RuntimeError(f"migration to {iid} failed: {item.get('Reason')}")
            if (item["MigrateStage"], item["ReplicationState"]) == ("increment", "streaming"):
                done[iid] = time.monotonic() - t_start
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(
                f"{len(pairs) - len(done)} migration(s) did not reach streaming in {timeout:.0f} s"
            )
        if len(done) < len(pairs):
            time.sleep(POLL_SECONDS)
    return {"total": time.monotonic() - t0, "each": [done[iid] for iid, _ in pairs]}


def _postgres_cpu(svc: Service) -> float:
    """CPU seconds of the instances' PostgreSQL processes (postmasters and their children)."""
    masters: set[int] = set()
    for pidfile in (svc.data_dir / "instances").glob("*/pgdata/postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            masters.add(int(pidfile.read_text().splitlines()[0]))
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if int(d.name) in masters or ppid in masters:
                total += proc_cpu_seconds(int(d.name))
        except (OSError, ValueError):
            continue
    return total


def _cpu_window(svc: Service, seconds: float) -> dict[str, float]:
    assert svc.proc is not None
    s0, p0 = proc_cpu_seconds(svc.proc.pid), _postgres_cpu(svc)
    time.sleep(seconds)
    s1, p1 = proc_cpu_seconds(svc.proc.pid), _postgres_cpu(svc)
    return {"service": (s1 - s0) / seconds, "postgres": (p1 - p0) / seconds}


def run(mode: Mode) -> Result:
    n = mode.concurrency
    res = Result(
        NAME,
        TITLE,
        params={
            "migrations": n,
            "pgbench_scale": SCALE,
            "cpu_window_seconds": mode.cpu_window_seconds,
            "observe_seconds": 2.0,
        },
    )
    with Workspace(NAME) as ws, MachineLoad() as load:
        sources = ws.sources(2 * n, SCALE)
        svc = ws.service()
        client = svc.tea()
        t = time.monotonic()
        ids = _create_instances(svc, client, 2 * n)
        log(f"  concurrency: {2 * n} instances Running in {time.monotonic() - t:.1f} s")
        timeout = 300 + 60 * n
        # Baseline for the CPU: the same service and instances, none of them migrating.
        idle = _cpu_window(svc, mode.cpu_window_seconds)
        seq_each: list[float] = []
        t = time.monotonic()
        for iid, src in zip(ids[:n], sources[:n], strict=True):
            seq_each += _migrate_all(svc, client, [(iid, src)], timeout)["each"]
        seq_total = time.monotonic() - t
        log(f"  concurrency: {n} one at a time in {seq_total:.1f} s")
        # The first n keep streaming (idle sources) while the next n start together.
        conc = _migrate_all(svc, client, list(zip(ids[n:], sources[n:], strict=True)), timeout)
        log(f"  concurrency: {n} at once in {conc['total']:.1f} s")
        busy = _cpu_window(svc, mode.cpu_window_seconds)
    res.load = load.as_dict()
    per_service = (busy["service"] - idle["service"]) / (2 * n)
    per_pg = (busy["postgres"] - idle["postgres"]) / (2 * n)
    res.data = {
        "sequential_total_seconds": seq_total,
        "sequential_each": summarize(seq_each),
        "concurrent_total_seconds": conc["total"],
        "concurrent_each": summarize(conc["each"]),
        "ratio_concurrent_over_sequential": conc["total"] / seq_total,
        "speedup": seq_total / conc["total"],
        "all_streaming": True,
        "cpu_idle_service": idle["service"],
        "cpu_streaming_service": busy["service"],
        "cpu_per_migration_service": per_service,
        "cpu_idle_postgres": idle["postgres"],
        "cpu_streaming_postgres": busy["postgres"],
        "cpu_per_migration_postgres": per_pg,
    }
    res.goals.append(goal(f"all {n} concurrent migrations reach streaming", "all", n, True))
    res.goals.append(
        goal(
            f"{n} at once faster than one at a time",
            "< 1.0x",
            conc["total"] / seq_total,
            conc["total"] < seq_total,
            f"{seq_total / conc['total']:.2f}x faster",
            source="proposed",
        )
    )
    res.goals.append(
        goal(
            "service CPU per streaming migration, idle source",
            "≤ 1% of a CPU",
            per_service,
            per_service <= 0.01,
            f"{per_service * 100:.2f}% of a CPU",
            source="proposed",
        )
    )
    return res


def render(res: Result) -> str:
    d, p = res.data, res.params
    n = p["migrations"]
    return "\n".join(
        [
            f"{2 * n} sources (pgbench scale {p['pgbench_scale']}, about 23 MB each) and {2 * n} instances on one "
            f"service. One at a time: {n} migrations, each started when the previous one streams. At once: "
            f"{n} more, all CreateCloudMigrationTask calls back to back, until the last one streams (the first "
            f"{n} keep streaming meanwhile).",
            "",
            "| | total | per migration |",
            "|---|---|---|",
            f"| one at a time | {d['sequential_total_seconds']:.1f} s | {d['sequential_each']['median']:.1f} s "
            f"({d['sequential_each']['min']:.1f}-{d['sequential_each']['max']:.1f}) |",
            f"| {n} at once | {d['concurrent_total_seconds']:.1f} s | {d['concurrent_each']['median']:.1f} s "
            f"({d['concurrent_each']['min']:.1f}-{d['concurrent_each']['max']:.1f}) |",
            "",
            f"At once / one at a time: **{d['ratio_concurrent_over_sequential']:.2f}** "
            f"({d['speedup']:.2f}x faster).",
            "",
            f"CPU over {p['cpu_window_seconds']:.0f} s with idle sources (share of one CPU; "
            f"engine observe_seconds {p['observe_seconds']}):",
            "",
            "| | no migration | " + f"{2 * n} streaming | per streaming migration |",
            "|---|---|---|---|",
            f"| cloudmig serve | {d['cpu_idle_service'] * 100:.2f}% | {d['cpu_streaming_service'] * 100:.2f}% | "
            f"**{d['cpu_per_migration_service'] * 100:.2f}%** |",
            f"| instances' PostgreSQL | {d['cpu_idle_postgres'] * 100:.2f}% | {d['cpu_streaming_postgres'] * 100:.2f}% | "
            f"{d['cpu_per_migration_postgres'] * 100:.2f}% |",
        ]
    )
