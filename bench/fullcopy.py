"""Full copy of one pgbench database, four ways, on this machine:

1. cloudmig: CreateCloudMigrationTask through the API until DescribeCloudMigrationResult shows
   increment/streaming, with the time spent in each stage;
2. raw `pg_basebackup -X stream` of the same source into an empty directory, then starting it as a
   standby until its WAL receiver streams (the physical limit cloudmig adds to);
3. `pgcopydb clone` into an empty database;
4. `pg_dump -Fc` then `pg_restore -j 2` into an empty database.

Methods alternate inside each repetition (the first one changes every repetition) so that a slow
stretch of a shared machine hits all of them; ratios are computed per repetition, then summarised.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support import flows
from tests.support.pgcluster import SourceCluster, free_port
from tests.support.service import Service

from bench.common import (
    MIGRATION_ACCOUNT,
    MIGRATION_PASSWORD,
    MachineLoad,
    Mode,
    Result,
    Sampler,
    Workspace,
    bin_dir,
    delete_instance,
    describe_raw,
    dir_bytes,
    fmt_s,
    goal,
    log,
    new_instance,
    progress_of,
    summarize,
)
from cloudmig.pg import ctl
from cloudmig.pg.passfile import write_passfile
from cloudmig.pg.runner import run as run_pg
from cloudmig.pg.sql import connect_socket, connect_source

NAME = "copy"
TITLE = "Full copy"
METHODS = ("cloudmig", "pg_basebackup", "pgcopydb", "pg_dump")
LABELS = {
    "cloudmig": "cloudmig (API, until streaming)",
    "pg_basebackup": "raw pg_basebackup -X stream + standby start",
    "pgcopydb": "pgcopydb clone",
    "pg_dump": "pg_dump -Fc, then pg_restore -j 2",
}
POLL_SECONDS = 0.2  # how often the client asks DescribeCloudMigrationResult
SAMPLE_SECONDS = 0.25  # target bytes on disk
STREAMING_LAG_BYTES = 16 * 1024 * 1024  # cloudmig's default streaming_lag_bytes: same "caught up" test
GOAL_RATIO, GOAL_FIXED = 1.05, 1.5
STAGES = ("precheck", "basebackup", "startup", "increment")


# ---- the four methods ----------------------------------------------------------------------------


def leftover_slots(src: SourceCluster) -> list[str]:
    return [r[0] for r in src.sql("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def drop_inactive_slots(src: SourceCluster) -> list[str]:
    """Drop the slots nobody streams from (a deleted instance's, or our own baseline's)."""
    rows = src.sql(
        "SELECT slot_name, pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active"
    )
    return [r[0] for r in rows]


def wait_streaming_timed(
    svc: Service, instance_id: str, task_id: int, t0: float, timeout: float
) -> tuple[float, list[tuple[float, str, str]], dict[str, Any], list[tuple[float, int]]]:
    """Poll Describe until increment/streaming; returns (seconds, transitions, last item, the
    BytesDone the API showed over time)."""
    transitions: list[tuple[float, str, str]] = []
    api_bytes: list[tuple[float, int]] = []
    deadline = t0 + timeout
    while True:
        item = describe_raw(svc, instance_id, task_id)
        t = time.monotonic() - t0
        stage, state = item["MigrateStage"], item["ReplicationState"]
        if item.get("Status") == "failed":
            raise RuntimeError(f"migration failed: {item.get('Reason')}\n{item.get('Detail', '')[-2000:]}")
        if not transitions or transitions[-1][1:] != (stage, state):
            transitions.append((round(t, 3), stage, state))
        bb = progress_of(item).get("BaseBackup") or {}
        if bb.get("BytesDone") is not None:
            api_bytes.append((round(t, 3), int(bb["BytesDone"])))
        if (stage, state) == ("increment", "streaming"):
            return t, transitions, item, api_bytes
        if time.monotonic() > deadline:
            raise RuntimeError(f"no streaming after {timeout:.0f} s; transitions {transitions}")
        time.sleep(POLL_SECONDS)


def stage_seconds(transitions: list[tuple[float, str, str]], total: float) -> dict[str, float]:
    """Seconds in each stage as the client saw it (first time seen → first time the next was seen);
    a stage shorter than one poll may never be seen: its time is counted in the previous one."""
    first: dict[str, float] = {}
    for t, stage, _ in transitions:
        first.setdefault(stage, 0.0 if stage == "precheck" else t)
    out: dict[str, float] = {}
    seen = [s for s in STAGES if s in first]
    for i, s in enumerate(seen):
        end = first[seen[i + 1]] if i + 1 < len(seen) else total
        out[s] = max(0.0, round(end - first[s], 3))
    return out


def engine_timeline(svc: Service, wall0: float, wall1: float) -> list[dict[str, Any]]:
    """PostgreSQL binaries the engine ran between wall0 and wall1 (needs log level debug), from the
    service log: what the fixed cost is made of."""
    logf = svc.data_dir / "logs" / "cloudmig.log"
    if not logf.exists():
        return []
    pat = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG cloudmig\.pg: (run|spawn) \[(.*?)\]")
    out = []
    for line in logf.read_text(errors="replace").splitlines():
        m = pat.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if not (wall0 - 0.5 <= at <= wall1 + 0.5):
            continue
        args = [a.strip().strip("'\"") for a in m.group(3).split(",")]
        prog = Path(args[0]).name
        sub = args[1] if prog == "pg_ctl" and len(args) > 1 else ""
        out.append({"t": round(at - wall0, 3), "binary": f"{prog} {sub}".strip()})
    return out


def run_cloudmig(
    ws: Workspace, svc: Service, client: Any, src: SourceCluster, timeout: float
) -> dict[str, Any]:
    instance_id = new_instance(svc, client).dbinstance_id
    pgdata = svc.data_dir / "instances" / instance_id / "pgdata"
    t0, wall0 = time.monotonic(), time.time()
    try:
        with Sampler(lambda: dir_bytes(pgdata), SAMPLE_SECONDS, t0) as disk:
            created = flows.create_migration(client, instance_id, src)
            total, transitions, item, api_bytes = wait_streaming_timed(
                svc, instance_id, created.task_id, t0, timeout
            )
        wall1 = time.time()
    finally:
        delete_instance(client, instance_id)
        left = drop_inactive_slots(src)
    bb = progress_of(item).get("BaseBackup") or {}
    return {
        "seconds": total,
        "stages": stage_seconds(transitions, total),
        "transitions": transitions,
        "basebackup_seconds": bb.get("ElapsedSeconds"),
        "bytes_total": bb.get("BytesTotal"),
        "bytes": disk.samples,
        "api_bytes": api_bytes,
        "timeline": engine_timeline(svc, wall0, wall1),
        "slots_left_after_delete": left,
    }


class RawStandby:
    """What an operator would do by hand: `pg_basebackup -X stream -C -S slot -R` into an empty
    directory, point the copy at its own port and socket, `pg_ctl start`, wait for streaming."""

    def __init__(self, ws: Workspace, src: SourceCluster, slot: str) -> None:
        self.ws, self.src, self.slot = ws, src, slot
        self.home = ws.pg_dir("raw", "pgdata", "sock", "pass")
        self.pgdata, self.sock = self.home / "pgdata", self.home / "sock"
        self.port = free_port()
        self.passfile = self.home / "pass" / "pgpass"
        write_passfile(
            self.passfile,
            host=src.host,
            port=src.port,
            user=MIGRATION_ACCOUNT,
            password=MIGRATION_PASSWORD,
            owner=ws.user,
        )

    def copy(self, timeout: float) -> None:
        argv: list[str | Path] = [
            bin_dir() / "pg_basebackup",
            "-D",
            self.pgdata,
            "-h",
            self.src.host,
            "-p",
            str(self.src.port),
            "-U",
            MIGRATION_ACCOUNT,
            "-X",
            "stream",
            "-c",
            "fast",
            "-C",
            "-S",
            self.slot,
            "-R",
            "-w",
        ]
        run_pg(argv, user=self.ws.user, env={"PGPASSFILE": str(self.passfile)}, timeout=timeout)

    def start(self) -> None:
        # The copy carries the source's port, socket directory and listen address (a namespace's
        # in bench/wan.py): point it at its own.
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            f.write(
                f"port = {self.port}\nunix_socket_directories = '{self.sock}'\nlisten_addresses = '127.0.0.1'\n"
            )
        # As by hand: pg_ctl's own wait (it looks every 100 ms; cloudmig's ctl.start every 10 ms).
        run_pg(
            [bin_dir() / "pg_ctl", "start", "-D", self.pgdata, "-l", self.home / "postgres.log", "-w"],
            user=self.ws.user,
            timeout=90,
        )

    def connect(self) -> Any:
        return connect_socket(self.sock, self.port, self.src.superuser)

    def wait_streaming(self, t0: float, timeout: float) -> None:
        """Until the WAL receiver streams and replay is within cloudmig's streaming threshold."""
        with connect_source(self.src.host, self.src.port, MIGRATION_ACCOUNT, MIGRATION_PASSWORD) as sconn:
            while True:
                with self.connect() as tconn:
                    row = tconn.execute(
                        "SELECT r.status, pg_last_wal_replay_lsn()::text FROM pg_stat_wal_receiver r"
                    ).fetchone()
                if row and row[0] == "streaming":
                    lag = sconn.execute(
                        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (row[1],)
                    ).fetchone()
                    if lag and lag[0] is not None and lag[0] <= STREAMING_LAG_BYTES:
                        return
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError("raw standby did not stream")
                time.sleep(0.05)

    def destroy(self) -> None:
        try:
            ctl.stop(bin_dir(), self.pgdata, user=self.ws.user, mode="immediate")
        finally:
            self.src.sql(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot,),
            )
            shutil.rmtree(self.home, ignore_errors=True)


def run_raw_basebackup(ws: Workspace, src: SourceCluster, rep: int, timeout: float) -> dict[str, Any]:
    raw = RawStandby(ws, src, f"bench_raw_{rep}")
    t0 = time.monotonic()
    try:
        with Sampler(lambda: dir_bytes(raw.pgdata), SAMPLE_SECONDS, t0) as disk:
            raw.copy(timeout)
            copied = time.monotonic() - t0
            raw.start()
            started = time.monotonic() - t0
            raw.wait_streaming(t0, timeout)
        total = time.monotonic() - t0
    finally:
        raw.destroy()
    return {
        "seconds": total,
        "basebackup_seconds": copied,
        "start_seconds": started - copied,
        "streaming_seconds": total - started,
        "bytes": disk.samples,
    }


def _db_dir(tgt: SourceCluster, dbname: str) -> Path:
    oid = tgt.scalar("SELECT oid FROM pg_database WHERE datname = %s", (dbname,))
    return tgt.pgdata / "base" / str(oid)


def _uri(c: SourceCluster, dbname: str) -> str:
    return f"postgres://{c.superuser}@/{dbname}?host={c.socket_dir}&port={c.port}"


def run_pgcopydb(
    ws: Workspace, src: SourceCluster, tgt: SourceCluster, rep: int, timeout: float
) -> dict[str, Any]:
    db = f"pgcopydb_{rep}"
    tgt.sql(f'CREATE DATABASE "{db}"')
    work = ws.pg_dir("pgcopydb")
    dbdir = _db_dir(tgt, db)
    argv: list[str | Path] = [
        "pgcopydb",
        "clone",
        "--source",
        _uri(src, "postgres"),
        "--target",
        _uri(tgt, db),
        "--dir",
        work / "work",
        "--table-jobs",
        "2",
        "--index-jobs",
        "2",
    ]
    t0 = time.monotonic()
    try:
        with Sampler(lambda: dir_bytes(dbdir), SAMPLE_SECONDS, t0) as disk:
            run_pg(argv, user=ws.user, timeout=timeout, cwd=work)
        total = time.monotonic() - t0
        _check_rows(src, tgt, db)
    finally:
        tgt.sql(f'DROP DATABASE IF EXISTS "{db}"')
        shutil.rmtree(work, ignore_errors=True)
    return {"seconds": total, "bytes": disk.samples}


def run_dump_restore(
    ws: Workspace, src: SourceCluster, tgt: SourceCluster, rep: int, timeout: float
) -> dict[str, Any]:
    # pg_restore -j needs a seekable archive: it cannot read a pipe, so the dump goes to a file.
    db = f"restore_{rep}"
    tgt.sql(f'CREATE DATABASE "{db}"')
    work = ws.pg_dir("dump")
    dump = work / "db.dump"
    dbdir = _db_dir(tgt, db)
    b = bin_dir()
    t0 = time.monotonic()
    try:
        with Sampler(lambda: dir_bytes(dbdir), SAMPLE_SECONDS, t0) as disk:
            run_pg(
                [
                    b / "pg_dump",
                    "-Fc",
                    "-f",
                    dump,
                    "-h",
                    src.socket_dir,
                    "-p",
                    str(src.port),
                    "-U",
                    src.superuser,
                    "postgres",
                ],
                user=ws.user,
                timeout=timeout,
            )
            dumped = time.monotonic() - t0
            run_pg(
                [
                    b / "pg_restore",
                    "-j",
                    "2",
                    "-d",
                    db,
                    "-h",
                    tgt.socket_dir,
                    "-p",
                    str(tgt.port),
                    "-U",
                    tgt.superuser,
                    dump,
                ],
                user=ws.user,
                timeout=timeout,
            )
        total = time.monotonic() - t0
        _check_rows(src, tgt, db)
    finally:
        tgt.sql(f'DROP DATABASE IF EXISTS "{db}"')
        shutil.rmtree(work, ignore_errors=True)
    return {
        "seconds": total,
        "dump_seconds": dumped,
        "restore_seconds": total - dumped,
        "bytes": disk.samples,
    }


def _check_rows(src: SourceCluster, tgt: SourceCluster, db: str) -> None:
    q = "SELECT count(*) FROM pgbench_accounts"
    a, b = src.sql(q)[0][0], tgt.sql(q, dbname=db)[0][0]
    if a != b:
        raise RuntimeError(f"copy into {db} has {b} pgbench_accounts rows, the source {a}")


# ---- the benchmark -------------------------------------------------------------------------------


def run(mode: Mode) -> Result:
    res = Result(
        NAME,
        TITLE,
        params={
            "pgbench_scale": mode.copy_scale,
            "repeats_physical": mode.copy_repeats,
            "repeats_logical": mode.logical_repeats,
            "describe_poll_seconds": POLL_SECONDS,
        },
    )
    timeout = 600 + 30 * mode.copy_scale
    with Workspace(NAME) as ws, MachineLoad() as load:
        src = ws.source(mode.copy_scale)
        res.params["source_bytes"] = int(src.scalar("SELECT sum(pg_database_size(oid)) FROM pg_database"))
        res.params["database_bytes"] = int(src.scalar("SELECT pg_database_size('postgres')"))
        tgt = ws.plain_cluster()
        svc = ws.service(CLOUDMIG_LOG_LEVEL="debug")
        client = svc.tea()
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        have_pgcopydb = shutil.which("pgcopydb") is not None
        if not have_pgcopydb:
            res.notes.append("pgcopydb is not installed (Debian: apt-get install pgcopydb): not measured.")
        for rep in range(mode.copy_repeats):
            methods = ["cloudmig", "pg_basebackup"]
            if rep < mode.logical_repeats:
                methods += ["pgcopydb", "pg_dump"] if have_pgcopydb else ["pg_dump"]
            k = rep % len(methods)
            for m in methods[k:] + methods[:k]:
                if m == "cloudmig":
                    r = run_cloudmig(ws, svc, client, src, timeout)
                elif m == "pg_basebackup":
                    r = run_raw_basebackup(ws, src, rep, timeout)
                elif m == "pgcopydb":
                    r = run_pgcopydb(ws, src, tgt, rep, timeout)
                else:
                    r = run_dump_restore(ws, src, tgt, rep, timeout)
                r["rep"] = rep
                runs[m].append(r)
                log(f"  copy rep {rep + 1}/{mode.copy_repeats} {m}: {r['seconds']:.2f} s")
    res.load = load.as_dict()
    summarize_runs(res, runs)
    return res


def summarize_runs(res: Result, runs: dict[str, list[dict[str, Any]]]) -> None:
    s = {m: summarize([r["seconds"] for r in runs[m]]) for m in METHODS}
    pairs = list(zip(runs["cloudmig"], runs["pg_basebackup"], strict=False))
    ratios = summarize([c["seconds"] / r["seconds"] for c, r in pairs])
    overhead = summarize([c["seconds"] - r["seconds"] for c, r in pairs])
    fixed = summarize([c["seconds"] - GOAL_RATIO * r["seconds"] for c, r in pairs])
    stages = {st: summarize([r["stages"].get(st, 0.0) for r in runs["cloudmig"]]) for st in STAGES}
    inner_bb = summarize([r["basebackup_seconds"] for r in runs["cloudmig"] if r.get("basebackup_seconds")])
    raw_bb = summarize([r["basebackup_seconds"] for r in runs["pg_basebackup"]])
    raw_start = summarize([r["start_seconds"] + r["streaming_seconds"] for r in runs["pg_basebackup"]])
    cm, raw = s["cloudmig"].get("median"), s["pg_basebackup"].get("median")
    res.data = {
        "seconds": s,
        "ratio_cloudmig_over_raw": ratios,
        "overhead_seconds": overhead,
        "fixed_cost_seconds": fixed,
        "stages": stages,
        "cloudmig_pg_basebackup_seconds": inner_bb,
        "raw_pg_basebackup_seconds": raw_bb,
        "raw_start_to_streaming_seconds": raw_start,
        "speedup_vs": {
            m: (s[m]["median"] / cm if cm and s[m].get("n") else None) for m in ("pgcopydb", "pg_dump")
        },
        "raw_speedup_vs": {
            m: (s[m]["median"] / raw if raw and s[m].get("n") else None) for m in ("pgcopydb", "pg_dump")
        },
        "dump_seconds": summarize([r["dump_seconds"] for r in runs["pg_dump"]]),
        "restore_seconds": summarize([r["restore_seconds"] for r in runs["pg_dump"]]),
        "slots_left_after_delete": sum(len(r["slots_left_after_delete"]) for r in runs["cloudmig"]),
        "timeline": runs["cloudmig"][-1]["timeline"] if runs["cloudmig"] else [],
        "transitions": [r["transitions"] for r in runs["cloudmig"]],
    }
    if cm is not None and raw is not None:
        limit = GOAL_RATIO * raw + GOAL_FIXED
        res.goals.append(
            goal(
                "cloudmig time ≤ 1.05 x raw pg_basebackup + 1.5 s (medians)",
                f"≤ {limit:.2f} s",
                cm,
                cm <= limit,
                f"ratio {ratios['median']:.2f}, fixed cost {fixed['median']:.2f} s",
            )
        )
    for m in ("pgcopydb", "pg_dump"):
        sp = res.data["speedup_vs"][m]
        if sp is not None:
            res.goals.append(
                goal(f"cloudmig several times faster than {m}", "≥ 2x", sp, sp >= 2, f"{sp:.2f}x")
            )
    # One repetition's bytes-over-time per method for the plot (the median cloudmig one).
    res.series["bytes"] = {m: _median_run(runs[m]).get("bytes", []) for m in METHODS if runs[m]}
    if runs["cloudmig"]:
        res.series["api_bytes"] = _median_run(runs["cloudmig"]).get("api_bytes", [])
        res.series["stages"] = _median_run(runs["cloudmig"]).get("transitions", [])
    if res.data["slots_left_after_delete"]:
        res.notes.append(
            f"DeleteDBInstance of a streaming migration left its replication slot on the source "
            f"{res.data['slots_left_after_delete']} time(s) out of {len(runs['cloudmig'])}: the engine "
            "drops the slot while the standby still streams from it (ObjectInUse), then destroys the "
            "instance. The benchmark dropped them itself."
        )


def _median_run(rs: list[dict[str, Any]]) -> dict[str, Any]:
    if not rs:
        return {}
    ordered = sorted(rs, key=lambda r: r["seconds"])
    return ordered[(len(ordered) - 1) // 2]


# ---- report --------------------------------------------------------------------------------------


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.0f} MB"


def render(res: Result) -> str:
    d, p = res.data, res.params
    lines = [
        f"pgbench scale {p['pgbench_scale']}: database `postgres` {_mb(p.get('database_bytes'))}, "
        f"whole cluster {_mb(p.get('source_bytes'))}. Physical methods copy the whole cluster, "
        "logical ones the one database. Times are medians over the repetitions, with min-max.",
        "",
        "| method | time | vs cloudmig |",
        "|---|---|---|",
    ]
    cm = d["seconds"]["cloudmig"].get("median")
    for m in METHODS:
        s = d["seconds"][m]
        if not s.get("n"):
            continue
        rel = f"{s['median'] / cm:.2f}x" if cm else "-"
        lines.append(f"| {LABELS[m]} | {fmt_s(s)} | {rel} |")
    r = d["ratio_cloudmig_over_raw"]
    lines += [
        "",
        f"- cloudmig / raw pg_basebackup, per repetition: median **{r['median']:.2f}** "
        f"({r['min']:.2f}-{r['max']:.2f}); cloudmig - raw: {fmt_s(d['overhead_seconds'])}; "
        f"fixed cost beyond 1.05 x raw: {fmt_s(d['fixed_cost_seconds'])}.",
        f"- pg_basebackup inside cloudmig (Progress.BaseBackup.ElapsedSeconds): "
        f"{fmt_s(d['cloudmig_pg_basebackup_seconds'], digits=1)}; the raw one: "
        f"{fmt_s(d['raw_pg_basebackup_seconds'])}; raw standby start until streaming: "
        f"{fmt_s(d['raw_start_to_streaming_seconds'])}.",
    ]
    if d["dump_seconds"].get("n"):
        lines.append(f"- pg_dump {fmt_s(d['dump_seconds'])} + pg_restore -j 2 {fmt_s(d['restore_seconds'])}.")
    lines += [
        "",
        "cloudmig's time by stage, as a client polling Describe every "
        f"{p['describe_poll_seconds']} s sees it:",
        "",
        "| stage | time |",
        "|---|---|",
    ]
    for st in STAGES:
        lines.append(f"| {st} | {fmt_s(d['stages'][st])} |")
    if d.get("timeline"):
        lines += [
            "",
            "PostgreSQL binaries the engine ran during the last cloudmig repetition (seconds after "
            "the Create call, from the service's debug log):",
            "",
            "```",
            *(f"{e['t']:7.2f}  {e['binary']}" for e in d["timeline"]),
            "```",
        ]
    return "\n".join(lines)
