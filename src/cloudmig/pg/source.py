"""The source server as cloudmig reaches it: address, migration account, secret and TLS settings.

One type for every use (assessment, copy, standby, observation, switchover, slot cleanup) and one
way to open a connection to it, so that the TLS settings and the timeout are the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cloudmig.domain.tls import SSL_MODES
from cloudmig.pg import sql

Conn = psycopg.Connection[tuple[Any, ...]]

VERIFYING_SSL_MODES: frozenset[str] = frozenset({"verify-ca", "verify-full"})
DEFAULT_APPLICATION_NAME = "cloudmig"


@dataclass(frozen=True)
class SourceEndpoint:
    """Where the source listens and who logs in: what a passfile line and an argv may carry."""

    host: str
    port: int
    user: str


@dataclass(frozen=True)
class SourceTls:
    """libpq TLS settings towards the source (`root_cert` is a file cloudmig wrote, 0600)."""

    sslmode: str = "prefer"
    root_cert: Path | None = None

    def __post_init__(self) -> None:
        if self.sslmode not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")

    @property
    def verifies(self) -> bool:
        return self.sslmode in VERIFYING_SSL_MODES

    def libpq_params(self) -> dict[str, str]:
        """Connection keywords (also usable as PGSSLMODE / PGSSLROOTCERT for the binaries)."""
        params = {"sslmode": self.sslmode}
        if self.root_cert is not None:
            params["sslrootcert"] = os.fspath(self.root_cert)
        return params

    def libpq_env(self) -> dict[str, str]:
        env = {"PGSSLMODE": self.sslmode}
        if self.root_cert is not None:
            env["PGSSLROOTCERT"] = os.fspath(self.root_cert)
        return env


def _fixed(secret: str) -> Callable[[], str]:
    return lambda: secret


@dataclass(frozen=True)
class Source:
    """A source server and the migration account cloudmig uses on it.

    The password is opened on demand (`password`); nothing else in this object is secret, so it
    may be logged (`repr` leaves the secret out).
    """

    host: str
    port: int
    account: str
    secret: Callable[[], str] = field(repr=False, compare=False)
    tls: SourceTls = field(default_factory=SourceTls)
    connect_timeout: int = 5
    category: str = ""

    @classmethod
    def with_password(cls, host: str, port: int, account: str, password: str, **kw: Any) -> Source:
        return cls(host, port, account, _fixed(password), **kw)

    @property
    def password(self) -> str:
        return self.secret()

    @property
    def endpoint(self) -> SourceEndpoint:
        return SourceEndpoint(self.host, self.port, self.account)

    def connect(self, dbname: str = "postgres", *, application_name: str = DEFAULT_APPLICATION_NAME) -> Conn:
        """An autocommit connection as the migration account (the password travels as a keyword,
        never formatted into a connection string)."""
        return sql.connect_source(
            self.host,
            self.port,
            self.account,
            self.password,
            dbname=dbname,
            connect_timeout=self.connect_timeout,
            application_name=application_name,
            **self.tls.libpq_params(),
        )

    def connect_replication(self, *, application_name: str = DEFAULT_APPLICATION_NAME) -> Conn:
        """A physical replication connection: proves pg_hba.conf lets the account in for
        replication. Only the simple query protocol works on it."""
        return sql.connect_replication(
            self.host,
            self.port,
            self.account,
            self.password,
            connect_timeout=self.connect_timeout,
            application_name=application_name,
            **self.tls.libpq_params(),
        )
