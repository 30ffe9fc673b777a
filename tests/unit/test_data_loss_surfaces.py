"""Loss is visible on every surface, and only real loss: the CLI header and show, the console's
badges and evidence card. A clean switchover shows none of it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cloudmig.cli.watch import data_loss_text, status_label, summary_rows
from cloudmig.console.views import evidence_rows, task_summary
from cloudmig.domain.enums import MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.store.records import TaskRecord

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LOSS = {"RowsAfterCut": 7, "DetectedAt": "2026-01-01T12:05:00Z"}
CLEAN_EVIDENCE: dict[str, Any] = {
    "Phase": "done",
    "Forced": False,
    "Fence": "alter_system",
    "FenceState": "up",
    "FenceLiftHint": "ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();",
    "CutLsn": "0/3000148",
    "ReplayLsnAtPromote": "0/3000148",
    "BytesNotReplayed": 0,
    "TimelineBefore": 1,
    "TimelineAfter": 2,
    "SlotDropped": True,
    "WatchUntil": "2026-01-02T12:00:00Z",
}


def _task(evidence: dict[str, Any]) -> TaskRecord:
    return TaskRecord(
        id=1, kind=TaskKind.MIGRATION, name="t", instance_id="pgm-aaaaaaaaaaaaaaaa", source_ip="10.0.0.5",
        source_port=5432, source_account="migratetest", source_password_enc="x", source_category="ecsOnVpc",
        stage=MigrateStage.SUCCESS, replication_state=ReplicationState.FINISH, status=TaskStatus.SUCCEEDED,
        reason="", report="", check_results=[], replication_info="", progress={}, evidence=evidence,
        request={}, switch_time=NOW, slot_name="cloudmig_x_1", reason_code="", lease_owner=None,
        lease_expires=None, created_at=NOW, modified_at=NOW,
    )  # fmt: skip


def test_a_clean_switchover_shows_no_loss_anywhere() -> None:
    item = {"Status": "succeeded", "MigrateStage": "success", "DataLoss": None, "Evidence": CLEAN_EVIDENCE}
    assert data_loss_text(item) is None and status_label(item) == ("succeeded", "green")
    assert all(label != "Data loss" for label, _ in summary_rows(item))
    view = task_summary(_task(CLEAN_EVIDENCE))
    assert view["badge"] == "succeeded" and view["data_loss"] is None
    rows = {r.id: r.value for r in evidence_rows(CLEAN_EVIDENCE)}
    assert "ev-data-loss" not in rows
    assert rows["ev-fence"].startswith("alter_system, up") and "RESET" in rows["ev-lift"]
    assert rows["ev-timeline"] == "1 → 2" and rows["ev-slot"] == "yes"


def test_rows_after_the_cut_are_shown_as_loss_everywhere() -> None:
    evidence = {**CLEAN_EVIDENCE, "DataLoss": LOSS, "SourceRowChangesAfterCut": 7}
    item = {"Status": "succeeded", "MigrateStage": "success", "DataLoss": LOSS, "Evidence": evidence}
    text = data_loss_text(item)
    assert text is not None and "7 row change(s)" in text
    label, colour = status_label(item)
    assert "DATA LOSS" in label and colour != "green"
    assert ("Data loss", text) in list(summary_rows(item))
    view = task_summary(_task(evidence))
    assert view["badge"] == "dataloss" and "7 row change(s)" in view["data_loss"]
    rows = {r.id: r.value for r in evidence_rows(evidence)}
    assert "not on the new primary" in rows["ev-data-loss"] and "7" in rows["ev-watch"]


def test_a_forced_switchover_without_the_source_says_what_is_unknown() -> None:
    evidence = {
        **CLEAN_EVIDENCE,
        "Forced": True,
        "Fence": "none",
        "FenceState": "none",
        "BytesNotReplayed": None,
        "SourceReachableAtPromote": False,
        "LastKnownSourceLsn": "0/5000000",
        "LastKnownSourceAt": "2026-01-01T11:59:00Z",
    }
    rows = {r.id: r.value for r in evidence_rows(evidence)}
    assert rows["ev-not-replayed"].startswith("unknown") and rows["ev-last-seen"].startswith("0/5000000")
    assert "forced" in rows["ev-fence"]
    # Unknown is not loss that was detected: no badge until the watch or the bytes say so.
    assert task_summary(_task(evidence))["badge"] == "succeeded"
    with_bytes = _task(
        {**evidence, "DataLoss": {"BytesNotReplayed": 4096, "DetectedAt": "2026-01-01T12:00:00Z"}}
    )
    assert task_summary(with_bytes)["badge"] == "dataloss"
