"""The assessment rules, one by one, on hand-made facts; and the report of a whole catalogue."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudmig.checks import catalogue, cloudmig_rules, rules
from cloudmig.checks.connectivity import probe_tcp
from cloudmig.checks.facts import DatabaseFacts, SourceFacts, TargetFacts, describe_error
from cloudmig.domain.checks import CheckResult, passed, render_report
from cloudmig.domain.classes import CATALOGUE as CLASSES
from cloudmig.domain.enums import CheckLevel
from cloudmig.domain.fence import FencePrivileges
from cloudmig.domain.settings_carry import SourceSetting

MB = 1024 * 1024
GB = 1024 * MB
CLASS = CLASSES["pg.n2.medium.2c"]  # max_connections 400, workers 16, senders 16, prepared 200, locks 128
FENCE_OK = FencePrivileges(
    major=15,
    superuser=False,
    createrole=True,
    alter_system_dtro=True,
    execute_reload=True,
    signal_backend=True,
)


def source(**overrides: object) -> SourceFacts:
    """A source that passes every check."""
    facts = SourceFacts(
        host="db.example",
        port=5432,
        account="migrator",
        address="192.0.2.10",
        replication_tried=True,
        is_superuser=False,
        has_replication=True,
        has_createrole=True,
        is_monitor=True,
        settings={
            "server_version_num": "150007",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "max_slot_wal_keep_size": "2048",
            "max_wal_size": "1024",
            "max_connections": "100",
            "max_prepared_transactions": "0",
            "max_worker_processes": "8",
            "max_locks_per_transaction": "64",
            "block_size": "8192",
            "wal_segment_size": "16777216",
        },
        wal_senders_in_use=0,
        slot_names=(),
        logical_slots=(),
        databases=(
            DatabaseFacts("app", size_bytes=100 * MB, extensions=("hstore", "plpgsql"), unlogged_tables=()),
            DatabaseFacts("postgres", size_bytes=8 * MB, extensions=("plpgsql",), unlogged_tables=()),
            DatabaseFacts("template0", allow_connections=False, size_bytes=8 * MB),
            DatabaseFacts("template1", size_bytes=8 * MB, extensions=("plpgsql",), unlogged_tables=()),
        ),
        roles=("migrator", "pg_monitor", "postgres"),
        tablespaces=("pg_default", "pg_global"),
        in_recovery=False,
        ssl_in_use=True,
        fence=FENCE_OK,
        config_settings=(SourceSetting("TimeZone", "Etc/UTC"), SourceSetting("work_mem", "8MB")),
    )
    return dataclasses.replace(facts, **overrides)  # type: ignore[arg-type]


def target(**overrides: object) -> TargetFacts:
    """An empty target that accepts the source above."""
    facts = TargetFacts(
        major=15,
        instance_class=CLASS,
        storage_gb=10,
        reserved_roles=frozenset({"cloudmig_admin"}),
        free_bytes=50 * GB,
        databases=("postgres", "template0", "template1"),
        postgres_tables=(),
        available_extensions=frozenset({"hstore", "plpgsql", "pg_trgm"}),
        settings={"server_version_num": "150007", "block_size": "8192", "wal_segment_size": "16777216"},
        libc_collversion=None,
        managed_settings=frozenset({"max_connections", "port", "shared_buffers"}),
        shown_settings={"timezone": "GMT", "work_mem": "4MB", "max_connections": "400", "port": "15432"},
        binaries_major=15,
    )
    return dataclasses.replace(facts, **overrides)  # type: ignore[arg-type]


def line(rule: rules.Rule, src: SourceFacts | None = None, tgt: TargetFacts | None = None) -> str:
    return rule(src or source(), tgt or target()).line()


def db(name: str, **kw: object) -> DatabaseFacts:
    return dataclasses.replace(DatabaseFacts(name, size_bytes=MB, extensions=(), unlogged_tables=()), **kw)  # type: ignore[arg-type]


NOT_LOGGED_IN = {"login_error": "FATAL: password authentication failed for user migrator"}
HEALTHY_REPORT = """\
[Check rds empty]
Check rds databases: success
[Check source connectivity]
Check ip connectable: success
Check port connectable: success
Check database connectable: success
Check account replication privilege: success
Check account createrole privilege: success
Check account monitor privilege: success
[Check source version]
Check major version consistent: success
[Check source replication config]
Check wal level: success
Check wal senders: success
Check replication slots: success
[Check source glibc version]
Check source glibc version compatible: success
[Check disk size]
Check disk size enough: success
[Check wal keep size]
Check wal keep size large enough: success
[Check spec params]
Check if spec params too large: success
[Check rds user]
Check reserved accounts: success
[Check extensions]
Check extensions supported: success
[Check tablespaces]
Check tablespaces: success
[Check logical replication slots]
Check logical replication slot: success
[Check storage format]
Check block and segment size: success
[Check source role]
Check source is a primary: success
[Check unlogged tables]
Check unlogged tables: success
[Check source settings]
Check settings carried: success
[Check switchover fence]
Check source can be fenced: success
[Check source encryption]
Check connection encrypted: success
[Check binaries]
Check server binaries: success
*Migrate check success*
"""


# ---- the catalogue -------------------------------------------------------------------------------------


def test_catalogue_is_in_spec_order() -> None:
    assert [(c.section, c.name) for c, _ in catalogue.CATALOGUE] == [
        ("Check rds empty", "Check rds databases"),
        ("Check source connectivity", "Check ip connectable"),
        ("Check source connectivity", "Check port connectable"),
        ("Check source connectivity", "Check database connectable"),
        ("Check source connectivity", "Check account replication privilege"),
        ("Check source connectivity", "Check account createrole privilege"),
        ("Check source connectivity", "Check account monitor privilege"),
        ("Check source version", "Check major version consistent"),
        ("Check source replication config", "Check wal level"),
        ("Check source replication config", "Check wal senders"),
        ("Check source replication config", "Check replication slots"),
        ("Check source glibc version", "Check source glibc version compatible"),
        ("Check disk size", "Check disk size enough"),
        ("Check wal keep size", "Check wal keep size large enough"),
        ("Check spec params", "Check if spec params too large"),
        ("Check rds user", "Check reserved accounts"),
        ("Check extensions", "Check extensions supported"),
        ("Check tablespaces", "Check tablespaces"),
        ("Check logical replication slots", "Check logical replication slot"),
        ("Check storage format", "Check block and segment size"),
        ("Check source role", "Check source is a primary"),
        ("Check unlogged tables", "Check unlogged tables"),
        ("Check source settings", "Check settings carried"),
        ("Check switchover fence", "Check source can be fenced"),
        ("Check source encryption", "Check connection encrypted"),
        ("Check binaries", "Check server binaries"),
    ]


def test_healthy_facts_render_the_full_success_report() -> None:
    results = catalogue.evaluate(source(), target())
    assert render_report(results) == HEALTHY_REPORT
    assert passed(results)


def test_each_rule_answers_for_its_own_sub_check() -> None:
    for check, rule in catalogue.CATALOGUE:
        for src in (source(), source(**NOT_LOGGED_IN)):
            result = rule(src, target())
            assert (result.section, result.name) == (check.section, check.name)


def test_unreachable_source_still_lists_every_sub_check_and_fails() -> None:
    src = SourceFacts(
        host="db.example",
        port=5432,
        account="migrator",
        address="192.0.2.10",
        ip_error="connection timed out on 192.0.2.10:5432 after 5s",
    )
    results = catalogue.evaluate(src, target())
    assert len(results) == len(catalogue.CATALOGUE)
    # The machine-readable list keeps every sub-check, each saying what it depends on ...
    by_name = {r.name: r for r in results}
    assert by_name["Check port connectable"].depends_on == "Check ip connectable"
    assert by_name["Check wal level"].as_dict() == {
        "Section": "Check source replication config",
        "Name": "Check wal level",
        "Level": "error",
        "Message": "skipped, source host is unapproachable",
        "DependsOn": "Check ip connectable",
    }
    # ... and the report collapses them into one line after the failure, in its section.
    assert render_report(results) == (
        "[Check rds empty]\n"
        "Check rds databases: success\n"
        "[Check source connectivity]\n"
        "Check ip connectable: error(error:192.0.2.10 is unapproachable:"
        " connection timed out on 192.0.2.10:5432 after 5s)\n"
        "Dependent checks: error(error:skipped, source host is unapproachable"
        " (24 sub-checks not run, they need Check ip connectable))\n"
        "*Migrate check failed*\n"
    )


def test_a_failed_login_collapses_the_checks_that_need_it() -> None:
    src = source(**NOT_LOGGED_IN, settings={}, databases=None, roles=None, in_recovery=None, fence=None)
    src = dataclasses.replace(
        src, is_superuser=None, has_replication=None, has_createrole=None, is_monitor=None
    )
    src = dataclasses.replace(src, wal_senders_in_use=None, slot_names=None, logical_slots=None)
    src = dataclasses.replace(src, tablespaces=None, ssl_in_use=None, config_settings=None)
    report = render_report(catalogue.evaluate(src, target()))
    assert report == (
        "[Check rds empty]\n"
        "Check rds databases: success\n"
        "[Check source connectivity]\n"
        "Check ip connectable: success\n"
        "Check port connectable: success\n"
        "Check database connectable: error(error:cannot connect to source database by migrator:"
        " FATAL: password authentication failed for user migrator)\n"
        "Dependent checks: error(error:skipped, cannot connect to source database"
        " (22 sub-checks not run, they need Check database connectable))\n"
        "*Migrate check failed*\n"
    )


def test_warnings_alone_keep_the_report_successful() -> None:
    src = source(logical_slots=("sub1",), slot_names=("sub1",))
    results = catalogue.evaluate(src, target())
    report = render_report(results)
    assert (
        "Check logical replication slot: warning(warning:logical replication slot sub1"
        " will not be migrated)\n" in report
    )
    assert report.endswith("*Migrate check success*\n")


def test_a_crashing_rule_becomes_a_skipped_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: SourceFacts, tgt: TargetFacts) -> CheckResult:
        raise ZeroDivisionError("division by zero")

    entries = list(catalogue.CATALOGUE)
    entries[8] = (rules.WAL_LEVEL, boom)
    monkeypatch.setattr(catalogue, "CATALOGUE", tuple(entries))
    results = catalogue.evaluate(source(), target())
    assert results[8].line() == "Check wal level: error(error:skipped, internal error: division by zero)"
    assert len(results) == 26


# ---- Check rds empty -----------------------------------------------------------------------------------


def test_rds_databases() -> None:
    rule = rules.check_rds_databases
    assert line(rule) == "Check rds databases: success"
    assert (
        line(rule, tgt=target(databases=("app", "postgres", "template0", "template1")))
        == "Check rds databases: error(error:rds not empty, database app exists)"
    )
    assert (
        line(rule, tgt=target(postgres_tables=("public.t",)))
        == "Check rds databases: error(error:postgres not empty, check if any table exists)"
    )
    assert line(rule, tgt=target(databases=("a", "b", "postgres"), postgres_tables=("public.t",))) == (
        "Check rds databases: error(error:rds not empty, database a exists;"
        " rds not empty, database b exists; postgres not empty, check if any table exists)"
    )
    assert line(
        rule, tgt=target(connect_error="connection refused", databases=None, postgres_tables=None)
    ) == ("Check rds databases: error(error:skipped, cannot connect to rds: connection refused)")
    assert line(rule, tgt=target(postgres_tables=None, probe_errors={"tables": "boom"})) == (
        "Check rds databases: error(error:skipped, cannot read tables of database postgres on rds: boom)"
    )


# ---- Check source connectivity ---------------------------------------------------------------------------


def test_ip_connectable() -> None:
    rule = rules.check_ip_connectable
    assert line(rule) == "Check ip connectable: success"
    assert (
        line(rule, source(ip_error="no route to host on 192.0.2.10:5432"))
        == "Check ip connectable: error(error:192.0.2.10 is unapproachable: no route to host on 192.0.2.10:5432)"
    )
    # A name that does not resolve is reported by name.
    assert (
        line(rule, source(address=None, ip_error="cannot resolve db.example"))
        == "Check ip connectable: error(error:db.example is unapproachable: cannot resolve db.example)"
    )


def test_port_connectable() -> None:
    rule = rules.check_port_connectable
    assert line(rule) == "Check port connectable: success"
    assert (
        line(rule, source(port_error="connection refused on 192.0.2.10:5432"))
        == "Check port connectable: error(error:5432 is unapproachable: connection refused on 192.0.2.10:5432)"
    )
    assert (
        line(rule, source(ip_error="no route"))
        == "Check port connectable: error(error:skipped, source host is unapproachable)"
    )


def test_database_connectable() -> None:
    rule = rules.check_database_connectable
    assert line(rule) == "Check database connectable: success"
    assert line(rule, source(**NOT_LOGGED_IN)) == (
        "Check database connectable: error(error:cannot connect to source database by migrator:"
        " FATAL: password authentication failed for user migrator)"
    )
    assert (
        line(rule, source(port_error="refused"))
        == "Check database connectable: error(error:skipped, source port is unapproachable)"
    )
    rejected = 'no pg_hba.conf entry for replication connection from host "10.0.0.9", user "migrator"'
    assert line(rule, source(replication_conn_error=rejected)) == (
        "Check database connectable: error(error:replication connection rejected for migrator,"
        f" check pg_hba.conf: {rejected})"
    )
    assert line(rule, source(replication_conn_error="sorry, too many clients already")) == (
        "Check database connectable: error(error:replication connection rejected for migrator:"
        " sorry, too many clients already)"
    )
    # Another check explains a refused replication connection: not blamed on pg_hba.conf.
    assert line(rule, source(replication_conn_error="x", has_replication=False)) == (
        "Check database connectable: error(error:skipped, migrator has no replication privilege)"
    )
    assert line(rule, source(replication_conn_error="x", wal_senders_in_use=10)) == (
        "Check database connectable: error(error:skipped, no free wal sender on source)"
    )


@pytest.mark.parametrize(
    ("rule", "attr", "text"),
    [
        (
            rules.check_replication_privilege,
            "has_replication",
            "Check account replication privilege: error(error:migrator has no replication privilege)",
        ),
        (
            rules.check_createrole_privilege,
            "has_createrole",
            "Check account createrole privilege: error(error:migrator has no createrole privilege)",
        ),
        (
            rules.check_monitor_privilege,
            "is_monitor",
            "Check account monitor privilege: error(error:migrator is not a member of pg_monitor)",
        ),
    ],
)
def test_privileges(rule: rules.Rule, attr: str, text: str) -> None:
    name = text.split(":", 1)[0]
    assert line(rule) == f"{name}: success"
    assert line(rule, source(**{attr: False})) == text
    assert line(rule, source(**NOT_LOGGED_IN, **{attr: None})) == (
        f"{name}: error(error:skipped, cannot connect to source database)"
    )
    assert line(rule, source(**{attr: None}, probe_errors={"account": "permission denied"})) == (
        f"{name}: error(error:skipped, cannot read account privileges on source: permission denied)"
    )


# ---- version, replication config ---------------------------------------------------------------------------


def test_major_version() -> None:
    rule = rules.check_major_version
    assert line(rule) == "Check major version consistent: success"
    assert line(rule, tgt=target(major=16)) == (
        "Check major version consistent: error(error:source major version 15 is not consistent with rds major"
        " version 16)"
    )
    assert line(rule, source(**NOT_LOGGED_IN, settings={})) == (
        "Check major version consistent: error(error:skipped, cannot connect to source database)"
    )


def _with_settings(**changes: str) -> SourceFacts:
    base = source()
    return source(settings={**base.settings, **changes})


def test_wal_level() -> None:
    rule = rules.check_wal_level
    assert line(rule) == "Check wal level: success"
    assert line(rule, _with_settings(wal_level="logical")) == "Check wal level: success"
    assert line(rule, _with_settings(wal_level="minimal")) == (
        "Check wal level: error(error:wal_level is minimal, it must be replica or logical)"
    )


def test_wal_senders() -> None:
    rule = rules.check_wal_senders
    assert line(rule) == "Check wal senders: success"
    assert line(rule, source(wal_senders_in_use=8)) == "Check wal senders: success"
    assert line(rule, source(wal_senders_in_use=9)) == (
        "Check wal senders: error(error:only 1 free wal senders on source, need 2)"
    )
    assert line(rule, _with_settings(max_wal_senders="0")) == (
        "Check wal senders: error(error:only 0 free wal senders on source, need 2)"
    )
    assert line(rule, source(wal_senders_in_use=None, probe_errors={"wal_senders": "denied"})) == (
        "Check wal senders: error(error:skipped, cannot read wal senders in use on source: denied)"
    )


def test_replication_slots() -> None:
    rule = rules.check_replication_slots
    assert line(rule) == "Check replication slots: success"
    assert line(rule, _with_settings(max_replication_slots="0")) == (
        "Check replication slots: error(error:no free replication slot on source (max_replication_slots=0))"
    )
    full = source(slot_names=("a", "b"), settings={**source().settings, "max_replication_slots": "2"})
    assert line(rule, full) == (
        "Check replication slots: error(error:no free replication slot on source (max_replication_slots=2))"
    )


# ---- glibc, disk, wal keep size ---------------------------------------------------------------------


def test_glibc_version() -> None:
    rule = rules.check_glibc_version
    warn = (
        "Check source glibc version compatible:"
        " warning(warning:source glibc version is not compatible with rds pg)"
    )
    ok = "Check source glibc version compatible: success"
    assert line(rule) == ok  # C locales only: nothing to compare
    versioned = source(
        databases=(db("app", libc_collversion="2.36"), db("postgres", libc_collversion="2.36"))
    )
    assert line(rule, versioned, target(libc_collversion="2.36")) == ok
    assert line(rule, versioned, target(libc_collversion="2.28")) == warn
    assert line(rule, versioned, target(libc_collversion=None)) == warn
    mixed = source(databases=(db("app", libc_collversion="0.0"), db("postgres", libc_collversion="2.36")))
    assert line(rule, mixed, target(libc_collversion="2.36")) == warn
    assert line(rule, versioned, target(connect_error="refused")) == (
        "Check source glibc version compatible: error(error:skipped, cannot connect to rds: refused)"
    )


def test_disk_size() -> None:
    rule = rules.check_disk_size
    assert line(rule) == "Check disk size enough: success"
    # 124 MB of data; 80% of 0 GB is nothing.
    assert line(rule, tgt=target(storage_gb=0)) == (
        "Check disk size enough: error(error:disk size of rds is not enough, source 124 MB, rds 0 MB)"
    )
    big = source(databases=(db("app", size_bytes=9 * GB),))
    assert line(rule, big) == (
        "Check disk size enough: error(error:disk size of rds is not enough, source 9216 MB, rds 8192 MB)"
    )
    assert line(rule, big, target(storage_gb=12)) == "Check disk size enough: success"
    # The free space of the file system also bounds it.
    assert line(rule, big, target(storage_gb=100, free_bytes=2 * GB + 1)) == (
        "Check disk size enough: error(error:disk size of rds is not enough, source 9216 MB, rds 2048 MB)"
    )
    # Source sizes round up, the room rounds down.
    assert line(rule, source(databases=(db("a", size_bytes=1),)), target(free_bytes=0)) == (
        "Check disk size enough: error(error:disk size of rds is not enough, source 1 MB, rds 0 MB)"
    )
    assert line(rule, tgt=target(free_bytes=None, free_bytes_error="no such file")) == (
        "Check disk size enough: error(error:skipped, cannot read free space of rds: no such file)"
    )
    unknown = source(databases=(db("a", size_bytes=None),), probe_errors={"size:a": "permission denied"})
    assert line(rule, unknown) == (
        "Check disk size enough: error(error:skipped, cannot read database sizes on source:"
        " permission denied)"
    )


def test_wal_keep_size() -> None:
    rule = rules.check_wal_keep_size
    assert line(rule) == "Check wal keep size large enough: success"
    # The risk, and cloudmig's own protection (from max_wal_size 1024 MB: 4x and 8x).
    assert line(rule, _with_settings(max_slot_wal_keep_size="-1")) == (
        "Check wal keep size large enough: warning(warning:max_slot_wal_keep_size is unlimited,"
        " a stalled migration can fill the source disk; cloudmig reports its slot above 4096 MB of"
        " retained WAL and stops the migration and drops the slot above 8192 MB"
        " (settings slot_wal_warning_mb, slot_wal_limit_mb))"
    )
    # The settings, when set, are what the message names.
    configured = target(slot_wal_warning_mb=500, slot_wal_limit_mb=700)
    assert "above 500 MB of retained WAL" in line(
        rule, _with_settings(max_slot_wal_keep_size="-1"), configured
    )
    assert "above 700 MB (settings" in line(rule, _with_settings(max_slot_wal_keep_size="-1"), configured)
    assert line(rule, _with_settings(max_slot_wal_keep_size="64")) == (
        "Check wal keep size large enough: error(error:max_slot_wal_keep_size 64 MB is too small,"
        " need 1024 MB: the source would remove WAL the copy still needs and invalidate the"
        " migration's slot)"
    )
    assert (
        line(rule, _with_settings(max_slot_wal_keep_size="1024"))
        == "Check wal keep size large enough: success"
    )
    # 10% of the data when that is more than 1 GB (rounded up).
    big = dataclasses.replace(
        _with_settings(max_slot_wal_keep_size="2048"), databases=(db("app", size_bytes=30 * GB + 1),)
    )
    assert line(rule, big).startswith(
        "Check wal keep size large enough: error(error:max_slot_wal_keep_size 2048 MB is too small,"
        " need 3073 MB:"
    )
    # Before 13 the setting does not exist and slots keep WAL without bound.
    old = source(settings={k: v for k, v in source().settings.items() if k != "max_slot_wal_keep_size"})
    old.settings["server_version_num"] = "120015"
    assert rule(old, target()).level is CheckLevel.WARNING


def test_wal_keep_needed_mb() -> None:
    assert rules.wal_keep_needed_mb(0) == 1024
    assert rules.wal_keep_needed_mb(10 * GB) == 1024
    assert rules.wal_keep_needed_mb(10 * GB + 1) == 1025
    assert rules.wal_keep_needed_mb(100 * GB) == 10240


# ---- spec params, users, extensions, tablespaces, slots, storage format ------------------------------------


def test_spec_params() -> None:
    rule = rules.check_spec_params
    assert line(rule) == "Check if spec params too large: success"
    at_limit = _with_settings(
        max_connections="400",
        max_prepared_transactions="200",
        max_worker_processes="16",
        max_wal_senders="16",
        max_locks_per_transaction="128",
    )
    assert line(rule, at_limit) == "Check if spec params too large: success"
    assert line(rule, _with_settings(max_connections="401")) == (
        "Check if spec params too large: error(error:max_connections of source (401)"
        " is larger than rds (400))"
    )
    two = _with_settings(max_worker_processes="17", max_locks_per_transaction="256")
    assert line(rule, two) == (
        "Check if spec params too large: error(error:max_worker_processes of source (17)"
        " is larger than rds (16);"
        " max_locks_per_transaction of source (256) is larger than rds (128))"
    )
    for param in ("max_prepared_transactions", "max_wal_senders"):
        assert f"error(error:{param} of source (9999) is larger than rds" in line(
            rule, _with_settings(**{param: "9999"})
        )


def test_reserved_accounts() -> None:
    rule = rules.check_reserved_accounts
    assert line(rule) == "Check reserved accounts: success"
    assert line(rule, source(roles=("cloudmig_admin", "postgres"))) == (
        "Check reserved accounts: error(error:reserved account cloudmig_admin exists on source)"
    )


def test_extensions() -> None:
    rule = rules.check_extensions
    assert line(rule) == "Check extensions supported: success"
    assert line(rule, tgt=target(available_extensions=frozenset({"plpgsql"}))) == (
        "Check extensions supported: error(error:extension hstore in database app is not supported by rds)"
    )
    # With an allow-list, plpgsql (part of the server) is always fine; hstore must be listed.
    assert line(rule, tgt=target(extension_allow_list=frozenset())) == (
        "Check extensions supported: error(error:extension hstore in database app is not supported by rds)"
    )
    assert line(rule, tgt=target(extension_allow_list=frozenset({"hstore"}))) == (
        "Check extensions supported: success"
    )
    # A listed but unavailable extension is still unsupported.
    assert "error(error:extension hstore in database app" in line(
        rule,
        tgt=target(extension_allow_list=frozenset({"hstore"}), available_extensions=frozenset({"plpgsql"})),
    )
    unreachable = source(databases=(db("app", extensions=None, connect_error="denied"), db("postgres")))
    assert line(rule, unreachable) == (
        "Check extensions supported: warning(warning:cannot connect to database app by migrator,"
        " its extensions are not checked)"
    )
    both = source(databases=(db("app", extensions=None), db("other", extensions=("postgis",))))
    assert line(rule, both) == (
        "Check extensions supported: error(error:extension postgis in database other is not supported by rds;"
        " cannot connect to database app by migrator, its extensions are not checked)"
    )
    assert line(rule, tgt=target(available_extensions=None, probe_errors={"extensions": "x"})) == (
        "Check extensions supported: error(error:skipped, cannot read available extensions on rds: x)"
    )


def test_tablespaces() -> None:
    rule = rules.check_tablespaces
    assert line(rule) == "Check tablespaces: success"
    assert line(rule, source(tablespaces=("fast", "pg_default", "pg_global", "slow"))) == (
        "Check tablespaces: error(error:tablespace fast is not supported; tablespace slow is not supported)"
    )


def test_logical_slots() -> None:
    rule = rules.check_logical_slots
    assert line(rule) == "Check logical replication slot: success"
    assert line(rule, source(logical_slots=("a",), slot_names=("a", "p"))) == (
        "Check logical replication slot: warning(warning:logical replication slot a will not be migrated)"
    )


def test_storage_format() -> None:
    rule = rules.check_storage_format
    assert line(rule) == "Check block and segment size: success"
    assert line(rule, _with_settings(wal_segment_size="33554432")) == (
        "Check block and segment size: error(error:wal_segment_size of source (33554432) differs from rds"
        " (16777216))"
    )
    assert line(rule, _with_settings(block_size="16384")) == (
        "Check block and segment size: error(error:block_size of source (16384) differs from rds (8192))"
    )
    assert line(rule, tgt=target(settings={}, connect_error="refused")) == (
        "Check block and segment size: error(error:skipped, cannot connect to rds: refused)"
    )


# ---- cloudmig's later sections ----------------------------------------------------------------------------


def test_source_role() -> None:
    rule = cloudmig_rules.check_source_role
    assert line(rule) == "Check source is a primary: success"
    assert line(rule, source(in_recovery=True)) == (
        "Check source is a primary: error(error:source is in recovery (a standby); migrate from its primary)"
    )
    assert line(rule, source(in_recovery=None, probe_errors={"recovery": "denied"})) == (
        "Check source is a primary: error(error:skipped, cannot read recovery state on source: denied)"
    )


def test_unlogged_tables() -> None:
    rule = cloudmig_rules.check_unlogged_tables
    assert line(rule) == "Check unlogged tables: success"
    dbs = (
        db("app", unlogged_tables=("public.cache", "s.q")),
        db("postgres"),
        db("other", unlogged_tables=None),
    )
    assert line(rule, source(databases=dbs)) == (
        "Check unlogged tables: warning(warning:unlogged table public.cache in database app will arrive empty;"
        " unlogged table s.q in database app will arrive empty;"
        " cannot connect to database other by migrator, its tables are not checked)"
    )


def test_settings_carried() -> None:
    rule = cloudmig_rules.check_settings_carried
    # TimeZone and work_mem are carried as they are: nothing changes.
    assert line(rule) == "Check settings carried: success"
    settings = (
        SourceSetting("TimeZone", "Etc/UTC"),
        SourceSetting("max_connections", "100"),
        SourceSetting("port", "5432"),
        SourceSetting("work_mem", "8MB", file_value="16MB"),
    )
    assert line(rule, source(config_settings=settings)) == (
        "Check settings carried: warning(warning:setting work_mem will change from 8MB to 16MB"
        " (set in the source's configuration file but not applied on the source yet);"
        " setting max_connections will change from 100 to 400;"
        " settings carried as on the source: TimeZone, work_mem)"
    )
    # An overridden setting with the same value changes nothing.
    same = (SourceSetting("max_connections", "400"), SourceSetting("TimeZone", "UTC"))
    assert line(rule, source(config_settings=same)) == "Check settings carried: success"
    assert line(rule, source(config_settings=None, probe_errors={"config_settings": "denied"})) == (
        "Check settings carried: error(error:skipped, cannot read configuration settings on source: denied)"
    )
    assert line(rule, tgt=target(shown_settings=None, connect_error="refused")) == (
        "Check settings carried: error(error:skipped, cannot connect to rds: refused)"
    )


def test_switchover_fence() -> None:
    rule = cloudmig_rules.check_switchover_fence
    assert line(rule) == "Check source can be fenced: success"
    bare = FencePrivileges(16, False, True, False, True, True)
    assert line(rule, source(fence=bare)) == (
        "Check source can be fenced: warning(warning:cloudmig cannot fence the source at switchover; grant:"
        " GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO migrator;"
        " GRANT EXECUTE ON FUNCTION pg_reload_conf() TO migrator;"
        " GRANT pg_signal_backend TO migrator; (or make the account a superuser); without a fence,"
        " stop the application's writes before the switchover)"
    )
    # Before 16, CREATEROLE and pg_signal_backend fence per role.
    assert (
        line(rule, source(fence=dataclasses.replace(bare, major=15))) == "Check source can be fenced: success"
    )
    assert line(rule, source(fence=dataclasses.replace(bare, superuser=True))) == (
        "Check source can be fenced: success"
    )


def test_source_encryption() -> None:
    rule = cloudmig_rules.check_source_encryption
    assert line(rule) == "Check connection encrypted: success"
    assert line(rule, source(ssl_in_use=False)) == (
        "Check connection encrypted: warning(warning:connection to the source is not encrypted)"
    )
    assert line(rule, source(category="internet")) == (
        "Check connection encrypted: warning(warning:source certificate is not verified)"
    )
    assert line(rule, source(category="internet", tls_verifies=True)) == "Check connection encrypted: success"


def test_server_binaries() -> None:
    rule = cloudmig_rules.check_server_binaries
    assert line(rule) == "Check server binaries: success"
    missing = target(binaries_error="PostgreSQL 15 server binaries not found (...)")
    assert line(rule, tgt=missing) == (
        "Check server binaries: error(error:PostgreSQL 15 binaries are not installed on this host)"
    )
    assert line(rule, tgt=target(binaries_major=None)) == (
        "Check server binaries: error(error:skipped, PostgreSQL 15 binaries were not looked for)"
    )
    no_copy_tool = target(basebackup_error="no pg_basebackup for PostgreSQL 15 or newer")
    assert line(rule, tgt=no_copy_tool) == (
        "Check server binaries: error(error:no pg_basebackup of PostgreSQL 15 or newer is installed on this host)"
    )


# ---- never a password; any facts give a complete report ---------------------------------------------------


def test_describe_error_masks_the_password_and_stays_one_line() -> None:
    exc = RuntimeError("connection to server failed:\n  password s3cr3t! rejected\n" + "x" * 1000)
    text = describe_error(exc, "s3cr3t!")
    assert "s3cr3t!" not in text
    assert "\n" not in text
    assert len(text) <= 300


def test_probe_tcp_classifies_refused_as_a_port_failure() -> None:
    with socket.socket() as sock:  # bind, never listen: a connect to it is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        address, ip_error, port_error = probe_tcp("127.0.0.1", port, 2)
    assert (address, ip_error) == ("127.0.0.1", None)
    assert port_error is not None


def test_probe_tcp_classifies_a_name_that_cannot_resolve_as_an_ip_failure() -> None:
    # A label longer than 63 characters fails in the encoder: no lookup leaves the machine.
    address, ip_error, port_error = probe_tcp("x" * 64 + ".invalid", 5432, 2)
    assert address is None
    assert ip_error is not None and ip_error.startswith("cannot resolve")
    assert port_error is None


_opt_text = st.none() | st.text(alphabet="abc ", max_size=5)
_opt_bool = st.none() | st.booleans()


@st.composite
def any_source(draw: Callable[..., object]) -> SourceFacts:
    return source(
        address=draw(st.none() | st.just("192.0.2.1")),
        ip_error=draw(_opt_text),
        port_error=draw(_opt_text),
        login_error=draw(_opt_text),
        replication_tried=draw(st.booleans()),
        replication_conn_error=draw(_opt_text),
        has_replication=draw(_opt_bool),
        has_createrole=draw(_opt_bool),
        is_monitor=draw(_opt_bool),
        settings=draw(
            st.dictionaries(
                st.sampled_from(sorted(source().settings)), st.sampled_from(["-1", "0", "5", "replica", "x"])
            )
        ),
        wal_senders_in_use=draw(st.none() | st.integers(0, 20)),
        slot_names=draw(st.none() | st.tuples(st.just("s"))),
        logical_slots=draw(st.none() | st.tuples(st.just("s"))),
        databases=draw(
            st.none()
            | st.tuples(
                st.builds(
                    DatabaseFacts,
                    name=st.sampled_from(["a", "b"]),
                    allow_connections=st.booleans(),
                    libc_collversion=st.none() | st.just("2.36"),
                    size_bytes=st.none() | st.integers(0, 10 * GB),
                    extensions=st.none() | st.tuples(st.sampled_from(["hstore", "postgis"])),
                    unlogged_tables=st.none() | st.tuples(st.just("public.u")),
                )
            )
        ),
        roles=draw(st.none() | st.tuples(st.sampled_from(["postgres", "cloudmig_admin"]))),
        tablespaces=draw(st.none() | st.tuples(st.sampled_from(["pg_default", "t"]))),
        in_recovery=draw(_opt_bool),
        ssl_in_use=draw(_opt_bool),
        category=draw(st.sampled_from(["internet", "ecsonvpc"])),
        fence=draw(st.none() | st.builds(FencePrivileges, major=st.sampled_from([12, 15, 16]))),
        config_settings=draw(
            st.none()
            | st.tuples(
                st.builds(
                    SourceSetting,
                    name=st.sampled_from(["TimeZone", "port", "max_connections"]),
                    value=st.sampled_from(["", "100", "UTC"]),
                    file_value=st.none() | st.just("200"),
                )
            )
        ),
    )


@settings(max_examples=200, deadline=None)
@given(src=any_source(), connect_error=_opt_text)
def test_any_facts_give_every_sub_check_once_and_in_order(
    src: SourceFacts, connect_error: str | None
) -> None:
    results = catalogue.evaluate(src, target(connect_error=connect_error))
    assert [(r.section, r.name) for r in results] == [(c.section, c.name) for c, _ in catalogue.CATALOGUE]
    for r in results:
        assert not r.message.startswith("skipped, internal error"), r
        assert (r.level is CheckLevel.SUCCESS) == (r.message == "")
    report = render_report(results)
    assert report.endswith("*Migrate check success*\n" if passed(results) else "*Migrate check failed*\n")
