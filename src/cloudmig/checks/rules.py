"""One pure function per sub-check of spec/assessment.md: (source facts, target facts) -> CheckResult.

No I/O here. This module holds the sub-checks up to Check storage format; cloudmig_rules.py the
later cloudmig additions. Several findings of one sub-check are joined by `; `.
"""

from __future__ import annotations

from cloudmig.checks.facts import SourceFacts, TargetFacts
from cloudmig.checks.subchecks import (
    CREATEROLE_PRIVILEGE,
    DATABASE_CONNECTABLE,
    DISK_SIZE,
    EXTENSIONS,
    GLIBC_VERSION,
    IP_CONNECTABLE,
    LOGICAL_SLOTS,
    MAJOR_VERSION,
    MONITOR_PRIVILEGE,
    PORT_CONNECTABLE,
    RDS_DATABASES,
    REPLICATION_PRIVILEGE,
    REPLICATION_SLOTS,
    RESERVED_ACCOUNTS,
    SPEC_PARAMS,
    STORAGE_FORMAT,
    TABLESPACES,
    WAL_KEEP_SIZE,
    WAL_LEVEL,
    WAL_SENDERS,
    Rule,
    SubCheck,
    source_unavailable,
    target_unavailable,
)
from cloudmig.checks.subchecks import source_missing as _source_missing
from cloudmig.checks.subchecks import target_missing as _target_missing
from cloudmig.domain.checks import CheckResult
from cloudmig.domain.watermarks import slot_wal_thresholds

__all__ = ["Rule", "SubCheck"]

MB = 1024 * 1024
GB = 1024 * MB

# The target's databases that may exist on an empty instance.
SYSTEM_DATABASES = frozenset({"template0", "template1", "postgres"})
SYSTEM_TABLESPACES = frozenset({"pg_default", "pg_global"})
# Installed by initdb in every database and part of the server itself: never subject to an allow-list.
CORE_EXTENSIONS = frozenset({"plpgsql"})
# The source's data may use at most 80% (4/5) of DBInstanceStorage.
DISK_QUOTA_NUM, DISK_QUOTA_DEN = 4, 5
# max_slot_wal_keep_size must be at least max(1 GB, 10% of the source's data).
MIN_WAL_KEEP_MB = 1024
WAL_KEEP_DATA_DIVISOR = 10
NEEDED_FREE_WAL_SENDERS = 2  # pg_basebackup -X stream uses two
NEEDED_FREE_SLOTS = 1
STORAGE_FORMAT_SETTINGS = ("block_size", "wal_segment_size")


def _mb_up(n: int) -> int:
    return -(-n // MB)


# ---- the rules, in report order ----------------------------------------------------------------------


def target_not_empty(tgt: TargetFacts) -> list[str]:
    """Why the target cannot receive a migration (the messages of Check rds databases)."""
    messages = [
        f"rds not empty, database {db} exists" for db in tgt.databases or () if db not in SYSTEM_DATABASES
    ]
    if tgt.postgres_tables:
        messages.append("postgres not empty, check if any table exists")
    return messages


def check_rds_databases(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if tgt.databases is None:
        return RDS_DATABASES.skipped(_target_missing(tgt, "databases", "databases"))
    messages = target_not_empty(tgt)
    if tgt.postgres_tables is None and not messages:
        return RDS_DATABASES.skipped(_target_missing(tgt, "tables", "tables of database postgres"))
    return RDS_DATABASES.error(*messages) if messages else RDS_DATABASES.success()


def check_ip_connectable(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.ip_error is not None:
        return IP_CONNECTABLE.error(f"{src.address or src.host} is unapproachable: {src.ip_error}")
    if src.address is None:
        return IP_CONNECTABLE.skipped(_source_missing(src, "address", "address"))
    return IP_CONNECTABLE.success()


def check_port_connectable(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.ip_error is not None:
        return PORT_CONNECTABLE.skipped("source host is unapproachable")
    if src.port_error is not None:
        return PORT_CONNECTABLE.error(f"{src.port} is unapproachable: {src.port_error}")
    if src.address is None:
        return PORT_CONNECTABLE.skipped(_source_missing(src, "address", "address"))
    return PORT_CONNECTABLE.success()


def _free(maximum: int | None, used: int | None) -> int | None:
    return None if maximum is None or used is None else max(0, maximum - used)


def check_database_connectable(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.ip_error is not None or src.port_error is not None:
        return DATABASE_CONNECTABLE.skipped(source_unavailable(src) or "")
    if src.login_error is not None:
        return DATABASE_CONNECTABLE.error(
            f"cannot connect to source database by {src.account}: {src.login_error}"
        )
    if not src.replication_tried:
        return DATABASE_CONNECTABLE.skipped(_source_missing(src, "replication", "replication connection"))
    if src.replication_conn_error is None:
        return DATABASE_CONNECTABLE.success()
    # A rejected replication connection is pg_hba's fault only when nothing else explains it.
    if src.has_replication is False:
        return DATABASE_CONNECTABLE.skipped(f"{src.account} has no replication privilege")
    free = _free(src.setting_int("max_wal_senders"), src.wal_senders_in_use)
    if free is not None and free < 1:
        return DATABASE_CONNECTABLE.skipped("no free wal sender on source")
    reason = src.replication_conn_error
    if "pg_hba.conf" in reason:
        return DATABASE_CONNECTABLE.error(
            f"replication connection rejected for {src.account}, check pg_hba.conf: {reason}"
        )
    return DATABASE_CONNECTABLE.error(f"replication connection rejected for {src.account}: {reason}")


def _privilege(check: SubCheck, granted: bool | None, src: SourceFacts, missing: str) -> CheckResult:
    if granted is None:
        return check.skipped(_source_missing(src, "account", "account privileges"))
    return check.success() if granted else check.error(missing)


def check_replication_privilege(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    return _privilege(
        REPLICATION_PRIVILEGE, src.has_replication, src, f"{src.account} has no replication privilege"
    )


def check_createrole_privilege(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    return _privilege(
        CREATEROLE_PRIVILEGE, src.has_createrole, src, f"{src.account} has no createrole privilege"
    )


def check_monitor_privilege(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    return _privilege(MONITOR_PRIVILEGE, src.is_monitor, src, f"{src.account} is not a member of pg_monitor")


def check_major_version(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    major = src.major
    if major is None:
        return MAJOR_VERSION.skipped(_source_missing(src, "settings", "server_version_num"))
    if major != tgt.major:
        return MAJOR_VERSION.error(
            f"source major version {major} is not consistent with rds major version {tgt.major}"
        )
    return MAJOR_VERSION.success()


def check_wal_level(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    level = src.settings.get("wal_level")
    if level is None:
        return WAL_LEVEL.skipped(_source_missing(src, "settings", "wal_level"))
    if level not in ("replica", "logical"):
        return WAL_LEVEL.error(f"wal_level is {level}, it must be replica or logical")
    return WAL_LEVEL.success()


def check_wal_senders(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    maximum = src.setting_int("max_wal_senders")
    if maximum is None:
        return WAL_SENDERS.skipped(_source_missing(src, "settings", "max_wal_senders"))
    free = _free(maximum, src.wal_senders_in_use)
    if free is None:
        return WAL_SENDERS.skipped(_source_missing(src, "wal_senders", "wal senders in use"))
    if free < NEEDED_FREE_WAL_SENDERS:
        return WAL_SENDERS.error(f"only {free} free wal senders on source, need {NEEDED_FREE_WAL_SENDERS}")
    return WAL_SENDERS.success()


def check_replication_slots(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    maximum = src.setting_int("max_replication_slots")
    if maximum is None:
        return REPLICATION_SLOTS.skipped(_source_missing(src, "settings", "max_replication_slots"))
    if src.slot_names is None:
        return REPLICATION_SLOTS.skipped(_source_missing(src, "replication_slots", "replication slots"))
    free = _free(maximum, len(src.slot_names))
    if free is not None and free < NEEDED_FREE_SLOTS:
        return REPLICATION_SLOTS.error(
            f"no free replication slot on source (max_replication_slots={maximum})"
        )
    return REPLICATION_SLOTS.success()


def check_glibc_version(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.databases is None:
        return GLIBC_VERSION.skipped(_source_missing(src, "databases", "databases"))
    versions = {db.libc_collversion for db in src.databases if db.libc_collversion is not None}
    if not versions:
        return GLIBC_VERSION.success()  # only C/POSIX/ICU databases: glibc does not sort anything
    reason = target_unavailable(tgt)
    if reason is not None:
        return GLIBC_VERSION.skipped(reason)
    # An unknown target version cannot be shown compatible: warn.
    if tgt.libc_collversion is None or versions != {tgt.libc_collversion}:
        return GLIBC_VERSION.warning("source glibc version is not compatible with rds pg")
    return GLIBC_VERSION.success()


def disk_limit_bytes(tgt: TargetFacts) -> int | None:
    """What the source's data may occupy on the target: 80% of the quota, and no more than is free."""
    if tgt.free_bytes is None:
        return None
    return min(tgt.storage_gb * GB * DISK_QUOTA_NUM // DISK_QUOTA_DEN, tgt.free_bytes)


def check_disk_size(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    total = src.total_size_bytes
    if total is None:
        probe = next((k for k in src.probe_errors if k.startswith("size:")), "databases")
        return DISK_SIZE.skipped(_source_missing(src, probe, "database sizes"))
    limit = disk_limit_bytes(tgt)
    if limit is None:
        return DISK_SIZE.skipped(f"cannot read free space of rds: {tgt.free_bytes_error or 'unknown'}")
    if total > limit:
        return DISK_SIZE.error(
            f"disk size of rds is not enough, source {_mb_up(total)} MB, rds {max(0, limit) // MB} MB"
        )
    return DISK_SIZE.success()


def wal_keep_needed_mb(total_bytes: int) -> int:
    return max(MIN_WAL_KEEP_MB, -(-total_bytes // (WAL_KEEP_DATA_DIVISOR * MB)))


def _slot_protection(src: SourceFacts, tgt: TargetFacts, keep_mb: int | None) -> str:
    """cloudmig's own watermarks on the WAL its slot holds, in words."""
    warning, limit = slot_wal_thresholds(tgt, src.setting_int("max_wal_size") or 0, keep_mb)
    return (
        f"cloudmig reports its slot above {warning // MB} MB of retained WAL and stops the migration"
        f" and drops the slot above {limit // MB} MB (settings slot_wal_warning_mb, slot_wal_limit_mb)"
    )


def check_wal_keep_size(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    major = src.major
    if major is None:
        return WAL_KEEP_SIZE.skipped(_source_missing(src, "settings", "server_version_num"))
    value = src.setting_int("max_slot_wal_keep_size")
    if value is None and major >= 13:
        return WAL_KEEP_SIZE.skipped(_source_missing(src, "settings", "max_slot_wal_keep_size"))
    if value is None or value < 0:  # before 13 there is no such setting: a slot holds WAL without bound
        return WAL_KEEP_SIZE.warning(
            "max_slot_wal_keep_size is unlimited, a stalled migration can fill the source disk",
            _slot_protection(src, tgt, None),
        )
    total = src.total_size_bytes
    if total is None:
        probe = next((k for k in src.probe_errors if k.startswith("size:")), "databases")
        return WAL_KEEP_SIZE.skipped(_source_missing(src, probe, "database sizes"))
    needed = wal_keep_needed_mb(total)
    if value < needed:
        return WAL_KEEP_SIZE.error(
            f"max_slot_wal_keep_size {value} MB is too small, need {needed} MB: the source would remove"
            " WAL the copy still needs and invalidate the migration's slot"
        )
    return WAL_KEEP_SIZE.success()


def check_spec_params(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    messages: list[str] = []
    for param, allowed in tgt.instance_class.spec_params().items():
        value = src.setting_int(param)
        if value is None:
            return SPEC_PARAMS.skipped(_source_missing(src, "settings", param))
        if value > allowed:
            messages.append(f"{param} of source ({value}) is larger than rds ({allowed})")
    return SPEC_PARAMS.error(*messages) if messages else SPEC_PARAMS.success()


def check_reserved_accounts(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.roles is None:
        return RESERVED_ACCOUNTS.skipped(_source_missing(src, "roles", "roles"))
    found = sorted(r for r in src.roles if r in tgt.reserved_roles)
    if found:
        return RESERVED_ACCOUNTS.error(*(f"reserved account {name} exists on source" for name in found))
    return RESERVED_ACCOUNTS.success()


def extension_supported(name: str, tgt: TargetFacts) -> bool:
    available = tgt.available_extensions or frozenset()
    if name not in available:
        return False
    allow = tgt.extension_allow_list
    return allow is None or name in allow or name in CORE_EXTENSIONS


def check_extensions(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.databases is None:
        return EXTENSIONS.skipped(_source_missing(src, "databases", "databases"))
    if tgt.available_extensions is None:
        return EXTENSIONS.skipped(_target_missing(tgt, "extensions", "available extensions"))
    errors: list[str] = []
    warnings: list[str] = []
    for db in src.databases:
        if not db.allow_connections:
            continue
        if db.extensions is None:
            warnings.append(
                f"cannot connect to database {db.name} by {src.account}, its extensions are not checked"
            )
            continue
        errors.extend(
            f"extension {ext} in database {db.name} is not supported by rds"
            for ext in db.extensions
            if not extension_supported(ext, tgt)
        )
    if errors:
        return EXTENSIONS.error(*errors, *warnings)
    if warnings:
        return EXTENSIONS.warning(*warnings)
    return EXTENSIONS.success()


def check_tablespaces(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.tablespaces is None:
        return TABLESPACES.skipped(_source_missing(src, "tablespaces", "tablespaces"))
    extra = [t for t in src.tablespaces if t not in SYSTEM_TABLESPACES]
    if extra:
        return TABLESPACES.error(*(f"tablespace {name} is not supported" for name in extra))
    return TABLESPACES.success()


def check_logical_slots(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.logical_slots is None:
        return LOGICAL_SLOTS.skipped(_source_missing(src, "replication_slots", "replication slots"))
    if src.logical_slots:
        return LOGICAL_SLOTS.warning(
            *(f"logical replication slot {name} will not be migrated" for name in src.logical_slots)
        )
    return LOGICAL_SLOTS.success()


def check_storage_format(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    messages: list[str] = []
    for setting in STORAGE_FORMAT_SETTINGS:
        mine = src.settings.get(setting)
        if mine is None:
            return STORAGE_FORMAT.skipped(_source_missing(src, "settings", setting))
        theirs = tgt.settings.get(setting)
        if theirs is None:
            return STORAGE_FORMAT.skipped(_target_missing(tgt, "settings", setting))
        if mine != theirs:
            messages.append(f"{setting} of source ({mine}) differs from rds ({theirs})")
    return STORAGE_FORMAT.error(*messages) if messages else STORAGE_FORMAT.success()
