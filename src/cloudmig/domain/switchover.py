"""The switchover as typed records: what the operator asked for, and what happened (the evidence).

Both are kept as JSON on the task (its `request` and `evidence` columns) and the evidence is shown
as is on Describe items, so the JSON form is part of the API: PascalCase keys, booleans as JSON
booleans, times as ISO-8601 UTC strings (`2022-03-01T06:40:51Z`), LSNs as PostgreSQL text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_pascal

from cloudmig.domain.lsn import format_lsn, parse_lsn
from cloudmig.domain.time import gmt
from cloudmig.domain.units import human_bytes


def _as_utc(value: Any) -> Any:
    if isinstance(value, int | float):  # epoch seconds, as evidence once stored them
        return datetime.fromtimestamp(float(value), UTC)
    return value


def _as_lsn(value: Any) -> Any:
    return parse_lsn(value) if isinstance(value, str) else value


def _precise(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[datetime, BeforeValidator(_as_utc), PlainSerializer(gmt, return_type=str)]
# Kept to the microsecond where durations are measured from it (the API's times are to the second).
PreciseUtcTime = Annotated[datetime, BeforeValidator(_as_utc), PlainSerializer(_precise, return_type=str)]
Lsn = Annotated[int, BeforeValidator(_as_lsn), PlainSerializer(format_lsn, return_type=str)]


class _Record(BaseModel):
    # Assignments are validated too: an LSN assigned as text (as Progress keeps it) is parsed, not
    # stored as a string that fails when the evidence is saved.
    model_config = ConfigDict(
        alias_generator=to_pascal, populate_by_name=True, extra="ignore", validate_assignment=True
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class FenceChoice(StrEnum):
    """Whether the operator lets cloudmig fence the source (make it read-only) at the switchover."""

    AUTO = "auto"  # fence when the account may, otherwise prove the source quiet
    OFF = "off"  # never fence: the operator stopped the application; prove it quiet


class SwitchPhase(StrEnum):
    REQUESTED = "requested"
    FENCING = "fencing"  # the fence is being raised and writes verified to have stopped
    CATCHUP = "catchup"  # the cut is taken; waiting for the target to replay it
    PROMOTING = "promoting"  # the point of no return: persisted before the promotion is issued
    DONE = "done"
    ABORTED = "aborted"


# From here on nothing may reset, wipe or re-initialise the target.
PAST_NO_RETURN = frozenset({SwitchPhase.PROMOTING, SwitchPhase.DONE})


class FenceState(StrEnum):
    NONE = "none"  # no fence (not available, not wanted, or forced)
    RAISING = "raising"  # persisted before the first statement that makes the source read-only
    UP = "up"
    LIFTING = "lifting"
    LIFTED = "lifted"


class SwitchRequest(_Record):
    """ActivateMigrationTargetInstance as recorded on the task."""

    requested_at: PreciseUtcTime
    force: bool = False
    timeout_seconds: float = 60.0
    fence: FenceChoice = FenceChoice.AUTO


class DataLoss(_Record):
    """Writes the new primary does not have: rows written to the old source after the cut, or WAL
    a forced switchover did not replay (None where unknown)."""

    rows_after_cut: int | None = None
    bytes_not_replayed: int | None = None
    detected_at: UtcTime


class SwitchEvidence(_Record):
    phase: SwitchPhase = SwitchPhase.REQUESTED
    forced: bool = False
    fence: str | None = None  # the FenceMethod used (alter_system, role_settings) or none
    fence_state: FenceState = FenceState.NONE
    fenced_roles: list[str] | None = None
    # What postgresql.auto.conf gave default_transaction_read_only before the fence (restored on lift).
    fence_previous: str | None = None
    fence_lift_hint: str | None = None
    # When new sessions became read-only (the source's clock).
    fence_up_at: UtcTime | None = None
    # What the fence does not hold (superuser sessions cloudmig may not end, role or database
    # settings that beat it): the proof that nothing writes then watches full-length windows.
    unfenced: list[str] | None = None
    gate_seconds: float | None = None
    cut_lsn: Lsn | None = None
    cut_xid: int | None = None  # the source's next transaction id at the cut
    timeline_before: int | None = None
    timeline_after: int | None = None
    replay_lsn_at_promote: Lsn | None = None
    source_lsn_at_promote: Lsn | None = None
    source_reachable_at_promote: bool | None = None
    last_known_source_lsn: Lsn | None = None
    last_known_source_at: UtcTime | None = None
    bytes_not_replayed: int | None = None
    catchup_seconds: float | None = None
    promote_issued_at: UtcTime | None = None
    promote_seconds: float | None = None
    total_seconds: float | None = None
    slot_dropped: bool | None = None
    aborted_reason: str | None = None
    # The watch of the old source after the switch.
    watch_until: UtcTime | None = None
    source_checked_at: UtcTime | None = None
    source_reachable: bool | None = None
    source_lsn_now: Lsn | None = None
    source_row_changes_after_cut: int | None = None
    source_writes_after_switch: bool | None = None
    fence_still_up: bool | None = None
    data_loss: DataLoss | None = None

    @classmethod
    def load(cls, raw: dict[str, Any]) -> SwitchEvidence:
        return cls.model_validate(raw) if raw else cls()

    @property
    def past_no_return(self) -> bool:
        return self.phase in PAST_NO_RETURN


def load_request(raw: dict[str, Any]) -> SwitchRequest | None:
    """The switchover request recorded in a task's `request` JSON, if any."""
    data = raw.get("Switch")
    return SwitchRequest.model_validate(data) if data else None


def describe_data_loss(raw: Any) -> str | None:
    """A DataLoss record (its JSON form) in words, or None when nothing was lost: one wording for
    the CLI, the console and anything else that shows it."""
    if not isinstance(raw, dict) or not raw:
        return None
    parts = []
    if raw.get("RowsAfterCut"):
        parts.append(f"{raw['RowsAfterCut']} row change(s) written to the old source after the cut")
    if raw.get("BytesNotReplayed"):
        parts.append(f"{human_bytes(raw['BytesNotReplayed'])} of the source's WAL not replayed")
    what = " and ".join(parts) or "writes"
    return f"{what}: not on the new primary (detected {raw.get('DetectedAt') or 'at an unknown time'})"
