"""What the console's templates see: plain dicts built from store records, with no secret in them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cloudmig.console import fmt
from cloudmig.domain.detail import Event
from cloudmig.domain.enums import STAGE_ORDER, MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.store.records import InstanceRecord, TaskRecord

EVENT_LIMIT = 200
DASH = fmt.DASH


def instance_view(r: InstanceRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "status": r.status.value,
        "engine_version": r.engine_version,
        "instance_class": r.instance_class,
        "storage_gb": r.storage_gb,
        "port": r.port,
        "description": r.description,
        "created": fmt.local_time(r.created_at),
        "migration_task_id": r.migration_task_id,
        "reason": r.status_reason,
    }


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
                # Compression and bytes on the wire (issue 13); absent before the copy starts.
                "compression": bb.get("Compression"),
                "compression_reason": bb.get("CompressionReason", ""),
                "wire_h": fmt.human_bytes(bb["WireBytes"]) if "WireBytes" in bb else None,
                "wire_rate_h": fmt.human_rate(bb.get("WireRateBytesPerSecond")),
                "ratio": bb.get("CompressionRatio"),
            },
            "rep": {
                "started": bool(rep),
                "source_lsn": rep.get("SourceLsn") or DASH,
                "received_lsn": rep.get("ReceivedLsn") or DASH,
                "replayed_lsn": rep.get("ReplayedLsn") or DASH,
                "lag_bytes_h": fmt.human_bytes(rep.get("LagBytes")),
                "lag_seconds_h": fmt.human_seconds(rep.get("LagSeconds")),
                "gen_rate_h": fmt.human_rate(rep.get("WalGenerationBytesPerSecond")),
                "replay_rate_h": fmt.human_rate(rep.get("ReplayBytesPerSecond")),
                "catchup_h": fmt.human_seconds(rep.get("CatchUpSeconds")),
            },
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
