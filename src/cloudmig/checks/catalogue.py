"""The assessment catalogue (spec/assessment.md) in report order, and the functions that run it."""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cloudmig.checks import cloudmig_rules, rules
from cloudmig.checks import subchecks as sc
from cloudmig.checks.facts import SourceFacts, TargetFacts, TargetSpec, describe_error
from cloudmig.checks.source_facts import gather_source
from cloudmig.checks.target_facts import gather_binaries, gather_target
from cloudmig.domain.checks import CheckResult
from cloudmig.pg.source import Source

log = logging.getLogger("cloudmig.checks")

# (sub-check, rule), exactly in the order of the report.
CATALOGUE: tuple[tuple[sc.SubCheck, sc.Rule], ...] = (
    (sc.RDS_DATABASES, rules.check_rds_databases),
    (sc.IP_CONNECTABLE, rules.check_ip_connectable),
    (sc.PORT_CONNECTABLE, rules.check_port_connectable),
    (sc.DATABASE_CONNECTABLE, rules.check_database_connectable),
    (sc.REPLICATION_PRIVILEGE, rules.check_replication_privilege),
    (sc.CREATEROLE_PRIVILEGE, rules.check_createrole_privilege),
    (sc.MONITOR_PRIVILEGE, rules.check_monitor_privilege),
    (sc.MAJOR_VERSION, rules.check_major_version),
    (sc.WAL_LEVEL, rules.check_wal_level),
    (sc.WAL_SENDERS, rules.check_wal_senders),
    (sc.REPLICATION_SLOTS, rules.check_replication_slots),
    (sc.GLIBC_VERSION, rules.check_glibc_version),
    (sc.DISK_SIZE, rules.check_disk_size),
    (sc.WAL_KEEP_SIZE, rules.check_wal_keep_size),
    (sc.SPEC_PARAMS, rules.check_spec_params),
    (sc.RESERVED_ACCOUNTS, rules.check_reserved_accounts),
    (sc.EXTENSIONS, rules.check_extensions),
    (sc.TABLESPACES, rules.check_tablespaces),
    (sc.LOGICAL_SLOTS, rules.check_logical_slots),
    (sc.STORAGE_FORMAT, rules.check_storage_format),
    (sc.SOURCE_ROLE, cloudmig_rules.check_source_role),
    (sc.UNLOGGED_TABLES, cloudmig_rules.check_unlogged_tables),
    (sc.SETTINGS_CARRIED, cloudmig_rules.check_settings_carried),
    (sc.SWITCHOVER_FENCE, cloudmig_rules.check_switchover_fence),
    (sc.SOURCE_ENCRYPTION, cloudmig_rules.check_source_encryption),
    (sc.SERVER_BINARIES, cloudmig_rules.check_server_binaries),
)


@dataclass(frozen=True)
class Assessment:
    """The results, and what the migration takes from the assessment: the settings-carry plan
    (domain/settings_carry.py, as a dict; None when the source's settings could not be read)."""

    results: list[CheckResult]
    settings_carry: dict[str, Any] | None


def _mark_dependents(results: list[CheckResult], source: SourceFacts) -> list[CheckResult]:
    """Sub-checks skipped only because the connection failed depend on the sub-check that failed."""
    dependency = sc.source_dependency(source)
    if dependency is None:
        return results
    failed, reason = dependency
    skipped = f"skipped, {reason}"
    return [
        dataclasses.replace(r, depends_on=failed.name)
        if r.message == skipped and r.name != failed.name
        else r
        for r in results
    ]


def evaluate(source: SourceFacts, target: TargetFacts) -> list[CheckResult]:
    """Apply every rule of the catalogue to gathered facts: one result per sub-check, in order."""
    results: list[CheckResult] = []
    for check, rule in CATALOGUE:
        try:
            result = rule(source, target)
        except Exception as exc:  # a bug in a rule must not hide the rest of the report
            log.exception("assessment rule %s failed", check.name)
            result = check.skipped(f"internal error: {describe_error(exc)}")
        if (result.section, result.name) != (check.section, check.name):
            result = check.skipped("internal error: rule answered for another sub-check")
        results.append(result)
    return _mark_dependents(results, source)


def gather(source: Source, target: TargetSpec) -> tuple[SourceFacts, TargetFacts]:
    """Facts from source, target and this host (read-only). Never raises for a bad source. The
    target is asked while the source is (they do not depend on each other)."""
    with ThreadPoolExecutor(1, thread_name_prefix="assess-target") as beside:
        target_facts = beside.submit(gather_target, target)
        src = gather_source(source)
        tgt = target_facts.result()
    gather_binaries(tgt, src.major, target)
    return src, tgt


def assess(source: Source, target: TargetSpec) -> Assessment:
    """Gather and judge; also the settings-carry plan the startup stage writes."""
    src, tgt = gather(source, target)
    plan = cloudmig_rules.settings_plan(src, tgt)
    return Assessment(evaluate(src, tgt), None if plan is None else plan.as_dict())


def run_assessment(source: Source, target: TargetSpec) -> list[CheckResult]:
    """Gather facts from source and target (read-only) and judge them. Never raises for a bad source."""
    return assess(source, target).results
