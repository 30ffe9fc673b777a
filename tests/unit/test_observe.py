"""Replication state and progress derived from observations (no servers)."""

from __future__ import annotations

import json

from tests.support.spec import REPLICATION_INFO_KEYS

from cloudmig.domain.enums import ReplicationState
from cloudmig.engine.observe import (
    Observation,
    mask_conninfo,
    next_state,
    progress_fields,
    receiver_connecting,
)

RECEIVER = {
    "status": "streaming",
    "receive_start_lsn": "0/3000000",
    "receive_start_tli": "1",
    "flushed_lsn": "0/3000148",
    "received_tli": "1",
    "latest_end_lsn": "0/3000148",
    "latest_end_time": "2022-02-25 17:03:59.3344+08",
    "last_msg_send_time": "t1",
    "last_msg_receipt_time": "t2",
    "conninfo": "user=migratetest password=******** dbname=replication host=127.0.0.1 port=5432",
}


def obs(receiver: dict[str, str] | None, replay: int | None, source: int | None) -> Observation:
    return Observation(True, receiver, replay, None, source)


def test_states() -> None:
    s = ReplicationState
    assert next_state(s.CATCHUP, obs(None, 10, 20), 0) is s.DISCONNECT
    assert next_state(s.CATCHUP, obs({**RECEIVER, "status": "starting"}, 10, 20), 0) is s.DISCONNECT
    assert next_state(s.CATCHUP, obs(RECEIVER, 10, 20), 5) is s.CATCHUP
    assert next_state(s.CATCHUP, obs(RECEIVER, 18, 20), 5) is s.STREAMING
    # Once caught up, write bursts do not flip the state back while the link is up.
    assert next_state(s.STREAMING, obs(RECEIVER, 10, 10_000), 5) is s.STREAMING
    assert next_state(s.DISCONNECT, obs(RECEIVER, 10, 10_000), 5) is s.CATCHUP


def test_a_receiver_connecting_right_after_the_start_is_not_down() -> None:
    s = ReplicationState
    started = 1000.0
    connecting = Observation(True, None, 10, None, 20, started_at=started)
    launched = Observation(True, {**RECEIVER, "status": "starting"}, 10, None, 20, started_at=started)
    for o in (connecting, launched):
        assert receiver_connecting(s.CATCHUP, o, started + 0.1, grace=2.0)
        assert not receiver_connecting(s.CATCHUP, o, started + 2.0, grace=2.0)  # then it is down
    # Only for a standby still catching up since its start: a link lost later is down at once.
    assert not receiver_connecting(s.STREAMING, connecting, started + 0.1, grace=2.0)
    assert not receiver_connecting(s.DISCONNECT, connecting, started + 0.1, grace=2.0)
    assert not receiver_connecting(s.CATCHUP, obs(None, 10, 20), started + 0.1, grace=2.0)  # start unknown
    streaming = Observation(True, RECEIVER, 10, None, 20, started_at=started)
    assert not receiver_connecting(s.CATCHUP, streaming, started + 0.1, grace=2.0)


def test_replication_info_has_every_key_as_strings() -> None:
    info = json.loads(obs(RECEIVER, 0x3000148, 0x3000148).replication_info())
    assert set(info) == REPLICATION_INFO_KEYS
    assert all(isinstance(v, str) for v in info.values())
    assert info["ReplayLsn"] == "0/3000148" and info["ReplayLag"] == "0" and info["Synced"] == "true"
    assert info["ReplayTimestamp"] == "null" and info["IsSlave"] == "true"


def test_mask_conninfo() -> None:
    assert mask_conninfo("user=a password=secret host=h") == "user=a password=******** host=h"
    assert mask_conninfo("user=a password='se cr\\'et' host=h") == "user=a password=******** host=h"
    # The passfile's path is the server's business: it shows as the masked password (seed sample).
    assert mask_conninfo("user=a passfile=/x/pgpass host=h") == "user=a password=******** host=h"
    assert mask_conninfo("user=a passfile='/x y/pgpass' host=h") == "user=a password=******** host=h"
    assert mask_conninfo("user=a password=******** passfile=/x host=h") == "user=a password=******** host=h"
    assert mask_conninfo("user=a host=h") == "user=a host=h"


def test_rates_and_catch_up() -> None:
    first = progress_fields(obs(RECEIVER, 1000, 5000), {}, 100.0)
    assert first["LagBytes"] == 4000 and "ReplayBytesPerSecond" not in first
    second = progress_fields(obs(RECEIVER, 3000, 6000), first, 102.0)
    assert second["ReplayBytesPerSecond"] == 1000 and second["WalGenerationBytesPerSecond"] == 500
    assert second["CatchUpSeconds"] == 6.0 and second["LagSeconds"] == 3.0
