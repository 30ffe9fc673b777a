"""What the assessment rules judge: facts gathered from the source, the target and cloudmig's host.

Gathering never raises: a probe that fails is recorded in the facts (an `*_error` field or an entry
of `probe_errors`) and the rules report it. Error texts kept in the facts never contain the password.
The gatherers are source_facts.py, connectivity.py and target_facts.py; the rules only read these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psycopg

from cloudmig.domain.classes import InstanceClass
from cloudmig.domain.fence import FencePrivileges
from cloudmig.domain.settings_carry import SourceSetting

log = logging.getLogger("cloudmig.checks")

T = TypeVar("T")

_MAX_ERROR_CHARS = 300
_MASK = "********"


@dataclass(frozen=True)
class TargetSpec:
    """The target instance as the assessment sees it, and the service settings it judges by."""

    major: int  # target EngineVersion
    instance_class: InstanceClass  # spec params
    storage_gb: int  # DBInstanceStorage quota
    free_bytes: Callable[[], int]  # free space of the file system holding the target
    connect_admin: Callable[[str], psycopg.Connection]  # dbname -> superuser connection to the target
    extension_allow_list: frozenset[str] | None = None  # None = any extension the target's binaries provide
    pg_bin_dirs: tuple[Path, ...] = ()  # settings.pg_bin_dirs: where to look for a major's binaries
    slot_wal_warning_mb: int = 0  # settings.slot_wal_warning_mb / slot_wal_limit_mb (0 = derived)
    slot_wal_limit_mb: int = 0


@dataclass
class DatabaseFacts:
    name: str
    allow_connections: bool = True
    # Version of the libc collation the database was created with (None: C/POSIX, ICU, or unknown).
    libc_collversion: str | None = None
    size_bytes: int | None = None
    # Installed extensions and UNLOGGED tables; None when they could not be listed (see connect_error).
    extensions: tuple[str, ...] | None = None
    unlogged_tables: tuple[str, ...] | None = None
    connect_error: str | None = None


@dataclass
class SourceFacts:
    host: str
    port: int
    account: str
    category: str = ""  # SourceCategory (lower case)
    tls_verifies: bool = False  # the connection settings verify the server's certificate
    sslmode: str = "prefer"
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
    in_recovery: bool | None = None
    ssl_in_use: bool | None = None
    fence: FencePrivileges | None = None
    # Settings that come from the source's configuration files (None when not read).
    config_settings: tuple[SourceSetting, ...] | None = None
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
    slot_wal_warning_mb: int = 0
    slot_wal_limit_mb: int = 0
    # Role names cloudmig reserves for itself (none may exist on the source).
    reserved_roles: frozenset[str] = frozenset()
    # Settings cloudmig's own configuration sets on the instance (they win over the source's).
    managed_settings: frozenset[str] = frozenset()
    free_bytes: int | None = None
    free_bytes_error: str | None = None
    connect_error: str | None = None
    databases: tuple[str, ...] | None = None
    postgres_tables: tuple[str, ...] | None = None
    available_extensions: frozenset[str] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    # Every setting of the target in SHOW form, by lower-case name (what it runs with now).
    shown_settings: dict[str, str] | None = None
    # libc collation version of the target's build/host (None: unknown, e.g. only C locales exist).
    libc_collversion: str | None = None
    # The binaries of the source's major on cloudmig's host: the major looked for and why not found.
    binaries_major: int | None = None
    binaries_error: str | None = None
    # No pg_basebackup of the source's major or newer (older ones refuse newer servers).
    basebackup_error: str | None = None
    probe_errors: dict[str, str] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.connect_error is None


def describe_error(exc: BaseException, secret: str = "") -> str:
    """One line, bounded, with the secret masked: fit to be kept in facts and shown in a report."""
    return bounded_text(str(exc), secret) if str(exc).strip() else type(exc).__name__


def bounded_text(text: str, secret: str = "") -> str:
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, _MASK)
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return text


def probe(errors: dict[str, str], name: str, secret: str, fn: Callable[[], T]) -> T | None:
    """fn(), or None with its error recorded under `name` (masked, one line)."""
    try:
        return fn()
    except Exception as exc:
        errors[name] = describe_error(exc, secret)
        log.debug("assessment probe %s failed: %s", name, errors[name])
        return None
