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
from cloudmig.domain.switchover import describe_data_loss
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
            "No data migrated into it yet. Create an account with the RDS API action CreateAccount "
            "(`cloudmig account create`), then log in with it."
        )
    elif latest.status is TaskStatus.SUCCEEDED:
        mode = "read-write primary"
        login = (
            "Log in with a role of the migrated source and its password: the roles and their passwords "
            "came along with the copy. A role that had no password (the Debian postgres owner logs in "
            "by peer authentication on its host) gets one with ResetAccountPassword "
            "(`cloudmig account reset-password`). Point the application here."
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


def _when(value: Any) -> str:
    """An evidence time (ISO-8601 UTC, or epoch seconds in older records) as local time."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and value:
        try:
            return fmt.local_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return value
    return DASH


def _yes_no(value: Any) -> str:
    return DASH if value is None else ("yes" if value else "no")


def data_loss_text(evidence: dict[str, Any]) -> str | None:
    """What the new primary is known to miss, in words; None when nothing was lost."""
    return describe_data_loss(evidence.get("DataLoss"))


def evidence_rows(ev: dict[str, Any]) -> list[Row]:
    """The switchover's evidence for a person: what each figure means, not a key dump."""
    if not ev:
        return []
    rows: list[Row] = []
    loss = data_loss_text(ev)
    if loss:
        rows.append(Row("Data loss", loss, "ev-data-loss"))
    phase = str(ev.get("Phase") or DASH)
    if ev.get("AbortedReason"):
        phase += f" ({ev['AbortedReason']})"
    rows.append(Row("Phase", phase, "ev-phase"))
    fence = ev.get("Fence")
    if fence and fence != "none":
        state = f"{fence}, {ev.get('FenceState', DASH)}"
        if ev.get("FenceStillUp") is not None:
            state += f"; still up on the old source: {_yes_no(ev.get('FenceStillUp'))}"
        rows.append(Row("Source fence", state, "ev-fence"))
        if ev.get("FenceLiftHint") and ev.get("FenceState") == "up":
            rows.append(Row("To lift the fence, run on the old source", str(ev["FenceLiftHint"]), "ev-lift"))
    elif ev.get("Forced"):
        rows.append(Row("Source fence", "none: a forced switchover does not wait for the source", "ev-fence"))
    else:
        rows.append(Row("Source fence", "none: writes were proven stopped instead", "ev-fence"))
    rows.append(Row("Cut (source WAL position)", str(ev.get("CutLsn") or DASH), "ev-cut"))
    rows.append(
        Row("Replayed by the target at promotion", str(ev.get("ReplayLsnAtPromote") or DASH), "ev-replayed")
    )
    lost = ev.get("BytesNotReplayed")
    reachable = ev.get("SourceReachableAtPromote")
    not_replayed = (
        "unknown: the source could not be read"
        if lost is None and reachable is False
        else fmt.human_bytes(lost)
    )
    rows.append(Row("Source WAL not replayed", not_replayed, "ev-not-replayed"))
    if reachable is False:
        rows.append(
            Row(
                "Source last seen",
                f"{ev.get('LastKnownSourceLsn') or DASH} at {_when(ev.get('LastKnownSourceAt'))}",
                "ev-last-seen",
            )
        )
    if ev.get("TimelineBefore") is not None:
        rows.append(
            Row("Timeline", f"{ev.get('TimelineBefore')} → {ev.get('TimelineAfter', DASH)}", "ev-timeline")
        )
    rows.append(
        Row(
            "Durations",
            f"gate {fmt.human_seconds(ev.get('GateSeconds'))} · catch-up {fmt.human_seconds(ev.get('CatchupSeconds'))}"
            f" · promotion {fmt.human_seconds(ev.get('PromoteSeconds'))} · total {fmt.human_seconds(ev.get('TotalSeconds'))}",
            "ev-durations",
        )
    )
    rows.append(Row("Slot dropped on the source", _yes_no(ev.get("SlotDropped")), "ev-slot"))
    if ev.get("WatchUntil"):
        checked = _when(ev.get("SourceCheckedAt")) if ev.get("SourceCheckedAt") else "not yet"
        rows.append(
            Row(
                "Watching the old source",
                f"until {_when(ev.get('WatchUntil'))}; last looked {checked}; row changes after the cut: "
                f"{ev.get('SourceRowChangesAfterCut', 0) or 0}",
                "ev-watch",
            )
        )
    return rows


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
    loss = data_loss_text(t.evidence or {})
    return {
        # A switchover that lost writes is not shown as a plain success anywhere.
        "badge": "dataloss" if loss and t.status is TaskStatus.SUCCEEDED else t.status.value,
        "badge_text": "succeeded · data loss"
        if loss and t.status is TaskStatus.SUCCEEDED
        else t.status.value,
        "data_loss": loss,
        "warning": (t.progress.get("Health") or {}).get("Warning"),
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
            "rep": {"started": bool(rep), "rows": replication_rows(t.status, rep, t.evidence or {})},
            "evidence": evidence_rows(t.evidence or {}),
            "running": t.status is TaskStatus.RUNNING,
            "can_switch": can_switch(t),
            "switch_pending": t.stage is MigrateStage.SWITCH and t.status is TaskStatus.RUNNING,
        }
    )
    # The page reloads as a whole when this changes; the live block refreshes in place otherwise.
    view["key"] = f"{t.stage.value}/{t.status.value}/{int(view['can_switch'])}"
    return view
