"""Gather what the rules need from the source, as the migration account, through named queries
(pg/catalog.py, pg/privileges.py) on read-only sessions. Never raises.

Once the login works, the replication connection is tried and the other databases are entered
beside the login session's queries, a few at a time: each connection costs several round trips,
which add up over a WAN link when taken one after another. A database whose session failed beside
the others (under a connection limit of the account or the server, say) is entered once more on its
own, and a refused replication connection is tried again after the login session has closed, as
each was before they ran side by side.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial

import psycopg

from cloudmig.checks import connectivity
from cloudmig.checks.facts import DatabaseFacts, SourceFacts, describe_error, probe
from cloudmig.domain.setting_values import differs_from_running
from cloudmig.domain.settings_carry import SourceSetting
from cloudmig.pg import catalog, probes
from cloudmig.pg.privileges import fence_privileges
from cloudmig.pg.source import Source

log = logging.getLogger("cloudmig.checks")

# Connections the assessment opens beside its login session: the replication connection's try and
# sessions in the other databases. With the login and the copy's link probe, at most five at once.
PARALLEL_CONNECTIONS = 3

# Settings of the source the rules read (pg_settings.setting, i.e. in the setting's base unit).
SOURCE_SETTINGS = (
    "server_version_num",
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "max_slot_wal_keep_size",
    "max_wal_size",
    "max_connections",
    "max_prepared_transactions",
    "max_worker_processes",
    "max_locks_per_transaction",
    "block_size",
    "wal_segment_size",
)


def gather_source(source: Source) -> SourceFacts:
    """Everything the rules need from the source. Never raises."""
    facts = SourceFacts(
        host=source.host,
        port=source.port,
        account=source.account,
        category=source.category.lower(),
        tls_verifies=source.tls.verifies,
        sslmode=source.tls.sslmode,
    )
    try:
        _gather(source, facts)
    except Exception as exc:  # a bug or something unforeseen: keep the report going
        log.exception("assessment: gathering source facts failed")
        facts.probe_errors["source"] = describe_error(exc, source.password)
    return facts


def _gather(source: Source, facts: SourceFacts) -> None:
    facts.address, facts.ip_error, facts.port_error = connectivity.probe_tcp(
        source.host, source.port, source.connect_timeout
    )
    if facts.ip_error is not None or facts.port_error is not None:
        return
    conn, login_db, facts.login_error = connectivity.login(source)
    if conn is None:
        return  # nothing more is tried with credentials the server refused
    try:
        with ThreadPoolExecutor(PARALLEL_CONNECTIONS, thread_name_prefix="assess-source") as beside:
            replication = beside.submit(connectivity.try_replication, source)
            entered = _gather_sql(source, facts, conn, login_db, beside)
        # Every attempt made beside the login session is over: one that failed is made again, alone.
        for db, attempt in entered:
            inside = attempt.result()
            if inside.connect_error is not None:
                inside = _enter_database(source, replace(db))
            db.extensions, db.unlogged_tables = inside.extensions, inside.unlogged_tables
            db.connect_error = inside.connect_error
    finally:
        conn.close()
    # Before PostgreSQL 12 a replication connection counts against the account's CONNECTION LIMIT
    # and max_connections (since, only max_wal_senders bounds it): refused beside the login
    # session, it is tried once more now that the session is closed.
    error = replication.result()
    facts.replication_conn_error = None if error is None else connectivity.try_replication(source)
    facts.replication_tried = True


def _gather_sql(
    source: Source, facts: SourceFacts, conn: catalog.Conn, login_db: str, beside: ThreadPoolExecutor
) -> list[tuple[DatabaseFacts, Future[DatabaseFacts]]]:
    """The login session's queries; returns the other databases being entered `beside` it."""
    errors = facts.probe_errors
    pw = source.password

    role = probe(errors, "account", pw, partial(catalog.account_attributes, conn))
    if role is not None:
        superuser, replication, createrole, monitor = role
        facts.is_superuser = superuser
        # A superuser may do all of it without the attributes themselves.
        facts.has_replication = superuser or replication
        facts.has_createrole = superuser or createrole
        facts.is_monitor = superuser or monitor

    settings = probe(errors, "settings", pw, partial(catalog.raw_settings, conn, SOURCE_SETTINGS))
    if settings is not None:
        facts.settings = settings
    facts.wal_senders_in_use = probe(errors, "wal_senders", pw, partial(catalog.wal_senders_in_use, conn))
    slots = probe(errors, "replication_slots", pw, partial(catalog.replication_slots, conn))
    if slots is not None:
        facts.slot_names = tuple(name for name, _ in slots)
        facts.logical_slots = tuple(name for name, kind in slots if kind == "logical")
    roles = probe(errors, "roles", pw, partial(catalog.role_names, conn))
    facts.roles = None if roles is None else tuple(roles)
    spaces = probe(errors, "tablespaces", pw, partial(catalog.tablespace_names, conn))
    facts.tablespaces = None if spaces is None else tuple(spaces)
    facts.in_recovery = probe(errors, "recovery", pw, partial(probes.is_in_recovery, conn))
    facts.ssl_in_use = probe(errors, "ssl", pw, partial(catalog.session_uses_ssl, conn))
    facts.fence = probe(errors, "fence", pw, partial(fence_privileges, conn))
    facts.config_settings = probe(errors, "config_settings", pw, partial(_config_settings, conn, errors))
    return _gather_databases(source, facts, conn, login_db, beside)


def _config_settings(conn: catalog.Conn, errors: dict[str, str]) -> tuple[SourceSetting, ...]:
    """Settings from the configuration files, with the file's value where it is not applied yet."""
    current = dict(catalog.config_file_settings(conn))
    # pg_file_settings needs more than pg_monitor; without it nothing pending is known.
    in_files = probe(errors, "file_settings", "", partial(catalog.file_settings, conn)) or []
    file_values: dict[str, str] = {}
    for f in in_files:
        if not differs_from_running(f.in_file, f.shown, f.raw, f.unit, f.vartype):
            continue
        known = next((n for n in current if n.lower() == f.name.lower()), None)
        if known is None:  # only in the file so far: the source runs with another value for now
            known = f.name
            current[known] = f.shown or ""
        file_values[known] = f.in_file
    return tuple(SourceSetting(name, value, file_values.get(name)) for name, value in sorted(current.items()))


def _gather_databases(
    source: Source, facts: SourceFacts, conn: catalog.Conn, login_db: str, beside: ThreadPoolExecutor
) -> list[tuple[DatabaseFacts, Future[DatabaseFacts]]]:
    errors = facts.probe_errors
    pw = source.password
    databases = probe(errors, "databases", pw, partial(catalog.databases, conn, facts.major))
    if databases is None:
        return []
    found: list[DatabaseFacts] = []
    entered: list[tuple[DatabaseFacts, Future[DatabaseFacts]]] = []
    for name, allow, collversion in databases:
        db = DatabaseFacts(name=name, allow_connections=allow, libc_collversion=collversion)
        found.append(db)
        # Not template0 (nobody can connect, and it is pristine), nor the login session's own.
        if allow and name != login_db:
            entered.append((db, beside.submit(_enter_database, source, replace(db))))
    for db in found:
        db.size_bytes = probe(errors, f"size:{db.name}", pw, partial(catalog.database_size, conn, db.name))
        if db.allow_connections and db.name == login_db:
            _inside_database(db, conn, pw)
    facts.databases = tuple(found)
    return entered


def _enter_database(source: Source, db: DatabaseFacts) -> DatabaseFacts:
    """`db` with what is learnt inside it, through a session of its own (or why none opened)."""
    try:
        dbconn = connectivity.open_session(source, db.name)
    except psycopg.Error as exc:
        db.connect_error = connectivity.server_reason(exc, source)
        return db
    try:
        _inside_database(db, dbconn, source.password)
    finally:
        dbconn.close()
    return db


def _inside_database(db: DatabaseFacts, conn: catalog.Conn, secret: str) -> None:
    """What the rules need from inside one database: its extensions and UNLOGGED tables."""
    try:
        db.extensions = tuple(catalog.installed_extensions(conn))
        db.unlogged_tables = tuple(catalog.unlogged_tables(conn))
    except psycopg.Error as exc:
        db.connect_error = describe_error(exc, secret)
