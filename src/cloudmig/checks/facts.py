"""Gather what the assessment rules judge, from the source (as the migration account) and the target.

Gathering never raises: a probe that fails is recorded in the facts (an `*_error` field or an entry
of `probe_errors`) and the rules report it. Every query is read-only; the source sessions are set to
read-only transactions as a second guard. Error texts kept in the facts never contain the password.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import psycopg

from cloudmig.domain.classes import InstanceClass
from cloudmig.domain.reserved import RESERVED_ROLES
from cloudmig.pg.source import Source

log = logging.getLogger("cloudmig.checks")

APPLICATION_NAME = "cloudmig-assessment"

T = TypeVar("T")

# Settings of the source the rules read (pg_settings.setting, i.e. in the setting's base unit).
SOURCE_SETTINGS = (
    "server_version_num",
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "max_slot_wal_keep_size",
    "max_connections",
    "max_prepared_transactions",
    "max_worker_processes",
    "max_locks_per_transaction",
    "block_size",
    "wal_segment_size",
)
TARGET_SETTINGS = ("server_version_num", "block_size", "wal_segment_size")

# connect() failures that say the address itself cannot be reached (vs. refused: nothing listens).
_UNREACHABLE_ERRNOS = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EADDRNOTAVAIL,
        errno.EAFNOSUPPORT,
    }
)
_MAX_ERROR_CHARS = 300
_MASK = "********"


@dataclass(frozen=True)
class TargetSpec:
    """The target instance as the assessment sees it."""

    major: int  # target EngineVersion
    instance_class: InstanceClass  # spec params
    storage_gb: int  # DBInstanceStorage quota
    free_bytes: Callable[[], int]  # free space of the file system holding the target
    connect_admin: Callable[[str], psycopg.Connection]  # dbname -> superuser connection to the target
    extension_allow_list: frozenset[str] | None = None  # None = any extension the target's binaries provide


@dataclass
class DatabaseFacts:
    name: str
    allow_connections: bool = True
    # Version of the libc collation the database was created with (None: C/POSIX, ICU, or unknown).
    libc_collversion: str | None = None
    size_bytes: int | None = None
    # Installed extensions; None when they could not be listed (see connect_error).
    extensions: tuple[str, ...] | None = None
    connect_error: str | None = None


@dataclass
class SourceFacts:
    host: str
    port: int
    account: str
    # Connectivity, in the order the checks go: address, port, login, replication connection.
    address: str | None = None
    ip_error: str | None = None
    port_error: str | None = None
    login_error: str | None = None
    replication_tried: bool = False
    replication_conn_error: str | None = None
    # The account (None when not read).
    is_superuser: bool | None = None
    has_replication: bool | None = None
    has_createrole: bool | None = None
    is_monitor: bool | None = None
    settings: dict[str, str] = field(default_factory=dict)
    wal_senders_in_use: int | None = None
    slot_names: tuple[str, ...] | None = None
    logical_slots: tuple[str, ...] | None = None
    databases: tuple[DatabaseFacts, ...] | None = None
    roles: tuple[str, ...] | None = None
    tablespaces: tuple[str, ...] | None = None
    # probe name -> error text, for probes that failed after a successful login.
    probe_errors: dict[str, str] = field(default_factory=dict)

    @property
    def logged_in(self) -> bool:
        return self.ip_error is None and self.port_error is None and self.login_error is None

    def setting_int(self, name: str) -> int | None:
        value = self.settings.get(name)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def major(self) -> int | None:
        num = self.setting_int("server_version_num")
        return num // 10000 if num is not None else None

    @property
    def total_size_bytes(self) -> int | None:
        """Size of all databases, or None when one of them could not be measured."""
        if self.databases is None or any(d.size_bytes is None for d in self.databases):
            return None
        return sum(d.size_bytes or 0 for d in self.databases)


@dataclass
class TargetFacts:
    # Copied from the TargetSpec so that the rules only look at facts.
    major: int
    instance_class: InstanceClass
    storage_gb: int
    extension_allow_list: frozenset[str] | None = None
    # Role names cloudmig reserves for itself (none may exist on the source).
    reserved_roles: frozenset[str] = frozenset()
    free_bytes: int | None = None
    free_bytes_error: str | None = None
    connect_error: str | None = None
    databases: tuple[str, ...] | None = None
    postgres_tables: tuple[str, ...] | None = None
    available_extensions: frozenset[str] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    # libc collation version of the target's build/host (None: unknown, e.g. only C locales exist).
    libc_collversion: str | None = None
    probe_errors: dict[str, str] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.connect_error is None


# ---- helpers -----------------------------------------------------------------------------------------


def describe_error(exc: BaseException, secret: str = "") -> str:
    """One line, bounded, with the secret masked: fit to be kept in facts and shown in a report."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        text = text.replace(secret, _MASK)
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def _probe(errors: dict[str, str], name: str, secret: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as exc:
        errors[name] = describe_error(exc, secret)
        log.debug("assessment probe %s failed: %s", name, errors[name])
        return None


def probe_tcp(host: str, port: int, timeout: float) -> tuple[str | None, str | None, str | None]:
    """(address, ip_error, port_error) of a TCP connect to host:port.

    A refused connect proves the address is reachable (port failure); unreachable, timeout and a
    name that does not resolve are address failures. With several addresses, one success is enough.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return None, f"cannot resolve {host}: {describe_error(exc)}", None
    first_addr: str | None = None
    ip_error: str | None = None
    refused: tuple[str, str] | None = None
    tried: set[tuple[int, str]] = set()
    for family, socktype, proto, _name, sockaddr in infos:
        addr = str(sockaddr[0])
        if (family, addr) in tried:
            continue
        tried.add((family, addr))
        first_addr = first_addr or addr
        try:
            with socket.socket(family, socktype, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
            return addr, None, None
        except ConnectionRefusedError as exc:
            refused = refused or (addr, f"{addr}:{port}: {describe_error(exc)}")
        except TimeoutError:
            ip_error = ip_error or f"{addr}: connect timed out after {timeout:g}s"
        except OSError as exc:
            text = f"{addr}:{port}: {describe_error(exc)}"
            if exc.errno in _UNREACHABLE_ERRNOS:
                ip_error = ip_error or text
            else:  # reachable but not accepting (reset, ...): the port is the problem
                refused = refused or (addr, text)
    if refused is not None:
        return refused[0], None, refused[1]
    return first_addr, ip_error or f"{host} has no address", None


@contextmanager
def _source_conn(spec: Source, dbname: str) -> Iterator[psycopg.Connection]:
    conn = spec.connect(dbname, application_name=APPLICATION_NAME)
    try:
        conn.autocommit = True
        conn.execute("SET default_transaction_read_only = on")
        yield conn
    finally:
        conn.close()


def _rows(
    conn: psycopg.Connection, query: str, params: tuple[object, ...] | None = None
) -> list[tuple[object, ...]]:
    return list(conn.execute(query, params).fetchall())


# ---- source ------------------------------------------------------------------------------------------


def gather_source(spec: Source) -> SourceFacts:
    """Everything the rules need from the source. Never raises."""
    facts = SourceFacts(host=spec.host, port=spec.port, account=spec.account)
    try:
        _gather_source(spec, facts)
    except Exception as exc:  # a bug or something unforeseen: keep the report going
        log.exception("assessment: gathering source facts failed")
        facts.probe_errors["source"] = describe_error(exc, spec.password)
    return facts


def _gather_source(spec: Source, facts: SourceFacts) -> None:
    facts.address, facts.ip_error, facts.port_error = probe_tcp(spec.host, spec.port, spec.connect_timeout)
    if facts.ip_error is not None or facts.port_error is not None:
        return
    for dbname in ("postgres", "template1"):
        try:
            with _source_conn(spec, dbname) as conn:
                facts.login_error = None
                _gather_source_sql(spec, facts, conn, dbname)
            break
        except psycopg.Error as exc:
            facts.login_error = facts.login_error or describe_error(exc, spec.password)
            # Only a missing (or forbidden) postgres database is worth a second attempt.
            if 'database "postgres"' not in str(exc):
                break
    if facts.login_error is not None:
        return
    facts.replication_conn_error = _try_replication(spec)
    facts.replication_tried = True


def _try_replication(spec: Source) -> str | None:
    try:
        conn = spec.connect_replication(application_name=APPLICATION_NAME)
    except Exception as exc:
        return describe_error(exc, spec.password)
    conn.close()
    return None


def _gather_source_sql(spec: Source, facts: SourceFacts, conn: psycopg.Connection, login_db: str) -> None:
    errors = facts.probe_errors
    pw = spec.password

    role = _probe(
        errors,
        "account",
        pw,
        lambda: conn.execute(
            "SELECT rolsuper, rolreplication, rolcreaterole,"
            " pg_has_role(current_user, 'pg_monitor', 'MEMBER')"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone(),
    )
    if role is not None:
        superuser = bool(role[0])
        facts.is_superuser = superuser
        # A superuser may do all of it without the attributes themselves.
        facts.has_replication = superuser or bool(role[1])
        facts.has_createrole = superuser or bool(role[2])
        facts.is_monitor = superuser or bool(role[3])

    settings = _probe(
        errors,
        "settings",
        pw,
        lambda: _rows(
            conn, "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SOURCE_SETTINGS),)
        ),
    )
    if settings is not None:
        facts.settings = {str(name): str(value) for name, value in settings}

    senders = _probe(
        errors, "wal_senders", pw, lambda: conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
    )
    if senders is not None:
        facts.wal_senders_in_use = int(str(senders[0]))

    slots = _probe(
        errors,
        "replication_slots",
        pw,
        lambda: _rows(conn, "SELECT slot_name, slot_type FROM pg_replication_slots ORDER BY slot_name"),
    )
    if slots is not None:
        facts.slot_names = tuple(str(s[0]) for s in slots)
        facts.logical_slots = tuple(str(s[0]) for s in slots if s[1] == "logical")

    roles = _probe(errors, "roles", pw, lambda: _rows(conn, "SELECT rolname FROM pg_roles ORDER BY rolname"))
    if roles is not None:
        facts.roles = tuple(str(r[0]) for r in roles)

    spaces = _probe(
        errors, "tablespaces", pw, lambda: _rows(conn, "SELECT spcname FROM pg_tablespace ORDER BY spcname")
    )
    if spaces is not None:
        facts.tablespaces = tuple(str(r[0]) for r in spaces)

    databases = _probe(errors, "databases", pw, lambda: _list_databases(conn, facts.major))
    if databases is None:
        return
    for db in databases:
        db.size_bytes = _probe(errors, f"size:{db.name}", pw, partial(_database_size, conn, db.name))
        if not db.allow_connections:
            continue  # template0: nobody can connect, and it is pristine
        if db.name == login_db:
            _list_extensions(db, conn, pw)
            continue
        try:
            with _source_conn(spec, db.name) as dbconn:
                _list_extensions(db, dbconn, pw)
        except psycopg.Error as exc:
            db.connect_error = describe_error(exc, pw)
    facts.databases = tuple(databases)


def _list_databases(conn: psycopg.Connection, major: int | None) -> list[DatabaseFacts]:
    if major is not None and major >= 15:
        # datcollversion is what the database was created with; only libc databases use glibc.
        rows = _rows(
            conn,
            "SELECT datname, datallowconn,"
            " CASE WHEN datlocprovider = 'c' THEN datcollversion END"
            " FROM pg_database ORDER BY datname",
        )
    else:
        # Before 15 no version is recorded: use the glibc version of the source host for every
        # database whose collation is a real libc locale (not C or POSIX).
        rows = _rows(
            conn,
            "SELECT datname, datallowconn,"
            " CASE WHEN datcollate IN ('C', 'POSIX') OR datcollate LIKE 'C.%%' THEN NULL"
            " ELSE (SELECT v FROM (SELECT pg_collation_actual_version(oid) AS v FROM pg_collation"
            "       WHERE collprovider = 'c') s WHERE v IS NOT NULL LIMIT 1) END"
            " FROM pg_database ORDER BY datname",
        )
    return [
        DatabaseFacts(
            name=str(name), allow_connections=bool(allow), libc_collversion=None if ver is None else str(ver)
        )
        for name, allow, ver in rows
    ]


def _database_size(conn: psycopg.Connection, name: str) -> int:
    row = conn.execute("SELECT pg_database_size(%s::name)", (name,)).fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"no size for database {name}")
    return int(row[0])


def _list_extensions(db: DatabaseFacts, conn: psycopg.Connection, secret: str) -> None:
    try:
        rows = _rows(conn, "SELECT extname FROM pg_extension ORDER BY extname")
    except psycopg.Error as exc:
        db.connect_error = describe_error(exc, secret)
        return
    db.extensions = tuple(str(r[0]) for r in rows)


# ---- target ------------------------------------------------------------------------------------------


def gather_target(target: TargetSpec) -> TargetFacts:
    """Everything the rules need from the target, through its admin connection. Never raises."""
    facts = TargetFacts(
        major=target.major,
        instance_class=target.instance_class,
        storage_gb=target.storage_gb,
        extension_allow_list=target.extension_allow_list,
        reserved_roles=RESERVED_ROLES,
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
        _gather_target_sql(facts, conn)
    except Exception as exc:
        log.exception("assessment: gathering target facts failed")
        facts.probe_errors["target"] = describe_error(exc)
    finally:
        try:
            conn.close()
        except Exception as exc:
            log.debug("closing the target connection failed: %s", exc)
    return facts


def _gather_target_sql(facts: TargetFacts, conn: psycopg.Connection) -> None:
    errors = facts.probe_errors
    conn.autocommit = True
    databases = _probe(
        errors, "databases", "", lambda: _rows(conn, "SELECT datname FROM pg_database ORDER BY 1")
    )
    if databases is not None:
        facts.databases = tuple(str(r[0]) for r in databases)
    tables = _probe(
        errors,
        "tables",
        "",
        lambda: _rows(
            conn,
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'f')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
            " ORDER BY 1",
        ),
    )
    if tables is not None:
        facts.postgres_tables = tuple(str(r[0]) for r in tables)
    available = _probe(
        errors, "extensions", "", lambda: _rows(conn, "SELECT name FROM pg_available_extensions")
    )
    if available is not None:
        facts.available_extensions = frozenset(str(r[0]) for r in available)
    settings = _probe(
        errors,
        "settings",
        "",
        lambda: _rows(
            conn, "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(TARGET_SETTINGS),)
        ),
    )
    if settings is not None:
        facts.settings = {str(name): str(value) for name, value in settings}
    num = facts.settings.get("server_version_num", "")
    major = int(num) // 10000 if num.isdigit() else facts.major
    facts.libc_collversion = _probe(errors, "collversion", "", lambda: _target_collversion(conn, major))


def _target_collversion(conn: psycopg.Connection, major: int) -> str | None:
    """The glibc collation version the target would use: its template1's, else any libc collation's."""
    if major >= 15:
        row = conn.execute(
            "SELECT CASE WHEN datlocprovider = 'c' THEN"
            " coalesce(datcollversion, pg_database_collation_actual_version(oid)) END"
            " FROM pg_database WHERE datname = 'template1'"
        ).fetchone()
        if row is not None and row[0] is not None:
            return str(row[0])
    # Every libc collation reports the same (glibc) version; C and POSIX report none.
    row = conn.execute(
        "SELECT v FROM (SELECT pg_collation_actual_version(oid) AS v FROM pg_collation"
        " WHERE collprovider = 'c') s WHERE v IS NOT NULL LIMIT 1"
    ).fetchone()
    return str(row[0]) if row is not None and row[0] is not None else None
