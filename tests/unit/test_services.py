"""The use cases (services/) on a real SQLite store and a fake clock: what each call refuses, what it
records, and that a switchover request is taken once and waits for the engine's verdict.

What needs a live server (the target's liveness probe, the emptiness check) is covered by the e2e
tests; here the target probe is replaced so that the request's own rules can be driven precisely.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tests.unit.engine_fakes import INSTANCE, add_migration, make_context

from cloudmig import errors
from cloudmig.domain.enums import InstanceStatus, MigrateStage, ReplicationState, TaskKind, TaskStatus
from cloudmig.domain.switchover import SwitchEvidence, SwitchPhase, load_request
from cloudmig.domain.tls import SourceTlsRequest
from cloudmig.runtime import AppContext
from cloudmig.services import instances as instance_service
from cloudmig.services import migrations, switchover
from cloudmig.store import instances as inst_store
from cloudmig.store import tasks as task_store


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return make_context(tmp_path, switch_verdict_seconds=2.0)


def _request(**overrides: object) -> migrations.SourceRequest:
    values: dict[str, object] = dict(
        instance_id=INSTANCE,
        source_ip="127.0.0.1",
        source_port=5432,
        source_account="migratetest",
        source_password="s3cret-never-stored",
        source_category="ecsOnVpc",
    )
    values.update(overrides)
    return migrations.SourceRequest(**values)  # type: ignore[arg-type]


def _streaming_task(ctx: AppContext) -> int:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    task_store.update_task(ctx.db, task_id, ctx.now(), replication_state=ReplicationState.STREAMING)
    return task_id


@pytest.fixture
def live_target(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The target probe answers "a streaming standby"; records whether it was forced."""
    calls: list[bool] = []

    def probe(ctx: AppContext, task: object, *, force: bool) -> None:
        calls.append(force)

    monkeypatch.setattr(switchover, "_check_target_live", probe)
    return calls


# --- switchover ---------------------------------------------------------------------------------


def test_a_switchover_outside_stage_increment_is_refused_and_changes_nothing(ctx: AppContext) -> None:
    task_id = add_migration(ctx, MigrateStage.BASEBACKUP)
    with pytest.raises(errors.IncorrectInstanceState, match="stage basebackup"):
        switchover.request_switchover(ctx, INSTANCE, force=False)
    rec = task_store.get_task(ctx.db, task_id)
    assert rec is not None and rec.stage is MigrateStage.BASEBACKUP and "Switch" not in rec.request


def test_an_instance_without_a_migration_cannot_be_switched(ctx: AppContext) -> None:
    add_migration(ctx, MigrateStage.INCREMENT)
    other = "pgm-bbbbbbbbbbbbbbbb"
    inst_store.insert_instance(
        ctx.db,
        dict(id=other, status="Running", engine="PostgreSQL", engine_version="15",
             instance_class="pg.n2.medium.2c", storage_gb=20, port=15433,
             created_at=ctx.now(), modified_at=ctx.now()),
    )  # fmt: skip
    with pytest.raises(errors.IncorrectInstanceState, match="no cloud migration task"):
        switchover.request_switchover(ctx, other, force=False)
    with pytest.raises(errors.InstanceNotFound):
        switchover.request_switchover(ctx, "pgm-doesnotexist0000", force=False)


def test_not_streaming_is_refused_unless_forced(ctx: AppContext, live_target: list[bool]) -> None:
    task_id = add_migration(ctx, MigrateStage.INCREMENT)
    task_store.update_task(ctx.db, task_id, ctx.now(), replication_state=ReplicationState.DISCONNECT)
    with pytest.raises(errors.IncorrectInstanceState, match="Replication is disconnect"):
        switchover.request_switchover(ctx, INSTANCE, force=False)
    assert live_target == [], "the cheap checks come before the target is probed"

    _engine_answers(ctx, task_id, SwitchPhase.PROMOTING)
    rec = switchover.request_switchover(ctx, INSTANCE, force=True)
    assert live_target == [True]
    assert rec.stage is MigrateStage.SWITCH
    request = load_request(rec.request)
    assert request is not None
    assert request.force and request.requested_at == ctx.now()
    assert SwitchEvidence.load(rec.evidence).forced


def _engine_answers(ctx: AppContext, task_id: int, phase: SwitchPhase, reason: str | None = None) -> None:
    """A stand-in for the engine's switch stage: once the request is recorded, write its verdict."""

    def engine() -> None:
        for _ in range(200):
            rec = task_store.get_task(ctx.db, task_id)
            assert rec is not None
            if rec.stage is MigrateStage.SWITCH:
                ev = SwitchEvidence.load(rec.evidence)
                ev.phase, ev.aborted_reason = phase, reason
                task_store.update_task(ctx.db, task_id, ctx.now(), evidence=ev.to_json())
                return
            time.sleep(0.01)

    threading.Thread(target=engine, daemon=True).start()


def test_an_accepted_request_is_recorded_wakes_the_task_and_returns_the_engines_verdict(
    ctx: AppContext, live_target: list[bool]
) -> None:
    task_id = _streaming_task(ctx)
    woken: list[int] = []
    ctx.notifier.wake = woken.append  # type: ignore[method-assign,assignment]
    _engine_answers(ctx, task_id, SwitchPhase.PROMOTING)
    rec = switchover.request_switchover(ctx, INSTANCE, force=False)
    assert woken == [task_id]
    assert SwitchEvidence.load(rec.evidence).phase is SwitchPhase.PROMOTING
    events = [e.text for e in task_store.events_for(ctx.db, [task_id])[task_id]]
    assert "Switchover requested: switchover" in events


def test_a_refusal_by_the_engine_is_the_calls_error(ctx: AppContext, live_target: list[bool]) -> None:
    task_id = _streaming_task(ctx)
    _engine_answers(ctx, task_id, SwitchPhase.ABORTED, "Writes are still arriving on the source")
    with pytest.raises(errors.IncorrectInstanceState, match="Writes are still arriving on the source"):
        switchover.request_switchover(ctx, INSTANCE, force=False)


def test_without_a_verdict_in_time_the_call_returns_the_pending_switch(
    tmp_path: Path, live_target: list[bool]
) -> None:
    ctx = make_context(tmp_path, switch_verdict_seconds=0.2)
    _streaming_task(ctx)
    rec = switchover.request_switchover(ctx, INSTANCE, force=False)
    assert rec.stage is MigrateStage.SWITCH
    assert SwitchEvidence.load(rec.evidence).phase is SwitchPhase.REQUESTED


def test_concurrent_requests_are_taken_exactly_once(tmp_path: Path, live_target: list[bool]) -> None:
    ctx = make_context(tmp_path, switch_verdict_seconds=0.1)
    task_id = _streaming_task(ctx)
    accepted: list[int] = []
    refused: list[str] = []
    start = threading.Barrier(5)

    def call() -> None:
        start.wait()
        try:
            accepted.append(switchover.request_switchover(ctx, INSTANCE, force=False).id)
        except errors.IncorrectInstanceState as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert accepted == [task_id]
    assert len(refused) == 4
    events = [e.text for e in task_store.events_for(ctx.db, [task_id])[task_id]]
    assert sum(e.startswith("Switchover requested") for e in events) == 1


# --- tasks ---------------------------------------------------------------------------------------


def test_a_precheck_task_keeps_the_password_sealed_and_names_are_unique(ctx: AppContext) -> None:
    add_migration(ctx, MigrateStage.INCREMENT)  # also makes the instance
    woke: list[bool] = []
    ctx.notifier.wake_engine = lambda: woke.append(True)  # type: ignore[method-assign]
    rec = migrations.create_precheck_task(ctx, _request(task_name="check-1"))
    assert rec.kind is TaskKind.PRECHECK and rec.stage is MigrateStage.PRECHECK and woke == [True]
    assert "s3cret-never-stored" not in repr(rec)
    assert ctx.box.open(rec.source_password_enc) == "s3cret-never-stored"
    with pytest.raises(errors.TaskNameConflict):
        migrations.create_precheck_task(ctx, _request(task_name="check-1"))


def test_verifying_tls_without_a_ca_is_a_parameter_error(ctx: AppContext) -> None:
    add_migration(ctx, MigrateStage.INCREMENT)
    with pytest.raises(errors.InvalidParameter, match="SourceSslRootCert"):
        migrations.create_precheck_task(ctx, _request(tls=SourceTlsRequest(sslmode="verify-full")))
    assert task_store.tasks_of_instance(ctx.db, INSTANCE, TaskKind.PRECHECK) == []


def test_a_second_migration_on_a_busy_instance_is_refused(ctx: AppContext) -> None:
    first = add_migration(ctx, MigrateStage.BASEBACKUP)
    with pytest.raises(errors.IncorrectInstanceState, match=f"migration task \\({first}\\)"):
        migrations.create_migration_task(ctx, _request())
    inst_store.set_status(ctx.db, INSTANCE, InstanceStatus.DELETING, ctx.now())
    with pytest.raises(errors.IncorrectInstanceState, match="Deleting"):
        migrations.create_migration_task(ctx, _request())


# --- instances -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "version", "klass", "error"),
    [
        ("MySQL", "15", "pg.n2.medium.2c", errors.InvalidEngine),
        ("PostgreSQL", "9", "pg.n2.medium.2c", errors.InvalidEngineVersion),
        ("PostgreSQL", "latest", "pg.n2.medium.2c", errors.InvalidEngineVersion),
    ],
)
def test_bad_instance_requests_are_refused_before_anything_is_stored(
    ctx: AppContext, engine: str, version: str, klass: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        instance_service.create_instance(ctx, instance_service.InstanceRequest(engine, version, klass, 20))
    assert instance_service.list_instances(ctx, instance_id=None, page_number=1, page_size=10)[0] == 0


def test_a_client_token_returns_the_instance_it_made(ctx: AppContext) -> None:
    made = "pgm-cccccccccccccccc"
    inst_store.insert_instance(
        ctx.db,
        dict(id=made, status="Creating", engine="PostgreSQL", engine_version="15",
             instance_class="pg.n2.medium.2c", storage_gb=20, port=15434, client_token="tok-1",
             created_at=ctx.now(), modified_at=ctx.now()),
    )  # fmt: skip
    # The retry is answered from the token alone, even with parameters that would now be refused.
    again = instance_service.create_instance(
        ctx, instance_service.InstanceRequest("MySQL", "x", "nope", 1, client_token="tok-1")
    )
    assert again.id == made


def test_deleting_an_instance_cancels_its_running_tasks_once(ctx: AppContext) -> None:
    task_id = add_migration(ctx)
    migrations.create_precheck_task(ctx, _request())
    rec = instance_service.delete_instance(ctx, INSTANCE)
    assert rec.status is InstanceStatus.DELETING
    for kind in (TaskKind.MIGRATION, TaskKind.PRECHECK):
        for t in task_store.tasks_of_instance(ctx.db, INSTANCE, kind):
            assert t.status is TaskStatus.CANCELLED and t.reason == "instance deleted"
    before = task_store.get_task(ctx.db, task_id)
    assert instance_service.delete_instance(ctx, INSTANCE).status is InstanceStatus.DELETING
    assert task_store.get_task(ctx.db, task_id) == before, "a second delete changes nothing"
