"""What differs between the PostgreSQL majors cloudmig migrates (10 to 18): one place per difference.

Every function takes the server's major (PG_VERSION of a data directory, `server_version_num //
10000` of a connection, or `binaries.server_major` of a bin dir) and answers for that major only.
"""

from __future__ import annotations

MIN_MAJOR = 10
MAX_MAJOR = 18
SUPPORTED_MAJORS: tuple[int, ...] = tuple(range(MIN_MAJOR, MAX_MAJOR + 1))

RECOVERY_CONF = "recovery.conf"
STANDBY_SIGNAL = "standby.signal"
# Default WAL segment size; a cluster may have been initialised with another.
DEFAULT_WAL_SEGMENT_BYTES = 16 * 1024 * 1024


def major_of_version_num(version_num: int) -> int:
    """server_version_num (e.g. 150007, 100023) → major (15, 10)."""
    return version_num // 10000


def basebackup_creates_slots(major: int) -> bool:
    """pg_basebackup creates the slot it streams through (-C, --create-slot) since 11."""
    return major >= 11


# ---- standby configuration -----------------------------------------------------------------------------


def uses_recovery_conf(major: int) -> bool:
    """Before 12 a standby is configured in recovery.conf (standby_mode = on) and its settings are
    not postgresql.conf parameters: the server refuses to start with them there. Since 12 they are
    ordinary settings and standby.signal makes the server a standby."""
    return major < 12


# Standby and recovery parameters that only exist as settings since 12; before, they live in
# recovery.conf (or nowhere) and must not appear in postgresql.conf or an included file.
RECOVERY_GUCS: frozenset[str] = frozenset(
    {
        "primary_conninfo",
        "primary_slot_name",
        "restore_command",
        "archive_cleanup_command",
        "recovery_end_command",
        "recovery_min_apply_delay",
        "promote_trigger_file",
        "recovery_target",
        "recovery_target_action",
        "recovery_target_inclusive",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_time",
        "recovery_target_timeline",
        "recovery_target_xid",
    }
)


def settings_unknown_to(major: int) -> frozenset[str]:
    """Setting names cloudmig would write that the server of `major` does not know."""
    unknown = RECOVERY_GUCS if uses_recovery_conf(major) else frozenset()
    if major < 14:
        unknown = unknown | {"recovery_init_sync_method"}
    return unknown


# ---- WAL retention -------------------------------------------------------------------------------------


def wal_keep_setting(
    major: int, keep_mb: int, segment_bytes: int = DEFAULT_WAL_SEGMENT_BYTES
) -> tuple[str, str]:
    """The setting that keeps `keep_mb` of WAL for standbys without a slot: wal_keep_segments (a
    count of segments, rounded up) before 13, wal_keep_size (MB) since."""
    if major < 13:
        segment_mb = max(segment_bytes // (1024 * 1024), 1)
        return "wal_keep_segments", str(-(-keep_mb // segment_mb))
    return "wal_keep_size", f"{keep_mb}MB"


def has_slot_wal_limit(major: int) -> bool:
    """max_slot_wal_keep_size and pg_replication_slots.wal_status exist since 13; before, a slot
    holds WAL without bound."""
    return major >= 13


def has_basebackup_progress(major: int) -> bool:
    """pg_stat_progress_basebackup (a base backup's phase and bytes sent) exists since 13."""
    return major >= 13


# ---- promotion and WAL receiver --------------------------------------------------------------------------


def has_pg_promote(major: int) -> bool:
    """pg_promote() exists since 12; `pg_ctl promote -w` works on every supported major."""
    return major >= 12


def wal_receiver_select(major: int) -> dict[str, str]:
    """pg_stat_wal_receiver column → SQL expression giving it on `major`. Before 13 there is one
    received_lsn (written and flushed); sender_host/sender_port exist since 11."""
    received = "received_lsn" if major < 13 else None
    sender = major >= 11
    return {
        "status": "status",
        "receive_start_lsn": "receive_start_lsn",
        "receive_start_tli": "receive_start_tli",
        "written_lsn": received or "written_lsn",
        "flushed_lsn": received or "flushed_lsn",
        "received_tli": "received_tli",
        "latest_end_lsn": "latest_end_lsn",
        "latest_end_time": "latest_end_time",
        "last_msg_send_time": "last_msg_send_time",
        "last_msg_receipt_time": "last_msg_receipt_time",
        "slot_name": "slot_name",
        "sender_host": "sender_host" if sender else "NULL",
        "sender_port": "sender_port" if sender else "NULL",
        "conninfo": "conninfo",
    }


# ---- transaction ids -----------------------------------------------------------------------------------


def current_xid_sql(major: int) -> str:
    """SQL for the current transaction's 64-bit id, as text: pg_current_xact_id() since 13,
    txid_current() before."""
    return "pg_current_xact_id()::text" if major >= 13 else "txid_current()::text"


# ---- initdb --------------------------------------------------------------------------------------------


def initdb_flags(major: int) -> list[str]:
    """initdb options beyond the common ones that `major` understands."""
    # --no-instructions (14+) only silences the "you can now start the server" hint.
    return ["--no-instructions"] if major >= 14 else []


def standby_file(major: int) -> str:
    """The file whose presence makes a cluster start as a standby (removed or renamed by PostgreSQL
    when a promotion completes)."""
    return RECOVERY_CONF if uses_recovery_conf(major) else STANDBY_SIGNAL
