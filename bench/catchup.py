"""Catch-up under load: pgbench writes on the source during and after the copy; the lag cloudmig
reports (DescribeCloudMigrationResult: Progress.Replication and ReplicationInfo) against the truth
and against pg_stat_replication on the source, over time.

Truth, sampled every 0.25 s: the source's pg_current_wal_lsn() minus the target's
pg_last_wal_replay_lsn() (both read within a few milliseconds), and the target's replay delay
(now() - pg_last_xact_replay_timestamp(), meaningful while transactions keep committing). An API
value is compared with the range of the truth between the two samples around the moment in
question: its error is how far it lies outside that range (0 when it is consistent with it).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from bisect import bisect_left
from typing import Any

from tests.support import flows

from bench.common import (
    MachineLoad,
    Mode,
    Result,
    Sampler,
    Workspace,
    bin_dir,
    delete_instance,
    describe_raw,
    goal,
    log,
    new_instance,
    percentile,
    progress_of,
    summarize,
)
from bench.fullcopy import drop_inactive_slots
from cloudmig.pg.runner import spawn
from cloudmig.pg.sql import connect_socket

NAME = "catchup"
TITLE = "Catch-up under load"
TRUTH_SECONDS = 0.25
API_SECONDS = 0.5
APPLICATION_NAME = "rds_db_instance"  # cloudmig's primary_conninfo application_name
DRAIN_SECONDS = 4.0  # sampling goes on after the load stops: the API should show the lag go to 0


class TruthProbe:
    """Reads the source (one connection) and the target (a connection per sample: it restarts)."""

    def __init__(self, src: Any, target_sock: Any, target_port: int) -> None:
        self.src = src
        self.sock = target_sock
        self.port = target_port
        self.conn = src.connect()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {"wall": time.time()}
        with (
            contextlib.suppress(Exception),
            connect_socket(self.sock, self.port, self.src.superuser, connect_timeout=1) as t,
        ):
            row = t.execute(
                "SELECT pg_last_wal_replay_lsn()::text,"
                " extract(epoch from now() - pg_last_xact_replay_timestamp())::float8"
            ).fetchone()
            if row and row[0]:
                out["replay_lsn"], out["replay_delay"] = row
        row = self.conn.execute(
            "SELECT pg_current_wal_lsn()::text,"
            " (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(r)s::pg_lsn) WHERE %(r)s IS NOT NULL),"
            " r.sent_lsn::text, r.replay_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn),"
            " extract(epoch from r.replay_lag)::float8,"
            " (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots"
            "   WHERE slot_name LIKE 'cloudmig%%' LIMIT 1)"
            " FROM (SELECT 1) one LEFT JOIN pg_stat_replication r ON r.application_name = %(app)s",
            {"r": out.get("replay_lsn"), "app": APPLICATION_NAME},
        ).fetchone()
        assert row is not None
        out["source_lsn"] = row[0]
        out["true_lag"] = None if row[1] is None else int(row[1])
        out["psr_sent_lsn"], out["psr_replay_lsn"] = row[2], row[3]
        out["psr_lag"] = None if row[4] is None else int(row[4])
        out["psr_replay_lag"] = row[5]
        out["slot_retained"] = None if row[6] is None else int(row[6])
        return out


def api_probe(svc: Any, instance_id: str, task_id: list[int]) -> dict[str, Any] | None:
    if not task_id:
        return None
    item = describe_raw(svc, instance_id, task_id[0])
    prog = progress_of(item)
    rep = prog.get("Replication") or {}
    bb = prog.get("BaseBackup") or {}
    info = json.loads(item["ReplicationInfo"]) if item.get("ReplicationInfo") else {}
    return {
        "wall": time.time(),
        "stage": item["MigrateStage"],
        "state": item["ReplicationState"],
        "status": item.get("Status"),
        "lag_bytes": rep.get("LagBytes"),
        "lag_seconds": rep.get("LagSeconds"),
        "observed_at": rep.get("ObservedAt"),
        "replay_lag_info": info.get("ReplayLag") or None,
        "bb_done": bb.get("BytesDone"),
        "bb_total": bb.get("BytesTotal"),
    }


def _bracket(ts: list[float], vs: list[float], t: float, max_gap: float = 0.6) -> tuple[float, float] | None:
    """The range of a sampled series around time t (the samples just before and after it); None
    outside the series or in a gap wider than max_gap seconds (e.g. while the target restarts)."""
    if not ts or t < ts[0] or t > ts[-1]:
        return None
    i = bisect_left(ts, t)
    if ts[i] == t or i == 0:
        return vs[i], vs[i]
    if ts[i] - ts[i - 1] > max_gap:
        return None
    return min(vs[i - 1], vs[i]), max(vs[i - 1], vs[i])


def _miss(value: float, rng: tuple[float, float] | None) -> float | None:
    """How far `value` lies outside the true range (0 when the truth may have been exactly that):
    the least error consistent with what the 0.25 s samples of the truth show."""
    if rng is None:
        return None
    lo, hi = rng
    return lo - value if value < lo else (value - hi if value > hi else 0.0)


def _stats(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    a = [abs(x) for x in xs]
    return {
        "n": len(xs),
        "median": percentile(xs, 50),
        "abs_median": percentile(a, 50),
        "abs_p95": percentile(a, 95),
        "abs_max": max(a),
    }


def run(mode: Mode) -> Result:
    res = Result(
        NAME,
        TITLE,
        params={
            "pgbench_scale": mode.catchup_scale,
            "pgbench_rate_tps": mode.catchup_rate_tps,
            "pgbench_clients": 2,
            "load_after_streaming_seconds": mode.catchup_after_seconds,
            "truth_sample_seconds": TRUTH_SECONDS,
            "api_sample_seconds": API_SECONDS,
            "observe_seconds": 2.0,
        },
    )
    with Workspace(NAME) as ws, MachineLoad() as load:
        src = ws.source(mode.catchup_scale)
        svc = ws.service()
        client = svc.tea()
        attr = new_instance(svc, client)
        instance_id = attr.dbinstance_id
        ws.defer(drop_inactive_slots, src)
        ws.defer(delete_instance, client, instance_id)
        sock = svc.runtime_dir / "sockets" / instance_id
        history0 = src.scalar("SELECT count(*) FROM pgbench_history")
        pgbench = spawn(
            [
                bin_dir() / "pgbench",
                "-n",
                "-c",
                "2",
                "-j",
                "1",
                "-R",
                str(mode.catchup_rate_tps),
                "-T",
                "3600",
                "-h",
                src.socket_dir,
                "-p",
                str(src.port),
                "-U",
                src.superuser,
                "postgres",
            ],
            user=ws.user,
        )
        ws.defer(_stop_pgbench, pgbench)
        time.sleep(2)  # the load is steady before the migration starts
        truth = TruthProbe(src, sock, int(attr.port))
        ws.defer(truth.close)
        task: list[int] = []
        wall0 = time.time()
        with (
            Sampler(truth, TRUTH_SECONDS) as ts,
            Sampler(lambda: api_probe(svc, instance_id, task), API_SECONDS) as api,
        ):
            created = flows.create_migration(client, instance_id, src)
            task.append(created.task_id)
            item = flows.wait_streaming(
                client, instance_id, created.task_id, timeout=600 + 30 * mode.catchup_scale
            )
            t_streaming = time.time()
            log(f"  catchup: streaming after {t_streaming - wall0:.1f} s under load")
            time.sleep(mode.catchup_after_seconds)
            t_load_stop = time.time()
            _stop_pgbench(pgbench)
            history1 = src.scalar("SELECT count(*) FROM pgbench_history")
            time.sleep(DRAIN_SECONDS)
        assert item is not None
    res.load = load.as_dict()
    analyse(res, wall0, t_streaming, t_load_stop, ts.samples, api.samples)
    res.data["pgbench_tps"] = (history1 - history0) / max(t_load_stop - wall0 + 2, 1e-9)
    return res


def _stop_pgbench(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


def analyse(
    res: Result,
    wall0: float,
    t_streaming: float,
    t_load_stop: float,
    truth: list[tuple[float, dict[str, Any]]],
    api: list[tuple[float, dict[str, Any]]],
) -> None:
    tr = [v for _, v in truth]
    ap = [v for _, v in api]
    true_pts = [(v["wall"], v["true_lag"]) for v in tr if v.get("true_lag") is not None]
    tt = [t for t, _ in true_pts]
    tv = [float(x) for _, x in true_pts]
    # Stage transitions as the API showed them.
    transitions: list[tuple[float, str, str]] = []
    for v in ap:
        key = (v["stage"], v["state"])
        if not transitions or transitions[-1][1:] != key:
            transitions.append((round(v["wall"] - wall0, 2), *key))
    inc = [v for v in ap if v["stage"] == "increment" and v["lag_bytes"] is not None and v["observed_at"]]
    age = [v["wall"] - v["observed_at"] for v in inc]
    err_at_obs: list[float] = []
    err_now: list[float] = []
    lag_s_api: list[float] = []
    seen_obs: set[float] = set()
    for v in inc:
        # Accuracy of each observation, counted once however often the client read it.
        m = (
            None
            if v["observed_at"] in seen_obs
            else _miss(v["lag_bytes"], _bracket(tt, tv, v["observed_at"]))
        )
        seen_obs.add(v["observed_at"])
        if m is not None:
            err_at_obs.append(m)
        m = _miss(v["lag_bytes"], _bracket(tt, tv, v["wall"]))
        if m is not None:
            err_now.append(m)
    psr_err = [
        v["psr_lag"] - v["true_lag"]
        for v in tr
        if v.get("psr_lag") is not None and v.get("true_lag") is not None
    ]
    # Lag in seconds while the load runs: API LagSeconds and pg_stat_replication.replay_lag against
    # the target's replay delay at the same moment.
    delay_pts = [
        (v["wall"], v["replay_delay"])
        for v in tr
        if v.get("replay_delay") is not None and v["wall"] < t_load_stop
    ]
    dt = [t for t, _ in delay_pts]
    dv = [float(x) for _, x in delay_pts]
    for v in inc:
        if v.get("lag_seconds") is not None and v["observed_at"] < t_load_stop:
            m = _miss(v["lag_seconds"], _bracket(dt, dv, v["observed_at"]))
            if m is not None:
                lag_s_api.append(m)
    psr_s = [
        v["psr_replay_lag"] - v["replay_delay"]
        for v in tr
        if v.get("psr_replay_lag") is not None
        and v.get("replay_delay") is not None
        and v["wall"] < t_load_stop
    ]
    true_after = [
        v["true_lag"] for v in tr if v.get("true_lag") is not None and t_streaming <= v["wall"] < t_load_stop
    ]
    # When did the API first show 0 lag after the load stopped, and when was it really 0?
    # The first observation made after the load stopped that shows no lag (and when it was read).
    api_zero = next(
        (v["wall"] - t_load_stop for v in inc if v["observed_at"] >= t_load_stop and v["lag_bytes"] == 0),
        None,
    )
    true_zero = next((t - t_load_stop for t, x in true_pts if t >= t_load_stop and x == 0), None)
    res.data = {
        "transitions": transitions,
        "seconds_to_streaming": t_streaming - wall0,
        "api_samples": len(inc),
        "api_age_seconds": summarize(age),
        "api_lag_error_at_observation_bytes": _stats(err_at_obs),
        "api_lag_error_now_bytes": _stats(err_now),
        "psr_lag_error_bytes": _stats(psr_err),
        "api_lag_seconds_error": _stats(lag_s_api),
        "psr_replay_lag_error_seconds": _stats(psr_s),
        "true_lag_while_streaming_bytes": summarize(true_after),
        "api_shows_zero_after_load_stop_seconds": api_zero,
        "truly_zero_after_load_stop_seconds": true_zero,
        "wal_rate_bytes_per_second": _wal_rate(tr),
    }
    a = res.data["api_age_seconds"]
    if a.get("n"):
        res.goals.append(
            goal(
                "API lag data fresh (age of ObservedAt, p95)",
                "≤ observe_seconds + 1 s = 3 s",
                percentile(a["values"], 95),
                percentile(a["values"], 95) <= 3.0,
                source="proposed",
            )
        )
    e = res.data["api_lag_error_at_observation_bytes"]
    if e.get("n"):
        res.goals.append(
            goal(
                "API LagBytes accurate at its ObservedAt (p95 of the miss)",
                "≤ 1 MB",
                e["abs_p95"],
                e["abs_p95"] <= 1 << 20,
                f"p95 {_b(e['abs_p95'])}, max {_b(e['abs_max'])}",
                source="proposed",
            )
        )
    res.series["lag"] = {
        "t0": wall0,
        "t_streaming": t_streaming - wall0,
        "t_load_stop": t_load_stop - wall0,
        "truth": [
            (
                round(v["wall"] - wall0, 3),
                v.get("true_lag"),
                v.get("psr_lag"),
                v.get("slot_retained"),
                v.get("replay_delay"),
                v.get("psr_replay_lag"),
            )
            for v in tr
        ],
        "api": [
            (
                round(v["wall"] - wall0, 3),
                None if not v["observed_at"] else round(v["observed_at"] - wall0, 3),
                v["lag_bytes"],
                v["lag_seconds"],
                v["stage"],
            )
            for v in ap
        ],
        "transitions": transitions,
    }


def _wal_rate(tr: list[dict[str, Any]]) -> float | None:
    from cloudmig.domain.lsn import parse_lsn

    pts = [(v["wall"], parse_lsn(v["source_lsn"])) for v in tr if v.get("source_lsn")]
    if len(pts) < 2:
        return None
    (t0, l0), (t1, l1) = pts[0], pts[-1]
    return (l1 - l0) / (t1 - t0) if t1 > t0 else None


def _b(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1 << 20:
        return f"{x / (1 << 20):,.1f} MiB"
    if abs(x) >= 1024:
        return f"{x / 1024:,.0f} KiB"
    return f"{x:,.0f} B"


def render(res: Result) -> str:
    d, p = res.data, res.params
    a = d["api_age_seconds"]
    rows = [
        ("Age of the API's lag (now - Progress.Replication.ObservedAt)", a, "s"),
    ]
    lines = [
        f"pgbench scale {p['pgbench_scale']}, `pgbench -c 2 -R {p['pgbench_rate_tps']}` on the source "
        f"(measured {d.get('pgbench_tps', 0):.0f} tps, WAL {_b(d.get('wal_rate_bytes_per_second'))}/s) from 2 s "
        f"before CreateCloudMigrationTask until {p['load_after_streaming_seconds']:.0f} s after streaming. "
        f"Streaming reached after {d['seconds_to_streaming']:.1f} s under load. The client polled Describe every "
        f"{p['api_sample_seconds']} s; the truth was sampled every {p['truth_sample_seconds']} s.",
        "",
        "| what | median | p95 | max |",
        "|---|---|---|---|",
    ]
    for label, s, unit in rows:
        if s.get("n"):
            lines.append(
                f"| {label} | {s['median']:.2f} {unit} | {percentile(s['values'], 95):.2f} {unit} | {s['max']:.2f} {unit} |"
            )
    for label, key, fmt in (
        (
            "API LagBytes: miss of the true lag at its ObservedAt",
            "api_lag_error_at_observation_bytes",
            _b,
        ),
        ("API LagBytes: miss of the true lag when the client reads it", "api_lag_error_now_bytes", _b),
        (
            "pg_stat_replication (current - replay_lsn) - true lag, same moment (abs)",
            "psr_lag_error_bytes",
            _b,
        ),
        (
            "API LagSeconds: miss of the target replay delay at its ObservedAt",
            "api_lag_seconds_error",
            lambda x: f"{x:.2f} s",
        ),
        (
            "pg_stat_replication.replay_lag - target replay delay, same moment (abs)",
            "psr_replay_lag_error_seconds",
            lambda x: f"{x:.2f} s",
        ),
    ):
        s = d[key]
        if s.get("n"):
            lines.append(f"| {label} | {fmt(s['abs_median'])} | {fmt(s['abs_p95'])} | {fmt(s['abs_max'])} |")
    t = d["true_lag_while_streaming_bytes"]
    if t.get("n"):
        lines.append(
            f"| True lag while streaming under load | {_b(t['median'])} | {_b(percentile(t['values'], 95))} | {_b(t['max'])} |"
        )
    lines += [
        "",
        f"After the load stopped the lag was really 0 after "
        f"{_fmt_opt(d['truly_zero_after_load_stop_seconds'])}; the API first showed 0 after "
        f"{_fmt_opt(d['api_shows_zero_after_load_stop_seconds'])}.",
    ]
    return "\n".join(lines)


def _fmt_opt(x: float | None) -> str:
    return "never (within the sampling window)" if x is None else f"{x:.2f} s"
