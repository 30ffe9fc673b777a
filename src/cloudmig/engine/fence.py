"""The switchover fence as the engine drives it: every change of the fence is persisted in the
task's evidence before it is made, so lifting it is idempotent and survives a SIGKILL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from cloudmig.domain.detail import SECTION_SWITCH
from cloudmig.domain.fence import FenceMethod, choose_fence
from cloudmig.domain.switchover import FenceChoice, FenceState, SwitchEvidence
from cloudmig.engine.taskctx import TaskContext
from cloudmig.pg import activity
from cloudmig.pg import fence as pg_fence
from cloudmig.pg.activity import Session
from cloudmig.pg.privileges import fence_privileges


def method_for(tc: TaskContext, conn: psycopg.Connection, choice: FenceChoice) -> FenceMethod:
    if choice is FenceChoice.OFF or tc.ctx.settings.switch_fence == "off":
        return FenceMethod.NONE
    return choose_fence(fence_privileges(conn))


def raise_fence(
    tc: TaskContext, conn: psycopg.Connection, ev: SwitchEvidence, method: FenceMethod
) -> list[Session]:
    """Make the source read-only for new transactions, then end client sessions so that they come
    back read-only; returns the sessions ended. `ev` is saved before each step; called again (a
    retry, a restart) it picks up from what the evidence says: what a half-raised fence found
    before it is kept, not read again from a source that is already fenced."""
    ev.fence = method.value
    if ev.fence_state is not FenceState.UP:
        if method is FenceMethod.ALTER_SYSTEM:
            if ev.fence_state is not FenceState.RAISING:
                ev.fence_previous = pg_fence.auto_conf_value(conn)
                ev.fence_state = FenceState.RAISING
                tc.save_evidence(ev)
            pg_fence.raise_by_alter_system(conn, tc.source().connect)
            ev.fence_lift_hint = pg_fence.LIFT_ALTER_SYSTEM
        else:
            if ev.fence_state is not FenceState.RAISING or ev.fenced_roles is None:
                ev.fenced_roles = pg_fence.fenceable_roles(conn)
                ev.fence_state = FenceState.RAISING
                tc.save_evidence(ev)
            for role in ev.fenced_roles:
                pg_fence.raise_for_role(conn, role)
            ev.fence_lift_hint = pg_fence.lift_role_hint(ev.fenced_roles)
        # Saved with the cut (or the abort): a restart before that finds `raising` and raises
        # again, which changes nothing.
        ev.fence_state = FenceState.UP
        ev.fence_up_at = datetime.fromtimestamp(activity.server_epoch(conn), UTC)
    # Again after a restart too: sessions opened before the fence may still be there.
    ended, kept = activity.terminate_client_sessions(
        conn, may_end_superusers=False, account=tc.task.source_account
    )
    tc.event(
        SECTION_SWITCH,
        f"Source fenced ({method.value}): new transactions are read-only; ended {len(ended)} client session(s)",
    )
    if kept:
        tc.event(
            SECTION_SWITCH,
            "Sessions cloudmig may not end (superusers) stay open; any write of theirs stops the "
            "switchover: " + "; ".join(s.describe() for s in kept),
        )
    return ended


@dataclass(frozen=True)
class Holes:
    """What may still write once the fence is up and client sessions are ended."""

    sessions: list[str]  # superuser sessions cloudmig may not end (a session may make itself read-write)
    settings: list[str]  # role or database settings of the parameter that beat the fence

    def describe(self) -> list[str]:
        return [f"session {s}" for s in self.sessions] + self.settings


def holes(conn: psycopg.Connection, ev: SwitchEvidence, account: str) -> Holes:
    return Holes(
        sessions=[
            s.describe()
            for s in activity.sessions(conn)
            if s.is_client and s.superuser and not activity.is_own(s, account)
        ],
        settings=pg_fence.overriding_settings(conn, ev.fence == FenceMethod.ROLE_SETTINGS.value),
    )


def lift_fence(tc: TaskContext, ev: SwitchEvidence) -> None:
    """Undo a fence raised (or half-raised) for this switchover; safe to call again."""
    if ev.fence_state not in (FenceState.RAISING, FenceState.UP, FenceState.LIFTING):
        return
    ev.fence_state = FenceState.LIFTING
    tc.save_evidence(ev)
    with tc.source().connect() as conn:
        conn.execute("SET default_transaction_read_only = off")  # our own session, fenced or not
        if ev.fence == FenceMethod.ALTER_SYSTEM.value:
            pg_fence.lift_by_alter_system(conn, tc.source().connect, ev.fence_previous)
        else:
            for role in ev.fenced_roles or []:
                pg_fence.lift_for_role(conn, role)
    ev.fence_state = FenceState.LIFTED
    tc.save_evidence(ev)
    tc.event(SECTION_SWITCH, "Fence lifted: the source accepts writes again")


def still_up(conn: psycopg.Connection, ev: SwitchEvidence) -> bool | None:
    """Whether the fence of a finished switchover still guards the old source (None: no fence)."""
    if ev.fence_state is not FenceState.UP:
        return None
    if ev.fence == FenceMethod.ALTER_SYSTEM.value:
        return pg_fence.new_sessions_read_only(conn)
    return pg_fence.roles_still_fenced(conn, ev.fenced_roles or [])
