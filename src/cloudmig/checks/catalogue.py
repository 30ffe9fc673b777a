"""The assessment catalogue (spec/assessment.md) in report order, and the function that runs it."""

from __future__ import annotations

import logging

from cloudmig.checks import rules
from cloudmig.checks.facts import (
    SourceFacts,
    TargetFacts,
    TargetSpec,
    describe_error,
    gather_source,
    gather_target,
)
from cloudmig.checks.rules import Rule, SubCheck
from cloudmig.domain.checks import CheckResult
from cloudmig.pg.source import Source

log = logging.getLogger("cloudmig.checks")

# (sub-check, rule), exactly in the order of the report.
CATALOGUE: tuple[tuple[SubCheck, Rule], ...] = (
    (rules.RDS_DATABASES, rules.check_rds_databases),
    (rules.IP_CONNECTABLE, rules.check_ip_connectable),
    (rules.PORT_CONNECTABLE, rules.check_port_connectable),
    (rules.DATABASE_CONNECTABLE, rules.check_database_connectable),
    (rules.REPLICATION_PRIVILEGE, rules.check_replication_privilege),
    (rules.CREATEROLE_PRIVILEGE, rules.check_createrole_privilege),
    (rules.MONITOR_PRIVILEGE, rules.check_monitor_privilege),
    (rules.MAJOR_VERSION, rules.check_major_version),
    (rules.WAL_LEVEL, rules.check_wal_level),
    (rules.WAL_SENDERS, rules.check_wal_senders),
    (rules.REPLICATION_SLOTS, rules.check_replication_slots),
    (rules.GLIBC_VERSION, rules.check_glibc_version),
    (rules.DISK_SIZE, rules.check_disk_size),
    (rules.WAL_KEEP_SIZE, rules.check_wal_keep_size),
    (rules.SPEC_PARAMS, rules.check_spec_params),
    (rules.RESERVED_ACCOUNTS, rules.check_reserved_accounts),
    (rules.EXTENSIONS, rules.check_extensions),
    (rules.TABLESPACES, rules.check_tablespaces),
    (rules.LOGICAL_SLOTS, rules.check_logical_slots),
    (rules.STORAGE_FORMAT, rules.check_storage_format),
)


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
    return results


def run_assessment(source: Source, target: TargetSpec) -> list[CheckResult]:
    """Gather facts from source and target (read-only) and judge them. Never raises for a bad source."""
    return evaluate(gather_source(source), gather_target(target))
