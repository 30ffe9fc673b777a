"""Stage increment: keep the standby running and observe it every few seconds."""

from __future__ import annotations

import time

import psycopg

from cloudmig.domain.detail import SECTION_SYNC
from cloudmig.domain.enums import ReplicationState
from cloudmig.engine.observe import Observation, next_state, observe, progress_fields
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg.sql import connect_socket


def _target_connection(tc: TaskContext) -> psycopg.Connection:
    inst = tc.instance()
    # Before promotion the copy only knows the source's roles; the migration account is a
    # pg_monitor member and the instance's socket trusts local connections.
    return connect_socket(tc.ctx.provider.socket_dir(inst.id), inst.port, tc.task.source_account)


def _source_connection(tc: TaskContext) -> psycopg.Connection | None:
    try:
        return tc.connection("source", tc.source().connect)
    except psycopg.OperationalError:
        return None  # the standby's own receiver status tells whether the link is down


def _observe(tc: TaskContext) -> Observation:
    source = _source_connection(tc)
    return observe(tc.connection("target", lambda: _target_connection(tc)), source)


def ensure_running(tc: TaskContext) -> None:
    inst = tc.instance()
    if not tc.ctx.provider.is_running(inst.id, inst.major):
        tc.write_passfile()
        tc.ctx.provider.start(inst.id, inst.major)
        tc.event(SECTION_SYNC, "Standby was not running; started it again")


def step(tc: TaskContext) -> float | None:
    started = time.monotonic()
    if not tc.passfile.exists():
        tc.write_passfile()  # e.g. the runtime dir was cleared by a reboot
    ensure_running(tc)
    try:
        obs = _observe(tc)
    except psycopg.OperationalError:
        # A restarted server breaks the connections kept from the last step: reconnect once.
        tc.close_connections()
        obs = _observe(tc)
    state = next_state(tc.task.replication_state, obs, tc.ctx.settings.streaming_lag_bytes)
    progress = dict(tc.task.progress)
    progress["Replication"] = progress_fields(obs, progress.get("Replication", {}), time.time())
    tc.observe(replication_info=obs.replication_info(), progress=progress)
    if state is not tc.task.replication_state:
        tc.update(replication_state=state)
        if state is ReplicationState.STREAMING:
            tc.event(SECTION_SYNC, "Standby caught up with the source; replication is streaming")
        elif state is ReplicationState.DISCONNECT:
            tc.event(SECTION_SYNC, "Replication link to the source is down; the standby keeps retrying")
    else:
        tc.refresh()
    # A fixed rate: observations are `observe_seconds` apart however long one takes.
    return max(tc.ctx.settings.observe_seconds - (time.monotonic() - started), 0.05)
