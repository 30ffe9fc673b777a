"""What the console's templates see: plain dicts built from store records, with no secret in them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from cloudmig.console import fmt
from cloudmig.domain.detail import Event
from cloudmig.domain.enums import (
    STAGE_ORDER,
    InstanceStatus,
    MigrateStage,
    ReplicationState,
    TaskKind,
    TaskStatus,
)
from cloudmig.store.records import InstanceRecord, TaskRecord

EVENT_LIMIT = 200
DASH = fmt.DASH


class Row(NamedTuple):
    """One label and value of a card; `id` names the value's element for tests and scripts."""

    label: str
    value: str
    id: str


def instance_view(r: InstanceRecord, host: str) -> dict[str, Any]:
    """`host` is the address clients reach instances at (setting instance_host)."""
    return {
        "id": r.id,
        "status": r.status.value,
        "address": f"{host}:{r.port}",
        "engine_version": r.engine_version,
        "instance_class": r.instance_class,
        "storage_gb": r.storage_gb,
        "port": r.port,
        "description": r.description,
        "created": fmt.local_time(r.created_at),
        "migration_task_id": r.migration_task_id,
        "reason": r.status_reason,
    }


def connection_view(r: InstanceRecord, host: str, latest: TaskRecord | None) -> dict[str, str]:
    """Where to connect to an instance and as whom, given its newest migration task."""
    psql = f'psql "host={host} port={r.port} dbname=postgres user=ROLE"'
    if r.status is not InstanceStatus.RUNNING:
        mode, login = "not available", f"The instance is {r.status.value}; connect once it is Running."
    elif latest is None or latest.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        mode = "empty cluster"
        login = (
            "No data migrated into it yet. Create an account with the RDS API action CreateAccount, "
            "then log in with it."
        )
    elif latest.status is TaskStatus.SUCCEEDED:
        mode = "read-write primary"
        login = (
            "Log in with a role of the migrated source and its password: the roles and their passwords "
            "came along with the copy. Point the application here."
        )
    elif latest.stage in (MigrateStage.PRECHECK, MigrateStage.BASEBACKUP):
        mode = "being copied"
        login = "The full copy from the source is running; the instance accepts connections after it."
    else:
        mode = "read-only standby"
        login = (
            "Until the switchover the instance is a read-only standby: roles of the source, with their "
            "source passwords, can read from it."
        )
    return {"address": f"{host}:{r.port}", "psql": psql, "mode": mode, "login": login}


def timeline(t: TaskRecord) -> list[dict[str, str]]:
    stages = [MigrateStage.PRECHECK] if t.kind is TaskKind.PRECHECK else list(STAGE_ORDER)
    idx = stages.index(t.stage) if t.stage in stages else 0
    out = []
    for i, s in enumerate(stages):
        if t.status is TaskStatus.SUCCEEDED or i < idx:
            cls = "done"
        elif i == idx:
            cls = "failed" if t.status in (TaskStatus.FAILED, TaskStatus.CANCELLED) else "current"
        else:
            cls = "todo"
        out.append({"name": s.value, "cls": cls})
    return out


def can_switch(t: TaskRecord) -> bool:
    return (
        t.kind is TaskKind.MIGRATION
        and t.status is TaskStatus.RUNNING
        and t.stage is MigrateStage.INCREMENT
        and t.replication_state is ReplicationState.STREAMING
    )


def _public(d: Any) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not str(k).startswith("_")} if isinstance(d, dict) else {}


def _evidence_value(key: str, value: Any) -> Any:
    # Epoch seconds (PromoteIssuedAt, WatchUntil...) read better as local times.
    if key.endswith(("At", "Until")) and isinstance(value, (int, float)) and value > 1e9:
        return datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return value


def replication_rows(status: TaskStatus, rep: dict[str, Any], evidence: dict[str, Any]) -> list[Row]:
    """The replication card's figures. Rates and lag only while the task runs: a finished task shows
    where the switchover cut and promoted (from its evidence), a failed one its last observed LSNs."""
    if status is TaskStatus.RUNNING:
        return [
            Row(
                "Lag",
                f"{fmt.human_bytes(rep.get('LagBytes'))} · {fmt.human_seconds(rep.get('LagSeconds'))}",
                "lag",
            ),
            Row("Source LSN", rep.get("SourceLsn") or DASH, "source-lsn"),
            Row("Received LSN", rep.get("ReceivedLsn") or DASH, "received-lsn"),
            Row("Replayed LSN", rep.get("ReplayedLsn") or DASH, "replayed-lsn"),
            Row("WAL generated", fmt.human_rate(rep.get("WalGenerationBytesPerSecond")), "gen-rate"),
            Row("Replayed", fmt.human_rate(rep.get("ReplayBytesPerSecond")), "replay-rate"),
            Row("Catch-up in", fmt.human_seconds(rep.get("CatchUpSeconds")), "catchup"),
        ]
    if status is TaskStatus.SUCCEEDED and evidence:
        lost = evidence.get("BytesNotReplayed")
        return [
            Row("Cut LSN", evidence.get("CutLsn") or DASH, "cut-lsn"),
            Row("Replayed at promotion", evidence.get("ReplayLsnAtPromote") or DASH, "replayed-lsn"),
            Row("Source at promotion", evidence.get("SourceLsnAtPromote") or DASH, "source-lsn"),
            Row(
                "Not replayed",
                "unknown (source unreachable)" if lost is None else fmt.human_bytes(lost),
                "not-replayed",
            ),
        ]
    return [
        Row("Last source LSN", rep.get("SourceLsn") or DASH, "source-lsn"),
        Row("Last replayed LSN", rep.get("ReplayedLsn") or DASH, "replayed-lsn"),
    ]


def task_summary(t: TaskRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "kind": t.kind.value,
        "instance_id": t.instance_id,
        "stage": t.stage.value,
        "state": t.replication_state.value,
        "status": t.status.value,
        "reason": t.reason,
        "source": f"{t.source_account}@{t.source_ip}:{t.source_port}",
        "created": fmt.local_time(t.created_at),
        "modified": fmt.local_time(t.modified_at),
    }


def task_view(t: TaskRecord, events: Sequence[Event]) -> dict[str, Any]:
    bb = _public(t.progress.get("BaseBackup"))
    rep = _public(t.progress.get("Replication"))
    done, total = int(bb.get("BytesDone") or 0), int(bb.get("BytesTotal") or 0)
    view = task_summary(t)
    view.update(
        {
            "switch_time": fmt.local_time(t.switch_time),
            "timeline": timeline(t),
            "checks": list(t.check_results),
            "report": t.report,
            "events": [
                {"at": fmt.local_time(e.at), "section": e.section, "text": e.text}
                for e in events[-EVENT_LIMIT:]
            ],
            "backup": {
                "started": bool(bb),
                "phase": bb.get("Phase", DASH),
                "done": done,
                "total": max(total, 1),
                "pct": (100.0 * done / total) if total else 0.0,
                "done_h": fmt.human_bytes(done),
                "total_h": fmt.human_bytes(total),
                "rate_h": fmt.human_rate(bb.get("RateBytesPerSecond")),
                "eta_h": fmt.human_seconds(bb.get("EtaSeconds")),
                "elapsed_h": fmt.human_seconds(bb.get("ElapsedSeconds")),
            },
            "rep": {"started": bool(rep), "rows": replication_rows(t.status, rep, t.evidence or {})},
            "evidence": {
                k: _evidence_value(str(k), v)
                for k, v in (t.evidence or {}).items()
                if not str(k).startswith("_")
            },
            "running": t.status is TaskStatus.RUNNING,
            "can_switch": can_switch(t),
            "switch_pending": t.stage is MigrateStage.SWITCH and t.status is TaskStatus.RUNNING,
        }
    )
    # The page reloads as a whole when this changes; the live block refreshes in place otherwise.
    view["key"] = f"{t.stage.value}/{t.status.value}/{int(view['can_switch'])}"
    return view
