"""Pure rules of the domain package."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudmig.domain import classes
from cloudmig.domain.checks import CheckResult, render_report
from cloudmig.domain.detail import Event, render_detail
from cloudmig.domain.enums import CheckLevel, MigrateStage
from cloudmig.domain.ids import INSTANCE_ID_RE, new_instance_id
from cloudmig.domain.lsn import format_lsn, parse_lsn
from cloudmig.domain.time import gmt
from cloudmig.domain.transitions import IllegalTransition, Transition, target_stage
from cloudmig.domain.validation import normalize_source_category, valid_account, valid_host


def test_instance_ids() -> None:
    ids = {new_instance_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(INSTANCE_ID_RE.match(i) for i in ids)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_round_trip(value: int) -> None:
    assert parse_lsn(format_lsn(value)) == value


def test_lsn_text() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(0x3000148) == "0/3000148"
    with pytest.raises(ValueError):
        parse_lsn("3000148")


def test_stage_order() -> None:
    assert target_stage(MigrateStage.PRECHECK, Transition.PRECHECK_PASSED) is MigrateStage.BASEBACKUP
    with pytest.raises(IllegalTransition):  # precheck cannot jump to startup
        target_stage(MigrateStage.PRECHECK, Transition.COPIED)
    # Only a named transition goes back: a switchover given up, a copy started again.
    with pytest.raises(IllegalTransition):
        target_stage(MigrateStage.SUCCESS, Transition.RECOPY)
    assert target_stage(MigrateStage.SWITCH, Transition.SWITCH_ABORTED) is MigrateStage.INCREMENT
    assert target_stage(MigrateStage.INCREMENT, Transition.RECOPY) is MigrateStage.BASEBACKUP


def test_report_lines_and_summary() -> None:
    ok = [
        CheckResult("Check rds empty", "Check rds databases", CheckLevel.SUCCESS),
        CheckResult(
            "Check source glibc version",
            "Check source glibc version compatible",
            CheckLevel.WARNING,
            "source glibc version is not compatible with rds pg",
        ),
    ]
    assert render_report(ok) == (
        "[Check rds empty]\nCheck rds databases: success\n[Check source glibc version]\n"
        "Check source glibc version compatible: warning(warning:source glibc version is not compatible with rds pg)\n"
        "*Migrate check success*\n"
    )
    bad = [*ok, CheckResult("Check source version", "Check major version consistent", CheckLevel.ERROR, "x")]
    assert render_report(bad).endswith(
        "Check major version consistent: error(error:x)\n*Migrate check failed*\n"
    )
    assert CheckResult.from_dict(bad[-1].as_dict()) == bad[-1]


def test_detail_groups_events_by_section() -> None:
    t = datetime(2022, 2, 25, 9, 0, 29, tzinfo=UTC)
    text = render_detail(
        "R\n",
        [
            Event(t, "Start RDS instance", "a"),
            Event(t, "Synchronize data", "b "),
            Event(t, "Synchronize data", "c"),
        ],
    )
    lines = text.splitlines()
    assert lines[0] == "R" and lines[1] == "[Start RDS instance]" and lines[3] == "[Synchronize data]"
    assert lines[2].endswith(" --- a") and lines[4].endswith(" --- b ") and lines[5].endswith(" --- c")
    assert text.count("[Synchronize data]") == 1


def test_gmt() -> None:
    assert gmt(datetime(2022, 3, 1, 6, 40, 51, tzinfo=UTC)) == "2022-03-01T06:40:51Z"
    assert gmt(None) == ""


@pytest.mark.parametrize(
    "host,ok",
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("db.example.internal", True),
        ("300.1.1.1", False),
        ("", False),
        ("a b", False),
        ("host;rm", False),
        ("-bad.example", False),
    ],
)
def test_valid_host(host: str, ok: bool) -> None:
    assert valid_host(host) is ok


@pytest.mark.parametrize(
    "name,ok",
    [
        ("migratetest", True),
        ("app_user$1", True),
        ("x'; drop", False),
        ('a"b', False),
        ("a;b", False),
        ("a b", False),
        ("a\\b", False),
        ("", False),
    ],
)
def test_valid_account(name: str, ok: bool) -> None:
    assert valid_account(name) is ok


def test_source_categories_case_insensitive() -> None:
    assert normalize_source_category("ECSONVPC") == "ecsOnVpc"
    assert normalize_source_category("idcOnVpc") == "idcOnVpc"
    assert normalize_source_category("Internet") == "internet"
    assert normalize_source_category("moon") is None


def test_class_catalogue_has_documented_class() -> None:
    c = classes.lookup("pg.n2.medium.2c")
    assert c is not None
    assert set(c.spec_params()) == {
        "max_connections",
        "max_worker_processes",
        "max_wal_senders",
        "max_prepared_transactions",
        "max_locks_per_transaction",
    }
    # A default PostgreSQL source (100 connections, 8 workers, 10 senders) fits every class.
    for cls in classes.CATALOGUE.values():
        assert cls.max_connections >= 100 and cls.max_worker_processes >= 8 and cls.max_wal_senders >= 10
