"""Stage startup: cloudmig's configuration over the copied files, standby settings, start."""

from __future__ import annotations

from cloudmig.domain import classes
from cloudmig.domain.detail import SECTION_START, SECTION_SYNC, TEXT_START, TEXT_SYNC
from cloudmig.domain.enums import MigrateStage, ReplicationState
from cloudmig.domain.settings_carry import SettingsCarryPlan
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg.carried_conf import write_source_conf
from cloudmig.pg.conf import StandbyConf, primary_conninfo

APPLICATION_NAME = "rds_db_instance"


def standby_conf(tc: TaskContext) -> StandbyConf:
    t = tc.task
    return StandbyConf(
        primary_conninfo=primary_conninfo(
            t.source_ip, t.source_port, t.source_account, tc.passfile, APPLICATION_NAME
        ),
        primary_slot_name=tc.slot_name,
    )


def configure_standby(tc: TaskContext) -> list[str]:
    inst = tc.instance()
    cls = classes.lookup(inst.instance_class)
    assert cls is not None
    removed = tc.ctx.provider.apply_conf(inst.id, inst.port, cls, standby=standby_conf(tc))
    # The source's configuration settings the precheck planned to carry (issue 12, part 1).
    carry = tc.task.progress.get("SettingsCarry")
    if carry is not None:
        plan = SettingsCarryPlan.from_dict(carry)
        write_source_conf(tc.ctx.provider.pgdata(inst.id), plan.carried(), user=tc.ctx.provider.user)
    return removed


def step(tc: TaskContext) -> float | None:
    inst = tc.instance()
    tc.write_passfile()
    removed = configure_standby(tc)
    tc.event(SECTION_START, TEXT_START)
    if removed:
        names = ", ".join(sorted({line.split("=")[0].strip() for line in removed}))
        tc.event(SECTION_START, f"Ignored settings of the source that cloudmig manages: {names}")
    tc.ctx.provider.start(inst.id, inst.major)
    tc.advance(MigrateStage.INCREMENT, ReplicationState.CATCHUP)
    tc.event(SECTION_SYNC, TEXT_SYNC)
    return None
