"""Pure pieces the assessment shares with the engine: the fence decision, the slot WAL watermarks,
the settings-carry plan and its file, the collapsed report, and the server's reason of a failed
connection."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from cloudmig.checks.connectivity import server_reason
from cloudmig.domain.checks import CheckResult, render_report, report_lines
from cloudmig.domain.enums import CheckLevel
from cloudmig.domain.fence import FenceMethod, FencePrivileges, choose_fence, fence_grants, quote_role
from cloudmig.domain.setting_values import differs_from_running
from cloudmig.domain.settings_carry import (
    CarryAction,
    SettingsCarryPlan,
    SourceSetting,
    plan_settings_carry,
)
from cloudmig.domain.watermarks import slot_wal_thresholds
from cloudmig.pg.carried_conf import SOURCE_INCLUDE_LINE, include_source_conf, render_source_conf
from cloudmig.pg.conf import INCLUDE_LINE
from cloudmig.pg.source import Source, SourceTls

MB = 1024 * 1024

# ---- the fence ---------------------------------------------------------------------------------------


def privileges(major: int, **granted: bool) -> FencePrivileges:
    values = dict.fromkeys(
        ("superuser", "createrole", "alter_system_dtro", "execute_reload", "signal_backend"), False
    )
    values.update(granted)
    return FencePrivileges(major=major, **values)


@pytest.mark.parametrize(
    ("p", "method"),
    [
        (privileges(16, superuser=True), FenceMethod.ALTER_SYSTEM),
        (privileges(12, superuser=True), FenceMethod.ALTER_SYSTEM),
        (
            privileges(16, alter_system_dtro=True, execute_reload=True, signal_backend=True),
            FenceMethod.ALTER_SYSTEM,
        ),
        (
            privileges(15, alter_system_dtro=True, execute_reload=True, signal_backend=True),
            FenceMethod.ALTER_SYSTEM,
        ),
        # Each of the three grants is needed.
        (privileges(16, alter_system_dtro=True, execute_reload=True), FenceMethod.NONE),
        (privileges(16, alter_system_dtro=True, signal_backend=True), FenceMethod.NONE),
        (privileges(16, execute_reload=True, signal_backend=True, createrole=True), FenceMethod.NONE),
        # Per role before 16: CREATEROLE and pg_signal_backend.
        (privileges(15, createrole=True, signal_backend=True), FenceMethod.ROLE_SETTINGS),
        (privileges(12, createrole=True, signal_backend=True), FenceMethod.ROLE_SETTINGS),
        (privileges(15, createrole=True), FenceMethod.NONE),
        # ALTER SYSTEM ON PARAMETER does not exist before 15, whatever a probe said.
        (privileges(14, alter_system_dtro=True, execute_reload=True, signal_backend=True), FenceMethod.NONE),
    ],
)
def test_choose_fence(p: FencePrivileges, method: FenceMethod) -> None:
    assert choose_fence(p) is method


def test_fence_grants() -> None:
    assert fence_grants(15, "migratetest") == [
        "GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO migratetest;",
        "GRANT EXECUTE ON FUNCTION pg_reload_conf() TO migratetest;",
        "GRANT pg_signal_backend TO migratetest;",
    ]
    assert fence_grants(14, "Mig.rator") == [
        'ALTER ROLE "Mig.rator" CREATEROLE;',
        'GRANT pg_signal_backend TO "Mig.rator";',
    ]
    assert quote_role('a"b') == '"a""b"'


# ---- slot WAL watermarks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Levels:
    slot_wal_warning_mb: int = 0
    slot_wal_limit_mb: int = 0


def test_slot_wal_thresholds_derived_from_max_wal_size() -> None:
    assert slot_wal_thresholds(Levels(), 1024, -1) == (4096 * MB, 8192 * MB)
    # Floors of 1 GB and 2 GB for a small max_wal_size.
    assert slot_wal_thresholds(Levels(), 64, None) == (1024 * MB, 2048 * MB)


def test_slot_wal_thresholds_from_settings() -> None:
    assert slot_wal_thresholds(Levels(300, 900), 1024, -1) == (300 * MB, 900 * MB)
    assert slot_wal_thresholds(Levels(slot_wal_limit_mb=5000), 64, None) == (1024 * MB, 5000 * MB)


def test_slot_wal_limit_stays_under_max_slot_wal_keep_size() -> None:
    # 90% of a smaller max_slot_wal_keep_size; the warning level never exceeds the limit.
    assert slot_wal_thresholds(Levels(), 1024, 2000) == (2000 * MB * 9 // 10 // 2, 2000 * MB * 9 // 10)
    assert slot_wal_thresholds(Levels(), 64, 10000) == (1024 * MB, 2048 * MB)
    assert slot_wal_thresholds(Levels(), 64, 2048)[1] == 2048 * MB * 9 // 10


# ---- the settings-carry plan ---------------------------------------------------------------------------

MANAGED = frozenset({"max_connections", "shared_buffers", "port", "listen_addresses", "ssl", "archive_mode"})
TARGET_NOW = {
    "timezone": "GMT",
    "max_connections": "400",
    "shared_buffers": "128MB",
    "ssl": "off",
    "port": "15432",
}


def test_plan_sorts_settings_into_carried_overridden_and_dropped() -> None:
    plan = plan_settings_carry(
        [
            SourceSetting("TimeZone", "Etc/UTC"),
            SourceSetting("default_text_search_config", "pg_catalog.english"),
            SourceSetting("work_mem", "8MB", file_value="16MB"),
            SourceSetting("pg_stat_statements.max", "5000"),
            SourceSetting("max_connections", "100"),
            SourceSetting("shared_buffers", "128MB"),
            SourceSetting("ssl", "on"),
            SourceSetting("port", "5432"),
            SourceSetting("ssl_cert_file", "/etc/ssl/certs/ssl-cert-snakeoil.pem"),
            SourceSetting("primary_conninfo", "host=x password=secret"),
            SourceSetting("cluster_name", "15/main"),
            SourceSetting("data_directory", "/var/lib/postgresql/15/main"),
        ],
        TARGET_NOW,
        MANAGED,
    )
    assert plan.carried() == {
        "TimeZone": "Etc/UTC",
        "default_text_search_config": "pg_catalog.english",
        "work_mem": "16MB",
        "pg_stat_statements.max": "5000",
    }
    assert [e.name for e in plan.with_action(CarryAction.OVERRIDE)] == [
        "max_connections",
        "shared_buffers",
        "ssl",
    ]
    dropped = {e.name: e for e in plan.with_action(CarryAction.DROP)}
    assert set(dropped) == {"port", "ssl_cert_file", "primary_conninfo", "cluster_name", "data_directory"}
    assert dropped["port"].why.startswith("where the source listens")
    # A host's own values are not kept (a conninfo may hold a password).
    assert "secret" not in json.dumps(plan.as_dict())
    assert [e.message() for e in plan.changes()] == [
        "setting work_mem will change from 8MB to 16MB"
        " (set in the source's configuration file but not applied on the source yet)",
        "setting max_connections will change from 100 to 400",
        "setting ssl will change from on to off",
    ]


def test_plan_round_trips_through_json() -> None:
    plan = plan_settings_carry(
        [SourceSetting("TimeZone", "Etc/UTC"), SourceSetting("max_connections", "100")], TARGET_NOW, MANAGED
    )
    again = SettingsCarryPlan.from_dict(json.loads(json.dumps(plan.as_dict())))
    assert again == plan


@pytest.mark.parametrize(
    ("in_file", "shown", "raw", "unit", "vartype", "differs"),
    [
        ("4MB", "4MB", "4096", "kB", "integer", False),
        ("4096kB", "4MB", "4096", "kB", "integer", False),
        ("4096", "4MB", "4096", "kB", "integer", False),
        ("24MB", "4MB", "4096", "kB", "integer", True),
        ("128MB", "128MB", "16384", "8kB", "integer", False),
        ("1GB", "128MB", "16384", "8kB", "integer", True),
        ("1min", "1min", "60", "s", "integer", False),
        ("60s", "1min", "60", "s", "integer", False),
        ("42s", "0", "0", "ms", "integer", True),
        ("0.5", "0.5", "0.5", None, "real", False),
        ("true", "on", "on", None, "bool", False),
        ("off", "on", "on", None, "bool", True),
        ("iso, mdy", "ISO, MDY", "ISO, MDY", None, "string", False),
        ("SQL, DMY", "ISO, MDY", "ISO, MDY", None, "string", True),
        ("Replica", "replica", "replica", None, "enum", False),
        ("5000", None, None, None, None, True),  # an extension setting the server does not know yet
    ],
)
def test_differs_from_running(
    in_file: str, shown: str | None, raw: str | None, unit: str | None, vartype: str | None, differs: bool
) -> None:
    assert differs_from_running(in_file, shown, raw, unit, vartype) is differs


def test_source_conf_file() -> None:
    text = render_source_conf({"TimeZone": "Etc/UTC", "search_path": '"$user", public', "x.y": "it's"})
    assert text.splitlines()[2:] == [
        "search_path = '\"$user\", public'",
        "TimeZone = 'Etc/UTC'",
        "x.y = 'it''s'",
    ]
    with pytest.raises(ValueError):
        render_source_conf({"bad name": "1"})


def test_source_conf_is_included_before_cloudmig_conf() -> None:
    conf = f"shared_buffers = 1GB\n{INCLUDE_LINE}\n"
    once = include_source_conf(conf)
    assert once.splitlines() == ["shared_buffers = 1GB", SOURCE_INCLUDE_LINE, INCLUDE_LINE]
    assert include_source_conf(once) == once
    with pytest.raises(ValueError):
        include_source_conf("shared_buffers = 1GB\n")


# ---- the collapsed report ------------------------------------------------------------------------------


def test_report_collapses_dependent_sub_checks_after_the_failed_one() -> None:
    failed = CheckResult(
        "Conn", "Check login", CheckLevel.ERROR, "cannot log in: password authentication failed"
    )
    deps = [
        CheckResult(section, name, CheckLevel.ERROR, "skipped, no login", depends_on="Check login")
        for section, name in (("Conn", "Check a"), ("Other", "Check b"), ("Other", "Check c"))
    ]
    first = CheckResult("Target", "Check target", CheckLevel.SUCCESS)
    results = [first, failed, *deps]
    assert [r.name for r in report_lines(results)] == ["Check target", "Check login", "Dependent checks"]
    assert render_report(results) == (
        "[Target]\nCheck target: success\n[Conn]\n"
        "Check login: error(error:cannot log in: password authentication failed)\n"
        "Dependent checks: error(error:skipped, no login (3 sub-checks not run, they need Check login))\n"
        "*Migrate check failed*\n"
    )
    # Without the failed sub-check in the list, every line stays.
    assert report_lines(deps) == deps
    assert CheckResult.from_dict(deps[0].as_dict()) == deps[0]


# ---- the server's reason -------------------------------------------------------------------------------

SOURCE = Source.with_password("127.0.0.1", 5499, "migratetest", "S3cret_pw")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            'connection failed: connection to server at "127.0.0.1", port 5499 failed: FATAL:  password'
            ' authentication failed for user "migratetest"',
            'password authentication failed for user "migratetest"',
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 5499 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?",
            "connection refused on 127.0.0.1:5499",
        ),
        ("connection failed: timeout expired", "connection timed out on 127.0.0.1:5499"),
        (
            'connection to server at "127.0.0.1", port 5499 failed: FATAL:  no pg_hba.conf entry for host'
            ' "127.0.0.1", user "m", database "postgres", SSL encryption\n'
            'connection to server at "127.0.0.1", port 5499 failed: FATAL:  no pg_hba.conf entry for host'
            ' "127.0.0.1", user "m", database "postgres", no encryption',
            'no pg_hba.conf entry for host "127.0.0.1", user "m", database "postgres", SSL encryption;'
            ' no pg_hba.conf entry for host "127.0.0.1", user "m", database "postgres", no encryption',
        ),
        ("something odd with S3cret_pw inside", "something odd with ******** inside"),
    ],
)
def test_server_reason(text: str, reason: str) -> None:
    assert server_reason(RuntimeError(text), SOURCE) == reason


def test_server_reason_hints_at_ssl_when_ssl_is_disabled() -> None:
    source = Source.with_password("h", 1, "m", "pw", tls=SourceTls("disable"))
    text = 'failed: FATAL:  no pg_hba.conf entry for host "h", user "m", database "postgres", no encryption'
    assert server_reason(RuntimeError(text), source).endswith(
        "(the source may accept SSL connections only; sslmode is disable)"
    )
