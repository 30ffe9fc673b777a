"""psycopg 3 connections to sources and targets. Passwords are passed as keywords (psycopg quotes
them), never formatted into a connection string by cloudmig."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg


def _base(
    host: str, port: int, user: str, dbname: str, connect_timeout: int, application_name: str
) -> dict[str, Any]:
    return {
        "host": host,
        "port": int(port),
        "user": user,
        "dbname": dbname,
        "connect_timeout": int(connect_timeout),
        "application_name": application_name,
    }


def connect_source(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    dbname: str = "postgres",
    connect_timeout: int = 5,
    application_name: str = "cloudmig",
    **libpq: str,
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to a server over TCP with a password (`libpq`: more keywords, e.g.
    sslmode). cloudmig's own code reaches a source through pg.source.Source.connect()."""
    params = _base(host, port, user, dbname, connect_timeout, application_name) | libpq
    return psycopg.connect(autocommit=True, password=password, **params)


def connect_socket(
    socket_dir: Path,
    port: int,
    user: str,
    *,
    dbname: str = "postgres",
    connect_timeout: int = 10,
    application_name: str = "cloudmig",
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection over the Unix socket in `socket_dir` (trust: cloudmig's admin channel)."""
    params = _base(os.fspath(socket_dir), port, user, dbname, connect_timeout, application_name)
    return psycopg.connect(autocommit=True, **params)


def connect_replication(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    connect_timeout: int = 5,
    application_name: str = "cloudmig",
    **libpq: str,
) -> psycopg.Connection[tuple[Any, ...]]:
    """A physical replication connection (replication=true): proves pg_hba.conf lets `user` in for
    replication. Only the simple query protocol works on it: use probes.identify_system()."""
    params = _base(host, port, user, "replication", connect_timeout, application_name)
    params["replication"] = "true"
    return psycopg.connect(autocommit=True, password=password, **(params | libpq))
