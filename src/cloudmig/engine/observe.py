"""Observation of a standby and its source: ReplicationInfo (spec §2.5) and replication progress."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from cloudmig.domain.enums import ReplicationState
from cloudmig.domain.lsn import format_lsn, parse_lsn
from cloudmig.pg import probes

_PASSWORD_IN_CONNINFO = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
_PASSFILE_IN_CONNINFO = re.compile(r"(?<!\S)passfile\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)")


def mask_conninfo(conninfo: str) -> str:
    """The password masked, as in RDS's sample (`password=********`); the passfile the standby reads
    it from is a server-internal path and shows as that masked password too."""
    masked = _PASSWORD_IN_CONNINFO.sub(r"\1********", conninfo)
    if _PASSWORD_IN_CONNINFO.search(masked):
        return " ".join(_PASSFILE_IN_CONNINFO.sub("", masked).split())
    return _PASSFILE_IN_CONNINFO.sub("password=********", masked, count=1)


@dataclass(frozen=True)
class Observation:
    in_recovery: bool
    receiver: dict[str, str] | None
    replay_lsn: int | None
    replay_timestamp: str | None
    source_lsn: int | None
    started_at: float | None = None  # the target's postmaster start (epoch seconds)

    @property
    def received_lsn(self) -> int | None:
        if not self.receiver or not self.receiver.get("flushed_lsn"):
            return None
        return parse_lsn(self.receiver["flushed_lsn"])

    @property
    def lag_bytes(self) -> int | None:
        if self.source_lsn is None or self.replay_lsn is None:
            return None
        return max(self.source_lsn - self.replay_lsn, 0)

    def replication_info(self) -> str:
        r = self.receiver or {}
        lag = self.lag_bytes
        info = {
            "Status": r.get("status", "stopped"),
            "ReceiveStartLsn": r.get("receive_start_lsn", ""),
            "ReceiveStartTli": r.get("receive_start_tli", ""),
            "ReceivedLsn": r.get("flushed_lsn", ""),
            "ReceivedTli": r.get("received_tli", ""),
            "LatestEndLsn": r.get("latest_end_lsn", ""),
            "LatestEndTime": r.get("latest_end_time", ""),
            "LastMsgSendTime": r.get("last_msg_send_time", ""),
            "LastMsgReceiptTime": r.get("last_msg_receipt_time", ""),
            "ReplayLsn": "" if self.replay_lsn is None else _fmt(self.replay_lsn),
            "ReplayTimestamp": self.replay_timestamp or "null",
            # Bytes of the source's WAL the standby has not replayed yet.
            "ReplayLag": "" if lag is None else str(lag),
            "Synced": "true" if lag == 0 else "false",
            "IsSlave": "true" if self.in_recovery else "false",
            "Conninfo": mask_conninfo(r.get("conninfo", "")),
        }
        return json.dumps(info, separators=(",", ":"))


def _fmt(lsn: int) -> str:
    return format_lsn(lsn)


def observe(target: psycopg.Connection, source: psycopg.Connection | None) -> Observation:
    source_lsn = probes.current_wal_lsn(source) if source is not None else None
    return Observation(
        in_recovery=probes.is_in_recovery(target),
        receiver=probes.wal_receiver(target),
        replay_lsn=probes.replay_lsn(target),
        replay_timestamp=probes.replay_timestamp(target),
        source_lsn=source_lsn,
        started_at=probes.postmaster_start_time(target),
    )


def next_state(current: ReplicationState, obs: Observation, streaming_lag_bytes: int) -> ReplicationState:
    """disconnect without a receiver; streaming once caught up; catchup until then."""
    receiver_up = obs.receiver is not None and obs.receiver.get("status") == "streaming"
    if not receiver_up:
        return ReplicationState.DISCONNECT
    lag = obs.lag_bytes
    if current is ReplicationState.STREAMING:
        return ReplicationState.STREAMING
    if lag is not None and lag <= streaming_lag_bytes:
        return ReplicationState.STREAMING
    return ReplicationState.CATCHUP


def receiver_connecting(current: ReplicationState, obs: Observation, now: float, grace: float) -> bool:
    """A standby started less than `grace` seconds ago, still catching up, whose WAL receiver has not
    connected yet: pg_stat_wal_receiver shows nothing until it has (and "starting" while it is
    launched). Not down yet; `disconnect` once the grace has passed."""
    if current is not ReplicationState.CATCHUP or obs.started_at is None:
        return False
    status = obs.receiver.get("status") if obs.receiver is not None else None
    return status in (None, "starting", "connecting") and 0 <= now - obs.started_at < grace


def progress_fields(obs: Observation, previous: dict[str, Any], now: float) -> dict[str, Any]:
    """Lag in bytes and seconds, WAL generation and replay rates, and time to catch up."""
    out: dict[str, Any] = {
        "SourceLsn": None if obs.source_lsn is None else _fmt(obs.source_lsn),
        "ReceivedLsn": None if obs.received_lsn is None else _fmt(obs.received_lsn),
        "ReplayedLsn": None if obs.replay_lsn is None else _fmt(obs.replay_lsn),
        "LagBytes": obs.lag_bytes,
        "ObservedAt": now,
    }
    prev_at = previous.get("ObservedAt")
    if isinstance(prev_at, (int, float)) and now > prev_at:
        dt = now - prev_at
        prev_src, prev_replay = previous.get("_source"), previous.get("_replay")
        gen = (
            (obs.source_lsn - prev_src) / dt if obs.source_lsn is not None and prev_src is not None else None
        )
        rep = (
            (obs.replay_lsn - prev_replay) / dt
            if obs.replay_lsn is not None and prev_replay is not None
            else None
        )
        out["WalGenerationBytesPerSecond"] = None if gen is None else round(gen)
        out["ReplayBytesPerSecond"] = None if rep is None else round(rep)
        lag = obs.lag_bytes
        if lag is not None and rep is not None and gen is not None:
            closing = rep - gen
            out["CatchUpSeconds"] = 0.0 if lag == 0 else (round(lag / closing, 1) if closing > 0 else None)
            out["LagSeconds"] = round(lag / rep, 1) if rep > 0 else (0.0 if lag == 0 else None)
    out["_source"], out["_replay"] = obs.source_lsn, obs.replay_lsn
    return out
