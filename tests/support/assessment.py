"""Helpers of the assessment's func tests (tests/func/test_assessment*.py): targets made by the local
provider, sources with the migration account, a CA and server certificates for TLS sources, and
assertions on report lines."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudmig.checks import TargetSpec, run_assessment
from cloudmig.checks.catalogue import CATALOGUE
from cloudmig.domain.checks import CheckResult, render_report
from cloudmig.domain.classes import CATALOGUE as CLASSES
from cloudmig.domain.classes import InstanceClass
from cloudmig.instances.provider import LocalInstanceProvider
from cloudmig.pg.files import atomic_write
from cloudmig.pg.source import Source, SourceTls
from tests.support import tls
from tests.support.pgcluster import DEFAULT_MAJOR, DEFAULT_PASSWORD, SourceCluster, free_port, make_settings

ACCOUNT = "migratetest"
MEDIUM = CLASSES["pg.n2.medium.2c"]  # max_connections 400, max_wal_senders 16, ...
MB = 1024 * 1024
# A source is healthy only with a bounded max_slot_wal_keep_size (the default -1 is a warning), and
# its configuration changes nothing on the way (the class's max_connections and max_wal_senders).
HEALTHY_SETTINGS: dict[str, object] = {
    "max_slot_wal_keep_size": "2GB",
    "max_connections": MEDIUM.max_connections,
    "max_wal_senders": MEDIUM.max_wal_senders,
}
FENCE_GRANTS_15 = (
    f"GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO {ACCOUNT}",
    f"GRANT EXECUTE ON FUNCTION pg_reload_conf() TO {ACCOUNT}",
    f"GRANT pg_signal_backend TO {ACCOUNT}",
)


# ---- targets -------------------------------------------------------------------------------------------


@dataclass
class Target:
    provider: LocalInstanceProvider
    instance_id: str
    port: int
    major: int

    def spec(
        self,
        *,
        storage_gb: int = 10,
        cls: InstanceClass = MEDIUM,
        allow: frozenset[str] | None = None,
    ) -> TargetSpec:
        return TargetSpec(
            major=self.major,
            instance_class=cls,
            storage_gb=storage_gb,
            free_bytes=lambda: self.provider.free_bytes(self.instance_id),
            connect_admin=lambda dbname: self.provider.connect_admin(
                self.instance_id, self.port, dbname=dbname
            ),
            extension_allow_list=allow,
            pg_bin_dirs=tuple(self.provider.settings.pg_bin_dirs),
        )

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.provider.connect_admin(self.instance_id, self.port, dbname=dbname) as conn:
            cur = conn.execute(query)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []


@contextlib.contextmanager
def make_target(base: Path, instance_id: str, major: int = DEFAULT_MAJOR) -> Iterator[Target]:
    provider = LocalInstanceProvider(make_settings(base))
    port = free_port()
    try:
        provider.create(instance_id, port=port, cls=MEDIUM, major=major)
        yield Target(provider, instance_id, port, major)
    finally:
        provider.destroy(instance_id, major)


# ---- sources -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def make_source(
    base: Path,
    settings: Mapping[str, object] | None = None,
    *,
    major: int = DEFAULT_MAJOR,
    prepare: Callable[[SourceCluster], None] | None = None,
) -> Iterator[SourceCluster]:
    """A source with the migration account; `prepare` runs before its first start when given."""
    cluster = SourceCluster.create(base, major=major, settings=settings, start=prepare is None)
    try:
        if prepare is not None:
            prepare(cluster)
            cluster.start()
        cluster.create_migration_account(ACCOUNT)
        yield cluster
    finally:
        cluster.destroy()


def spec_of(
    cluster: SourceCluster,
    account: str = ACCOUNT,
    password: str = DEFAULT_PASSWORD,
    *,
    tls: SourceTls | None = None,
    category: str = "ecsonvpc",
    connect_timeout: int = 5,
) -> Source:
    return Source.with_password(
        cluster.host,
        cluster.port,
        account,
        password,
        connect_timeout=connect_timeout,
        tls=tls or SourceTls(),
        category=category,
    )


# ---- TLS ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path  # PEM of the CA that signed the server certificate
    server_cert: Path
    server_key: Path


def make_pki(directory: Path, host: str = "127.0.0.1", *, owner: Any = None) -> Pki:
    """tests.support.tls.make_pki written into `directory` (the key 0600, owned by `owner`, as
    PostgreSQL insists)."""
    # Another CA is another name: a certificate of one must not verify against another.
    made = tls.make_pki(host, ca_name=f"cloudmig test CA {secrets.token_hex(8)}")
    pki = Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    atomic_write(pki.ca_cert, made.ca_pem, user=owner, mode=0o644)
    atomic_write(pki.server_cert, made.server_cert_pem, user=owner, mode=0o644)
    atomic_write(pki.server_key, made.server_key_pem, user=owner, mode=0o600)
    return pki


def ssl_settings(pki: Pki) -> dict[str, object]:
    return {"ssl": True, "ssl_cert_file": str(pki.server_cert), "ssl_key_file": str(pki.server_key)}


# ---- reports ------------------------------------------------------------------------------------------


def assess(source: Source, target: TargetSpec) -> tuple[list[CheckResult], str]:
    results = run_assessment(source, target)
    report = render_report(results)
    assert source.password not in report
    assert len(results) == len(CATALOGUE) == 26  # every sub-check is always in the list
    return results, report


def line_of(report: str, name: str) -> str:
    found = [line for line in report.splitlines() if line.startswith(f"{name}: ")]
    assert len(found) == 1, report
    return found[0]


def assert_fails(report: str, expected_line: str) -> None:
    name = expected_line.split(": ", 1)[0]
    assert line_of(report, name) == expected_line, report
    assert report.endswith("*Migrate check failed*\n"), report


def assert_warns(report: str, expected_line: str) -> None:
    name = expected_line.split(": ", 1)[0]
    assert line_of(report, name) == expected_line, report
    assert report.endswith("*Migrate check success*\n"), report
