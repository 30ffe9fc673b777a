"""A source made the Debian way (issue 12, part 1): `pg_createcluster` keeps postgresql.conf in
/etc/postgresql/<major>/<name>/, so a copy of the data directory has no configuration. After the
migration and the switchover (through the tea SDK), SHOW of each setting changed in /etc and of one
changed by ALTER SYSTEM is equal on the new primary, and the assessment in Detail lists them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alibabacloud_rds20140815 import models as rds
from psycopg import sql as pgsql

from cloudmig.pg.binaries import distribution_major
from cloudmig.pg.sql import connect_socket
from tests.support.flows import (
    MIGRATION_PASSWORD,
    connect_target_tcp,
    create_instance,
    create_migration,
    migration_item,
    raw_items,
    wait_for,
    wait_running,
    wait_streaming,
)
from tests.support.pgcluster import free_port

pytestmark = pytest.mark.e2e

# The distribution's own major (15 on Debian 12, 17 on Debian 13): pg_createcluster makes clusters of
# the majors Debian packages, in /usr/lib/postgresql/<major>.
MAJOR = distribution_major() or 15
SOCKET_DIR = Path("/var/run/postgresql")
# Set in /etc/postgresql/<major>/<name>/postgresql.conf by pg_createcluster -o; all differ from initdb's.
IN_ETC = {
    "timezone": "Asia/Tokyo",
    "default_text_search_config": "pg_catalog.german",
    "datestyle": "SQL, DMY",
    "work_mem": "12MB",
}
BY_ALTER_SYSTEM = ("lock_timeout", "7s")
SHOWN = ("TimeZone", "default_text_search_config", "DateStyle", "work_mem", "lock_timeout")


@dataclass
class DebianCluster:
    major: int
    name: str
    port: int
    host: str = "127.0.0.1"

    @property
    def conf_dir(self) -> Path:
        return Path(f"/etc/postgresql/{self.major}/{self.name}")

    @property
    def data_dir(self) -> Path:
        return Path(f"/var/lib/postgresql/{self.major}/{self.name}")

    def connect(self) -> psycopg.Connection[Any]:
        # pg_createcluster was told --auth-local=trust: root reaches the superuser over the socket.
        return connect_socket(SOCKET_DIR, self.port, "postgres")

    def show(self, name: str) -> str:
        with self.connect() as conn:
            row = conn.execute(pgsql.SQL("SHOW {}").format(pgsql.Identifier(name.lower()))).fetchone()
        assert row is not None
        return str(row[0])


def _cmd(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture
def debian_source() -> Iterator[DebianCluster]:
    if shutil.which("pg_createcluster") is None:
        pytest.skip("pg_createcluster is missing (postgresql-common is not installed)")
    if os.geteuid() != 0:
        pytest.skip("pg_createcluster and pg_ctlcluster need root")
    if not Path(f"/usr/lib/postgresql/{MAJOR}/bin/postgres").is_file():
        pytest.skip(f"Debian's PostgreSQL {MAJOR} is not installed (/usr/lib/postgresql/{MAJOR})")
    cluster = DebianCluster(MAJOR, f"cmtest{os.getpid()}", free_port())
    options = [arg for name, value in IN_ETC.items() for arg in ("-o", f"{name}={value}")]
    try:
        _cmd(
            "pg_createcluster",
            "--start-conf=manual",
            "-p",
            str(cluster.port),
            *options,
            str(MAJOR),
            cluster.name,
            "--",
            "--auth-local=trust",
        )
        assert (cluster.conf_dir / "postgresql.conf").is_file()
        assert not (cluster.data_dir / "postgresql.conf").exists()  # the layout this test is about
        _cmd("pg_ctlcluster", str(MAJOR), cluster.name, "start")
        with cluster.connect() as conn:
            conn.execute(
                pgsql.SQL("CREATE ROLE migratetest LOGIN REPLICATION CREATEROLE PASSWORD {}").format(
                    pgsql.Literal(MIGRATION_PASSWORD)
                )
            )
            conn.execute("GRANT pg_monitor TO migratetest")
            conn.execute(
                pgsql.SQL("ALTER SYSTEM SET {} = {}").format(
                    pgsql.Identifier(BY_ALTER_SYSTEM[0]), pgsql.Literal(BY_ALTER_SYSTEM[1])
                )
            )
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
            conn.execute("INSERT INTO kept SELECT generate_series(1, 100)")
            conn.execute("GRANT SELECT ON kept TO migratetest")
        wait_for(lambda: cluster.show("lock_timeout") == "7s", 10, what="the reload")
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", str(MAJOR), cluster.name],
            capture_output=True,
            check=False,
            timeout=120,
        )


def test_debian_cluster_settings_come_along(service: Any, debian_source: DebianCluster) -> None:
    source = debian_source
    expected = {name: source.show(name) for name in SHOWN}
    assert expected["TimeZone"] == "Asia/Tokyo" and expected["lock_timeout"] == "7s"

    client = service.tea()
    instance_id = create_instance(client)
    attr = wait_running(client, instance_id)
    task_id = create_migration(client, instance_id, source).task_id
    item = wait_streaming(client, instance_id, task_id)

    # The assessment lists the carried settings (and warns about what changes: max_connections, ssl).
    settings_line = next(
        line for line in item.detail.splitlines() if line.startswith("Check settings carried: ")
    )
    assert settings_line.startswith(
        "Check settings carried: warning(warning:setting max_connections will change"
    )
    carried = settings_line.split("settings carried as on the source: ", 1)[1].removesuffix(")").split(", ")
    for name in SHOWN:
        assert name in carried, settings_line
    plan = raw_items(service, instance_id, task_id=task_id)[0]["Progress"]["SettingsCarry"]
    dropped = {s["Name"] for s in plan["Settings"] if s["Action"] == "drop"}
    assert {"cluster_name", "external_pid_file", "port", "unix_socket_directories"} <= dropped

    client.activate_migration_target_instance(
        rds.ActivateMigrationTargetInstanceRequest(dbinstance_name=instance_id, switch_time_mode="0")
    )

    def switched() -> Any:
        it = migration_item(client, instance_id, task_id)
        assert "[Task failed]" not in it.detail, it.detail
        return it if it.migrate_stage == "success" else None

    wait_for(switched, 120, what="the switchover")
    with connect_target_tcp(attr) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        on_target = {}
        for name in SHOWN:
            row = conn.execute(pgsql.SQL("SHOW {}").format(pgsql.Identifier(name.lower()))).fetchone()
            assert row is not None
            on_target[name] = str(row[0])
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (100,)
    assert on_target == expected
