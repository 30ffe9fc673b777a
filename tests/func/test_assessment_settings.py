"""Check settings carried and the carry itself, against real PostgreSQL: the assessment lists what
the target will not have as on the source, and the plan written into an instance's
cloudmig-source.conf (with or without a postgresql.conf in its data directory) makes SHOW of every
carried setting equal to the source's while cloudmig's managed settings still win."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.assessment import (
    ACCOUNT,
    HEALTHY_SETTINGS,
    MEDIUM,
    assert_warns,
    assess,
    line_of,
    make_source,
    make_target,
    spec_of,
)
from tests.support.pgcluster import SourceCluster

from cloudmig.checks import assess as assess_with_plan
from cloudmig.domain.settings_carry import CarryAction, SettingsCarryPlan
from cloudmig.pg.carried_conf import SOURCE_CONF, SOURCE_INCLUDE_LINE, write_source_conf
from cloudmig.pg.conf import INCLUDE_LINE, POSTGRESQL_CONF, conf_quote
from cloudmig.pg.files import atomic_write

pytestmark = pytest.mark.func

# Behaviour settings in the source's postgresql.conf, all different from the defaults.
BEHAVIOUR: dict[str, object] = {
    "timezone": "Asia/Tokyo",
    "default_text_search_config": "pg_catalog.german",
    "datestyle": "SQL, DMY",
    "work_mem": "12MB",
}
SHOWN = {"TimeZone": "Asia/Tokyo", "default_text_search_config": "pg_catalog.german", "DateStyle": "SQL, DMY"}


@pytest.fixture(scope="module")
def source(pg_base_dir: Path) -> Iterator[SourceCluster]:
    """Behaviour settings in its postgresql.conf, one by ALTER SYSTEM, one class parameter that
    differs (max_connections 100) and ssl on→off would not apply: no TLS here."""
    settings = {**HEALTHY_SETTINGS, **BEHAVIOUR, "max_connections": 100}
    with make_source(pg_base_dir, settings) as cluster:
        cluster.sql("ALTER SYSTEM SET statement_timeout = '42s'")
        cluster.reload()
        yield cluster


def test_the_check_lists_what_changes_and_what_is_carried(source: SourceCluster, pg_base_dir: Path) -> None:
    with make_target(pg_base_dir, "pgmsettings15") as target:
        _, report = assess(spec_of(source), target.spec())
    line = line_of(report, "Check settings carried")
    assert line.startswith(
        "Check settings carried: warning(warning:setting max_connections will change from 100 to 400;"
        " settings carried as on the source: "
    ), line
    carried = line.removesuffix(")").split("settings carried as on the source: ", 1)[1].split(", ")
    for name in ("DateStyle", "default_text_search_config", "statement_timeout", "TimeZone", "work_mem"):
        assert name in carried, line
    # Host-specific settings are neither carried nor reported as changes.
    for name in ("port", "listen_addresses", "unix_socket_directories"):
        assert name not in carried and f"setting {name} " not in line
    assert report.endswith("*Migrate check success*\n")


def test_a_change_not_yet_applied_on_the_source_is_shown(pg_base_dir: Path) -> None:
    with (
        make_source(pg_base_dir, HEALTHY_SETTINGS) as cluster,
        make_target(pg_base_dir, "pgmpending15") as target,
    ):
        # What the account needs to see pending changes (pg_monitor alone may not read pg_file_settings).
        cluster.sql(f"GRANT SELECT ON pg_file_settings TO {ACCOUNT}")
        cluster.sql(f"GRANT EXECUTE ON FUNCTION pg_show_all_file_settings() TO {ACCOUNT}")
        conf = cluster.pgdata / POSTGRESQL_CONF
        atomic_write(conf, conf.read_text() + "work_mem = '24MB'\n", user=cluster.user)  # no reload
        _, report = assess(spec_of(cluster), target.spec())
    assert_warns(
        report,
        "Check settings carried: warning(warning:setting work_mem will change from 4MB to 24MB (set in the"
        " source's configuration file but not applied on the source yet); settings carried as on the"
        f" source: {carried_list(report)})",
    )


def carried_list(report: str) -> str:
    return line_of(report, "Check settings carried").removesuffix(")").split("as on the source: ", 1)[1]


@pytest.mark.parametrize("with_postgresql_conf", [True, False], ids=["conf-in-pgdata", "debian-layout"])
def test_carried_settings_are_written_and_shown_on_the_target(
    source: SourceCluster, pg_base_dir: Path, with_postgresql_conf: bool
) -> None:
    with make_target(pg_base_dir, f"pgmcarry{int(with_postgresql_conf)}") as target:
        plan_dict = assess_with_plan(spec_of(source), target.spec()).settings_carry
        assert plan_dict is not None
        plan = SettingsCarryPlan.from_dict(plan_dict)
        provider, iid = target.provider, target.instance_id
        provider.stop(iid, target.major)
        pgdata = provider.pgdata(iid)
        if not with_postgresql_conf:  # like a copy of a Debian cluster: its postgresql.conf is in /etc
            (pgdata / POSTGRESQL_CONF).unlink()
        provider.apply_conf(iid, target.port, MEDIUM)
        # A managed setting in the carried file loses to cloudmig.conf, which is included after it.
        write_source_conf(pgdata, {**plan.carried(), "max_connections": "50"}, user=provider.user)
        write_source_conf(
            pgdata, {**plan.carried(), "max_connections": "50"}, user=provider.user
        )  # idempotent
        lines = (pgdata / POSTGRESQL_CONF).read_text().splitlines()
        assert lines.count(SOURCE_INCLUDE_LINE) == 1
        assert lines.index(SOURCE_INCLUDE_LINE) == lines.index(INCLUDE_LINE) - 1
        assert f"TimeZone = {conf_quote('Asia/Tokyo')}" in (pgdata / SOURCE_CONF).read_text()
        provider.start(iid, target.major)
        carried = [e.name for e in plan.with_action(CarryAction.CARRY)]
        assert {
            "TimeZone",
            "DateStyle",
            "default_text_search_config",
            "work_mem",
            "statement_timeout",
        } <= set(carried)
        for name in carried:
            assert target.sql(f'SHOW "{name}"') == source.sql(f'SHOW "{name}"'), name
        assert target.sql("SHOW max_connections") == [("400",)]
        assert target.sql("SHOW port") == [(str(target.port),)]
        # A fresh instance (initdb) had none of them.
        assert {name: source.sql(f'SHOW "{name}"')[0][0] for name in SHOWN} == SHOWN
