"""Stage startup: cloudmig's configuration over the copied files, standby settings, start."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import psycopg

from cloudmig.domain.detail import SECTION_START, SECTION_SYNC, TEXT_START, TEXT_SYNC
from cloudmig.domain.enums import MigrateStage, ReplicationState
from cloudmig.domain.settings_carry import SettingsCarryPlan
from cloudmig.domain.transitions import Transition
from cloudmig.engine.outcome import Fail, Next, Outcome
from cloudmig.engine.revert import undo_copy
from cloudmig.engine.taskctx import TaskContext
from cloudmig.errors import RetriesExhausted
from cloudmig.pg.carried_conf import write_source_conf
from cloudmig.pg.conf import StandbyConf, primary_conninfo

APPLICATION_NAME = "rds_db_instance"


def standby_conf(tc: TaskContext) -> StandbyConf:
    src = tc.source()
    return StandbyConf(
        primary_conninfo=primary_conninfo(
            src.host, src.port, src.account, tc.instance().passfile, APPLICATION_NAME, src.tls.libpq_params()
        ),
        primary_slot_name=tc.slot_name,
    )


def configure_standby(tc: TaskContext) -> list[str]:
    inst = tc.instance()
    removed = inst.apply_conf(standby=standby_conf(tc))
    # The source's configuration settings the precheck planned to carry, below cloudmig's own.
    carry = tc.task.progress.get("SettingsCarry")
    if carry is not None:
        write_source_conf(inst.pgdata, SettingsCarryPlan.from_dict(carry).carried(), user=inst.provider.user)
    return removed


def _start_beside_source_session(tc: TaskContext) -> None:
    """Start the standby while the session the first observation reads the source through opens:
    the start is mostly waiting for the server to be ready."""
    with ThreadPoolExecutor(1, thread_name_prefix="source-session") as beside:
        opened = beside.submit(tc.connection, "source", tc.source().connect)
        tc.instance().start()
    with contextlib.suppress(psycopg.Error):
        opened.result()  # a source that does not answer now is the observation's to report


class StartupStage:
    stage = MigrateStage.STARTUP

    def run(self, tc: TaskContext) -> Outcome:
        tc.write_passfile()
        removed = configure_standby(tc)
        tc.event(SECTION_START, TEXT_START)
        if removed:
            names = ", ".join(sorted({line.split("=")[0].strip() for line in removed}))
            tc.event(SECTION_START, f"Ignored settings of the source that cloudmig manages: {names}")
        _start_beside_source_session(tc)
        tc.move(Transition.STANDBY_STARTED, ReplicationState.CATCHUP)
        tc.event(SECTION_SYNC, TEXT_SYNC)
        return Next()

    def revert(self, tc: TaskContext) -> None:
        undo_copy(tc)

    def on_retries_exhausted(self, tc: TaskContext, reason: str) -> Outcome:
        return Fail(RetriesExhausted(f"the standby could not be started: {reason}"))
