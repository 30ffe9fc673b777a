"""Prometheus metrics (`/metrics`), names prefixed `cloudmig_`.

Two sources:
- API requests, counted by the API itself (api/metrics.py);
- task and instance state, read from the store on each scrape by `StoreCollector` (the store is the
  truth; the engine may run in another process). One series set per instance, for its newest
  migration task, so that label cardinality is bounded by the number of instances.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cloudmig import __version__
from cloudmig.api.metrics import API_DURATION, API_REQUESTS
from cloudmig.domain.enums import InstanceStatus, MigrateStage, ReplicationState, TaskKind, TaskStatus

log = logging.getLogger(__name__)

# ---- state read from the store -----------------------------------------------------------------------


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class StoreCollector(Collector):
    """Instance and task metrics, computed from the store at scrape time."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        up = _gauge("cloudmig_store_up", "1 when the store answered this scrape.", [])
        try:
            families = list(self._families())
        except Exception:
            log.exception("metrics: reading the store failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterable[Metric]:
        from cloudmig.services import instances as instance_svc
        from cloudmig.services import migrations as migration_svc
        from cloudmig.store.tasks import TaskFilter

        _, insts = instance_svc.list_instances(self.ctx, instance_id=None, page_number=1, page_size=100_000)
        by_status = dict.fromkeys((s.value for s in InstanceStatus), 0)
        for inst in insts:
            by_status[inst.status.value] = by_status.get(inst.status.value, 0) + 1
        instances = _gauge("cloudmig_instances", "Managed instances by status.", ["status"])
        for status, n in by_status.items():
            instances.add_metric([status], n)

        L = ["instance"]
        stage = _gauge(
            "cloudmig_task_stage",
            "Stage of the instance's newest migration task (1 = current).",
            [*L, "stage"],
        )
        task_status = _gauge(
            "cloudmig_task_status",
            "Status of the instance's newest migration task (1 = current).",
            [*L, "status"],
        )
        state = _gauge(
            "cloudmig_replication_state",
            "ReplicationState of the newest migration task (1 = current).",
            [*L, "state"],
        )
        task_id = _gauge("cloudmig_task_id", "TaskId of the instance's newest migration task.", L)
        done = _gauge("cloudmig_basebackup_bytes_done", "Bytes the full copy has copied.", L)
        total = _gauge("cloudmig_basebackup_bytes_total", "Bytes the full copy has to copy.", L)
        rate = _gauge("cloudmig_basebackup_rate_bytes_per_second", "Average rate of the full copy.", L)
        lag_b = _gauge("cloudmig_replication_lag_bytes", "Source WAL not yet replayed on the target.", L)
        lag_s = _gauge(
            "cloudmig_replication_lag_seconds", "Replication lag in seconds at the replay rate.", L
        )
        wal_up = _gauge(
            "cloudmig_wal_receiver_up", "1 when the target's WAL receiver streams from the source.", L
        )
        switch = _gauge(
            "cloudmig_switchover_duration_seconds", "Duration of the switchover, request to primary.", L
        )
        loss = _gauge(
            "cloudmig_data_loss",
            "1 when writes are known not to be on the new primary (rows after the cut, WAL not replayed).",
            L,
        )
        loss_rows = _gauge("cloudmig_data_loss_rows", "Rows changed on the old source after the cut.", L)
        warning = _gauge("cloudmig_task_warning", "1 while the task has a health warning (Warning field).", L)
        slot_wal = _gauge("cloudmig_slot_retained_bytes", "WAL the task's slot keeps on the source.", L)
        storage = _gauge("cloudmig_instance_storage_used_bytes", "Bytes the target's data directory uses.", L)

        for inst in insts:
            page = migration_svc.describe_tasks(
                self.ctx, TaskFilter(instance_id=inst.id, kind=TaskKind.MIGRATION), page_number=1, page_size=1
            )
            if not page.tasks:
                continue
            t = page.tasks[0]
            iid = inst.id
            for s in MigrateStage:
                stage.add_metric([iid, s.value], 1 if t.stage is s else 0)
            for st in TaskStatus:
                task_status.add_metric([iid, st.value], 1 if t.status is st else 0)
            for r in ReplicationState:
                state.add_metric([iid, r.value], 1 if t.replication_state is r else 0)
            task_id.add_metric([iid], t.id)
            bb = t.progress.get("BaseBackup") or {}
            rep = t.progress.get("Replication") or {}
            for fam, value in (
                (done, bb.get("BytesDone")),
                (total, bb.get("BytesTotal")),
                (rate, bb.get("RateBytesPerSecond")),
            ):
                v = _num(value)
                if v is not None:
                    fam.add_metric([iid], v)
            streaming_stage = t.stage in (MigrateStage.STARTUP, MigrateStage.INCREMENT, MigrateStage.SWITCH)
            if streaming_stage and t.status is TaskStatus.RUNNING:
                for fam, value in ((lag_b, rep.get("LagBytes")), (lag_s, rep.get("LagSeconds"))):
                    v = _num(value)
                    if v is not None:
                        fam.add_metric([iid], v)
            wal_up.add_metric(
                [iid], 1 if t.status is TaskStatus.RUNNING and _receiver_streaming(t.replication_info) else 0
            )
            seconds = _num((t.evidence or {}).get("TotalSeconds"))
            if seconds is not None and t.stage is MigrateStage.SUCCESS:
                switch.add_metric([iid], seconds)
            data_loss = (t.evidence or {}).get("DataLoss")
            loss.add_metric([iid], 1 if data_loss else 0)
            rows = _num((data_loss or {}).get("RowsAfterCut"))
            if rows is not None:
                loss_rows.add_metric([iid], rows)
            health = t.progress.get("Health") or {}
            warning.add_metric([iid], 1 if health.get("Warning") and t.status is TaskStatus.RUNNING else 0)
            for fam, value in (
                (slot_wal, health.get("SlotRetainedBytes")),
                (storage, health.get("StorageUsedBytes")),
            ):
                v = _num(value)
                if v is not None and t.status is TaskStatus.RUNNING:
                    fam.add_metric([iid], v)
        pending, oldest = self._slot_drops()
        info = _gauge("cloudmig_build_info", "cloudmig version.", ["version"])
        info.add_metric([__version__], 1)
        return [
            instances,
            stage,
            task_status,
            state,
            task_id,
            done,
            total,
            rate,
            lag_b,
            lag_s,
            wal_up,
            switch,
            loss,
            loss_rows,
            warning,
            slot_wal,
            storage,
            pending,
            oldest,
            info,
        ]

    def _slot_drops(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        """Slots cloudmig still has to drop on sources (a drop is retried until the slot is gone, so
        one whose source never comes back stays here: the operator has to look)."""
        from cloudmig.store import slot_drops

        drops = slot_drops.pending(self.ctx.db)
        pending = _gauge(
            "cloudmig_slot_drops_pending",
            "Replication slots cloudmig must still drop on sources (retried until they are gone).",
            [],
        )
        pending.add_metric([], len(drops))
        oldest = _gauge(
            "cloudmig_slot_drop_oldest_seconds",
            "Age of the oldest slot drop still pending (0 when none is).",
            [],
        )
        now = self.ctx.now()
        oldest.add_metric(
            [], max((max((now - d.created_at).total_seconds(), 0.0) for d in drops), default=0.0)
        )
        return pending, oldest


def _receiver_streaming(replication_info: str) -> bool:
    try:
        info = json.loads(replication_info) if replication_info else {}
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("Status") == "streaming"


def build_registry(ctx: Any) -> CollectorRegistry:
    """A registry per application: the process-wide API metrics plus this service's store."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(API_REQUESTS)
    registry.register(API_DURATION)
    registry.register(StoreCollector(ctx))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
