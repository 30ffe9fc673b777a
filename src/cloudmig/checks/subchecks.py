"""The sub-checks of spec/assessment.md (section and name, kept exactly) and the reasons a fact is
missing, shared by every rule.

A sub-check that cannot be evaluated (an earlier step failed, a probe failed) is an error whose
message starts with `skipped, `. When the cause is a failed connection to the source, the catalogue
marks it as depending on the sub-check that failed (see `source_dependency`), and the report
collapses all of them into one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloudmig.checks.facts import SourceFacts, TargetFacts
from cloudmig.domain.checks import CheckResult
from cloudmig.domain.enums import CheckLevel


@dataclass(frozen=True)
class SubCheck:
    section: str
    name: str

    def success(self) -> CheckResult:
        return CheckResult(self.section, self.name, CheckLevel.SUCCESS)

    def warning(self, *messages: str) -> CheckResult:
        return CheckResult(self.section, self.name, CheckLevel.WARNING, "; ".join(messages))

    def error(self, *messages: str) -> CheckResult:
        return CheckResult(self.section, self.name, CheckLevel.ERROR, "; ".join(messages))

    def skipped(self, reason: str) -> CheckResult:
        return self.error(f"skipped, {reason}")


Rule = Callable[[SourceFacts, TargetFacts], CheckResult]

RDS_DATABASES = SubCheck("Check rds empty", "Check rds databases")
IP_CONNECTABLE = SubCheck("Check source connectivity", "Check ip connectable")
PORT_CONNECTABLE = SubCheck("Check source connectivity", "Check port connectable")
DATABASE_CONNECTABLE = SubCheck("Check source connectivity", "Check database connectable")
REPLICATION_PRIVILEGE = SubCheck("Check source connectivity", "Check account replication privilege")
CREATEROLE_PRIVILEGE = SubCheck("Check source connectivity", "Check account createrole privilege")
MONITOR_PRIVILEGE = SubCheck("Check source connectivity", "Check account monitor privilege")
MAJOR_VERSION = SubCheck("Check source version", "Check major version consistent")
WAL_LEVEL = SubCheck("Check source replication config", "Check wal level")
WAL_SENDERS = SubCheck("Check source replication config", "Check wal senders")
REPLICATION_SLOTS = SubCheck("Check source replication config", "Check replication slots")
GLIBC_VERSION = SubCheck("Check source glibc version", "Check source glibc version compatible")
DISK_SIZE = SubCheck("Check disk size", "Check disk size enough")
WAL_KEEP_SIZE = SubCheck("Check wal keep size", "Check wal keep size large enough")
SPEC_PARAMS = SubCheck("Check spec params", "Check if spec params too large")
RESERVED_ACCOUNTS = SubCheck("Check rds user", "Check reserved accounts")
EXTENSIONS = SubCheck("Check extensions", "Check extensions supported")
TABLESPACES = SubCheck("Check tablespaces", "Check tablespaces")
LOGICAL_SLOTS = SubCheck("Check logical replication slots", "Check logical replication slot")
STORAGE_FORMAT = SubCheck("Check storage format", "Check block and segment size")
SOURCE_ROLE = SubCheck("Check source role", "Check source is a primary")
UNLOGGED_TABLES = SubCheck("Check unlogged tables", "Check unlogged tables")
SETTINGS_CARRIED = SubCheck("Check source settings", "Check settings carried")
SWITCHOVER_FENCE = SubCheck("Check switchover fence", "Check source can be fenced")
SOURCE_ENCRYPTION = SubCheck("Check source encryption", "Check connection encrypted")
SERVER_BINARIES = SubCheck("Check binaries", "Check server binaries")


# ---- why a fact is missing ---------------------------------------------------------------------------


def source_dependency(src: SourceFacts) -> tuple[SubCheck, str] | None:
    """The connectivity sub-check that failed and the reason the sub-checks after it give, or None
    when the login worked."""
    if src.ip_error is not None:
        return IP_CONNECTABLE, "source host is unapproachable"
    if src.port_error is not None:
        return PORT_CONNECTABLE, "source port is unapproachable"
    if src.login_error is not None:
        return DATABASE_CONNECTABLE, "cannot connect to source database"
    return None


def source_unavailable(src: SourceFacts) -> str | None:
    """Why nothing could be read from the source, or None when the login worked."""
    dependency = source_dependency(src)
    if dependency is not None:
        return dependency[1]
    if "source" in src.probe_errors:
        return f"cannot gather source facts: {src.probe_errors['source']}"
    return None


def source_missing(src: SourceFacts, probe: str, what: str) -> str:
    chain = source_unavailable(src)
    if chain is not None:
        return chain
    error = src.probe_errors.get(probe)
    return f"cannot read {what} on source: {error}" if error else f"{what} of source unknown"


def target_unavailable(tgt: TargetFacts) -> str | None:
    if tgt.connect_error is not None:
        return f"cannot connect to rds: {tgt.connect_error}"
    if "target" in tgt.probe_errors:
        return f"cannot gather rds facts: {tgt.probe_errors['target']}"
    return None


def target_missing(tgt: TargetFacts, probe: str, what: str) -> str:
    chain = target_unavailable(tgt)
    if chain is not None:
        return chain
    error = tgt.probe_errors.get(probe)
    return f"cannot read {what} on rds: {error}" if error else f"{what} of rds unknown"
