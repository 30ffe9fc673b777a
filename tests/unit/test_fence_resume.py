"""Raising the switchover fence picks up where an interrupted attempt left it (a retry after an
error, a restart after a SIGKILL): what the first attempt found is kept, never read again from a
source it already changed. The PostgreSQL side is faked; tests/func/test_fence.py runs it for real."""

from __future__ import annotations

from typing import Any

import pytest

from cloudmig.domain.fence import FenceMethod, FencePrivileges, choose_fence
from cloudmig.domain.switchover import FenceState, SwitchEvidence
from cloudmig.engine import fence
from cloudmig.pg.activity import Session


class FakeSource:
    def connect(self) -> None:  # pragma: no cover - never called: raising is faked
        raise AssertionError


class FakeTask:
    source_account = "migratetest"


class FakeTaskContext:
    def __init__(self) -> None:
        self.task = FakeTask()
        self.saved: list[dict[str, Any]] = []
        self.events: list[str] = []

    def save_evidence(self, ev: SwitchEvidence) -> None:
        self.saved.append(ev.to_json())

    def event(self, section: str, text: str) -> None:
        self.events.append(text)

    def source(self) -> FakeSource:
        return FakeSource()


@pytest.fixture
def fake_pg(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {
        "auto_conf": "off",
        "raise_fails": 1,
        "raised": 0,
        "roles": [],
        "role_raised": [],
    }

    def raise_by_alter_system(conn: Any, connect: Any) -> None:
        if state["raise_fails"]:
            state["raise_fails"] -= 1
            raise RuntimeError("default_transaction_read_only did not become on after a reload")
        state["raised"] += 1
        state["auto_conf"] = "on"

    monkeypatch.setattr(fence.pg_fence, "auto_conf_value", lambda conn: state["auto_conf"])
    monkeypatch.setattr(fence.pg_fence, "raise_by_alter_system", raise_by_alter_system)
    monkeypatch.setattr(fence.pg_fence, "fenceable_roles", lambda conn: list(state["roles"]))
    monkeypatch.setattr(
        fence.pg_fence, "raise_for_role", lambda conn, role: state["role_raised"].append(role)
    )
    monkeypatch.setattr(fence.activity, "server_epoch", lambda conn: 1_800_000_000.0)
    ended = [Session(pid, "client backend", "postgres", "app", "", "", False, False) for pid in (1, 2)]
    monkeypatch.setattr(fence.activity, "terminate_client_sessions", lambda conn, **kw: (ended, []))
    return state


def test_alter_system_fence_resumes_with_the_value_found_first(fake_pg: dict[str, Any]) -> None:
    tc, ev = FakeTaskContext(), SwitchEvidence()
    with pytest.raises(RuntimeError):
        fence.raise_fence(tc, None, ev, FenceMethod.ALTER_SYSTEM)  # type: ignore[arg-type]
    assert ev.fence_state is FenceState.RAISING and ev.fence_previous == "off"
    assert tc.saved[-1]["FenceState"] == "raising"  # persisted before the first statement
    # The same attempt again (the half-raised fence may already have set the parameter to on).
    fake_pg["auto_conf"] = "on"
    fence.raise_fence(tc, None, ev, FenceMethod.ALTER_SYSTEM)  # type: ignore[arg-type]
    assert ev.fence_state is FenceState.UP and ev.fence_previous == "off"
    assert ev.fence_up_at is not None and ev.to_json()["FenceUpAt"] == "2027-01-15T08:00:00Z"
    # Up already (a restart in the quiet proof): not raised again, sessions ended again.
    fence.raise_fence(tc, None, ev, FenceMethod.ALTER_SYSTEM)  # type: ignore[arg-type]
    assert fake_pg["raised"] == 1
    assert sum("ended 2 client session(s)" in e for e in tc.events) == 2


def test_role_fence_resumes_with_the_roles_found_first(fake_pg: dict[str, Any]) -> None:
    tc, ev = FakeTaskContext(), SwitchEvidence()
    ev.fence_state, ev.fenced_roles = FenceState.RAISING, ["app", "web"]
    # "app" was fenced before the interruption: it now has a setting of its own and would no
    # longer be listed as fenceable; the evidence's list is the one to finish (and to lift).
    fake_pg["roles"] = ["web"]
    fence.raise_fence(tc, None, ev, FenceMethod.ROLE_SETTINGS)  # type: ignore[arg-type]
    assert fake_pg["role_raised"] == ["app", "web"] and ev.fenced_roles == ["app", "web"]
    assert ev.fence_state is FenceState.UP and '"app"' in (ev.fence_lift_hint or "")


def test_fence_choice() -> None:
    def privileges(**kw: Any) -> FencePrivileges:
        values = dict(
            major=15,
            superuser=False,
            createrole=True,
            alter_system_dtro=False,
            execute_reload=False,
            signal_backend=False,
        )
        values.update(kw)
        return FencePrivileges(**values)

    assert choose_fence(privileges()) is FenceMethod.NONE  # the default migration account
    grants = dict(alter_system_dtro=True, execute_reload=True, signal_backend=True)
    assert choose_fence(privileges(**grants)) is FenceMethod.ALTER_SYSTEM
    assert choose_fence(privileges(signal_backend=True)) is FenceMethod.ROLE_SETTINGS
    assert choose_fence(privileges(major=16, signal_backend=True)) is FenceMethod.NONE
    assert choose_fence(privileges(major=16, superuser=True)) is FenceMethod.ALTER_SYSTEM
