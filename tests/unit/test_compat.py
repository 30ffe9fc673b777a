"""The per-major differences of pg/compat.py (no server: the func and e2e tiers run them for real)."""

from __future__ import annotations

import pytest

from cloudmig.pg import compat


def test_supported_majors_are_10_to_18() -> None:
    assert tuple(range(10, 19)) == compat.SUPPORTED_MAJORS
    assert compat.major_of_version_num(100023) == 10 and compat.major_of_version_num(180001) == 18


@pytest.mark.parametrize(("major", "recovery_conf"), [(10, True), (11, True), (12, False), (18, False)])
def test_standby_configuration_style(major: int, recovery_conf: bool) -> None:
    assert compat.uses_recovery_conf(major) is recovery_conf
    unknown = compat.settings_unknown_to(major)
    assert ("primary_conninfo" in unknown) is recovery_conf
    assert ("restore_command" in unknown) is recovery_conf


def test_wal_keep_setting() -> None:
    assert compat.wal_keep_setting(12, 1024) == ("wal_keep_segments", "64")
    assert compat.wal_keep_setting(10, 1000) == ("wal_keep_segments", "63")  # rounded up
    assert compat.wal_keep_setting(12, 1024, segment_bytes=64 * 1024 * 1024) == ("wal_keep_segments", "16")
    assert compat.wal_keep_setting(13, 1024) == ("wal_keep_size", "1024MB")


def test_feature_gates() -> None:
    assert not compat.has_pg_promote(11) and compat.has_pg_promote(12)
    assert not compat.has_slot_wal_limit(12) and compat.has_slot_wal_limit(13)
    assert compat.current_xid_sql(12) == "txid_current()::text"
    assert compat.current_xid_sql(13) == "pg_current_xact_id()::text"
    assert compat.initdb_flags(13) == [] and compat.initdb_flags(14) == ["--no-instructions"]


def test_wal_receiver_columns_keep_their_names_on_every_major() -> None:
    names = list(compat.wal_receiver_select(18))
    for major in compat.SUPPORTED_MAJORS:
        assert list(compat.wal_receiver_select(major)) == names
    old = compat.wal_receiver_select(10)
    assert old["written_lsn"] == old["flushed_lsn"] == "received_lsn"
    assert old["sender_host"] == old["sender_port"] == "NULL"
    assert compat.wal_receiver_select(11)["sender_host"] == "sender_host"
    assert compat.wal_receiver_select(12)["flushed_lsn"] == "received_lsn"
    assert compat.wal_receiver_select(13)["flushed_lsn"] == "flushed_lsn"
