"""Gather what the rules need from the target (through its admin connection) and from cloudmig's
host (the PostgreSQL binaries of the source's major). Never raises."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from cloudmig.checks.facts import TargetFacts, TargetSpec, describe_error, probe
from cloudmig.domain.reserved import RESERVED_ROLES
from cloudmig.pg import catalog
from cloudmig.pg.binaries import PgBinariesNotFound, find_basebackup, find_bin_dir
from cloudmig.pg.conf import managed_names

log = logging.getLogger("cloudmig.checks")

TARGET_SETTINGS = ("server_version_num", "block_size", "wal_segment_size")


def gather_target(target: TargetSpec) -> TargetFacts:
    """Everything the rules need from the target, through its admin connection. Never raises."""
    return _gather(target, _gather_sql)


def gather_target_contents(target: TargetSpec) -> TargetFacts:
    """Only its databases and the tables in postgres (whether it is empty). Never raises."""
    return _gather(target, _gather_contents)


def _gather(target: TargetSpec, queries: Callable[[TargetFacts, catalog.Conn], None]) -> TargetFacts:
    facts = TargetFacts(
        major=target.major,
        instance_class=target.instance_class,
        storage_gb=target.storage_gb,
        extension_allow_list=target.extension_allow_list,
        slot_wal_warning_mb=target.slot_wal_warning_mb,
        slot_wal_limit_mb=target.slot_wal_limit_mb,
        reserved_roles=RESERVED_ROLES,
        managed_settings=managed_names() | frozenset(target.instance_class.spec_params()),
    )
    try:
        facts.free_bytes = int(target.free_bytes())
    except Exception as exc:
        facts.free_bytes_error = describe_error(exc)
    try:
        conn = target.connect_admin("postgres")
    except Exception as exc:
        facts.connect_error = describe_error(exc)
        return facts
    try:
        conn.autocommit = True
        queries(facts, conn)
    except Exception as exc:
        log.exception("assessment: gathering target facts failed")
        facts.probe_errors["target"] = describe_error(exc)
    finally:
        try:
            conn.close()
        except Exception as exc:
            log.debug("closing the target connection failed: %s", exc)
    return facts


def _gather_contents(facts: TargetFacts, conn: catalog.Conn) -> None:
    errors = facts.probe_errors
    databases = probe(errors, "databases", "", partial(catalog.database_names, conn))
    facts.databases = None if databases is None else tuple(databases)
    tables = probe(errors, "tables", "", partial(catalog.user_tables, conn))
    facts.postgres_tables = None if tables is None else tuple(tables)


def _gather_sql(facts: TargetFacts, conn: catalog.Conn) -> None:
    _gather_contents(facts, conn)
    errors = facts.probe_errors
    facts.available_extensions = probe(errors, "extensions", "", partial(catalog.available_extensions, conn))
    settings = probe(errors, "settings", "", partial(catalog.raw_settings, conn, TARGET_SETTINGS))
    if settings is not None:
        facts.settings = settings
    facts.shown_settings = probe(errors, "shown_settings", "", partial(catalog.shown_settings, conn))
    num = facts.settings.get("server_version_num", "")
    major = int(num) // 10000 if num.isdigit() else facts.major
    facts.libc_collversion = probe(
        errors, "collversion", "", partial(catalog.libc_collation_version, conn, major)
    )


def gather_binaries(facts: TargetFacts, major: int | None, spec: TargetSpec) -> None:
    """Whether the binaries of the source's major are installed on this host (never raises)."""
    if major is None:
        return
    facts.binaries_major = major
    try:
        find_bin_dir(major, spec.pg_bin_dirs)
    except PgBinariesNotFound as exc:
        facts.binaries_error = describe_error(exc)
        return
    try:
        # The copy may use a newer pg_basebackup, never an older one.
        find_basebackup(major, spec.pg_bin_dirs)
    except PgBinariesNotFound as exc:
        facts.basebackup_error = describe_error(exc)
    except Exception as exc:  # the lookup itself broke: say so rather than guess
        log.exception("assessment: looking for PostgreSQL %s binaries failed", major)
        facts.probe_errors["binaries"] = describe_error(exc)
