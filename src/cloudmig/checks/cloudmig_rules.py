"""The rules of the later *(cloudmig)* sections of spec/assessment.md: what a physical migration
needs of the source (a primary, a fence, an encrypted connection, binaries on this host) and what it
does not carry (UNLOGGED table contents, configuration files outside the data directory). Pure."""

from __future__ import annotations

from cloudmig.checks.facts import SourceFacts, TargetFacts
from cloudmig.checks.subchecks import (
    SERVER_BINARIES,
    SETTINGS_CARRIED,
    SOURCE_ENCRYPTION,
    SOURCE_ROLE,
    SWITCHOVER_FENCE,
    UNLOGGED_TABLES,
    source_missing,
    target_missing,
)
from cloudmig.domain.checks import CheckResult
from cloudmig.domain.fence import FenceMethod, choose_fence, fence_grants
from cloudmig.domain.settings_carry import SettingsCarryPlan, plan_settings_carry

INTERNET = "internet"


def check_source_role(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.in_recovery is None:
        return SOURCE_ROLE.skipped(source_missing(src, "recovery", "recovery state"))
    if src.in_recovery:
        return SOURCE_ROLE.error("source is in recovery (a standby); migrate from its primary")
    return SOURCE_ROLE.success()


def check_unlogged_tables(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.databases is None:
        return UNLOGGED_TABLES.skipped(source_missing(src, "databases", "databases"))
    found: list[str] = []
    unknown: list[str] = []
    for db in src.databases:
        if not db.allow_connections:
            continue
        if db.unlogged_tables is None:
            unknown.append(
                f"cannot connect to database {db.name} by {src.account}, its tables are not checked"
            )
            continue
        found.extend(
            f"unlogged table {t} in database {db.name} will arrive empty" for t in db.unlogged_tables
        )
    if found or unknown:
        return UNLOGGED_TABLES.warning(*found, *unknown)
    return UNLOGGED_TABLES.success()


def settings_plan(src: SourceFacts, tgt: TargetFacts) -> SettingsCarryPlan | None:
    """What becomes of the source's configuration-file settings on the target (None: not known)."""
    if src.config_settings is None or tgt.shown_settings is None:
        return None
    return plan_settings_carry(src.config_settings, tgt.shown_settings, tgt.managed_settings)


def check_settings_carried(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.config_settings is None:
        return SETTINGS_CARRIED.skipped(source_missing(src, "config_settings", "configuration settings"))
    plan = settings_plan(src, tgt)
    if plan is None:
        return SETTINGS_CARRIED.skipped(target_missing(tgt, "shown_settings", "settings"))
    changes = [entry.message() for entry in plan.changes()]
    if not changes:
        return SETTINGS_CARRIED.success()
    carried = sorted(plan.carried(), key=str.lower)
    if carried:
        changes.append(f"settings carried as on the source: {', '.join(carried)}")
    return SETTINGS_CARRIED.warning(*changes)


def check_switchover_fence(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.fence is None:
        return SWITCHOVER_FENCE.skipped(source_missing(src, "fence", "privileges of the account"))
    if choose_fence(src.fence) is not FenceMethod.NONE:
        return SWITCHOVER_FENCE.success()
    grants = " ".join(fence_grants(src.fence.major, src.account))
    return SWITCHOVER_FENCE.warning(
        f"cloudmig cannot fence the source at switchover; grant: {grants}"
        " (or make the account a superuser); without a fence, stop the application's writes"
        " before the switchover"
    )


def check_source_encryption(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    if src.ssl_in_use is None:
        return SOURCE_ENCRYPTION.skipped(source_missing(src, "ssl", "connection encryption"))
    if not src.ssl_in_use:
        return SOURCE_ENCRYPTION.warning("connection to the source is not encrypted")
    if src.category == INTERNET and not src.tls_verifies:
        return SOURCE_ENCRYPTION.warning("source certificate is not verified")
    return SOURCE_ENCRYPTION.success()


def check_server_binaries(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
    major = src.major
    if major is None:
        return SERVER_BINARIES.skipped(source_missing(src, "settings", "server_version_num"))
    if tgt.binaries_major != major:
        return SERVER_BINARIES.skipped(f"PostgreSQL {major} binaries were not looked for")
    if "binaries" in tgt.probe_errors:
        return SERVER_BINARIES.skipped(f"cannot look for binaries: {tgt.probe_errors['binaries']}")
    if tgt.binaries_error is not None:
        return SERVER_BINARIES.error(f"PostgreSQL {major} binaries are not installed on this host")
    if tgt.basebackup_error is not None:
        return SERVER_BINARIES.error(
            f"no pg_basebackup of PostgreSQL {major} or newer is installed on this host"
        )
    return SERVER_BINARIES.success()
