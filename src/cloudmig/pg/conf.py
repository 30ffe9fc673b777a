"""The managed configuration of an instance: cloudmig.conf, pg_hba.conf, standby settings.

postgresql.conf (initdb's, or the source's after a base backup) ends with `include = 'cloudmig.conf'`
so cloudmig's values win over it; postgresql.auto.conf is read after both, so every setting cloudmig
manages is removed from it. All writes are atomic (temporary file, fsync, rename) and the files are
owned by the PostgreSQL OS user.

The standby settings depend on the data directory's major (PG_VERSION; see pg/compat.py): since 12
primary_conninfo and primary_slot_name are in cloudmig.conf and standby.signal marks a standby;
before 12 they are in recovery.conf (with standby_mode) and cloudmig.conf leaves them out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudmig.pg import compat
from cloudmig.pg.files import atomic_write, fsync_dir, make_dir, write_if_changed
from cloudmig.pg.runner import OsUser

MANAGED_CONF = "cloudmig.conf"
POSTGRESQL_CONF = "postgresql.conf"
AUTO_CONF = "postgresql.auto.conf"
STANDBY_SIGNAL = compat.STANDBY_SIGNAL
RECOVERY_CONF = compat.RECOVERY_CONF
RECOVERY_SIGNAL = "recovery.signal"
INCLUDE_LINE = f"include = '{MANAGED_CONF}'"

# Settings cloudmig.conf always sets (besides the spec parameters, which come with the class).
MANAGED_SETTINGS: frozenset[str] = frozenset(
    {
        "listen_addresses",
        "port",
        "unix_socket_directories",
        "hba_file",
        "ident_file",
        "external_pid_file",
        "cluster_name",
        "shared_buffers",
        "wal_level",
        "hot_standby",
        "archive_mode",
        "restore_command",
        "synchronous_standby_names",
        "ssl",
        "logging_collector",
        "log_destination",
        "password_encryption",
        "primary_conninfo",
        "primary_slot_name",
        "recovery_init_sync_method",
    }
)
# Spec parameters of the class catalogue (always managed, whatever a class sets).
SPEC_SETTINGS: frozenset[str] = frozenset(
    {
        "max_connections",
        "max_worker_processes",
        "max_wal_senders",
        "max_prepared_transactions",
        "max_locks_per_transaction",
    }
)
# Removed from a copied postgresql.auto.conf on top of the managed ones: paths of the source host,
# archiving and recovery control that would misdirect the standby.
_AUTO_EXTRA: frozenset[str] = frozenset(
    {
        "data_directory",
        "config_file",
        "unix_socket_group",
        "unix_socket_permissions",
        "archive_command",
        "archive_library",
        "archive_timeout",
        "archive_cleanup_command",
        "recovery_end_command",
        "recovery_min_apply_delay",
        "promote_trigger_file",
    }
)
_AUTO_PREFIXES = ("recovery_target", "ssl_")
# Commented out in a copied postgresql.conf (cloudmig.conf cannot neutralise them by overriding).
_CONF_STRIP: frozenset[str] = frozenset({"data_directory", "config_file", "unix_socket_group"})
_CONF_PREFIXES = ("recovery_target",)
_INCLUDE_DIRECTIVES = ("include", "include_dir")

_LINE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(?:=\s*)?(.*?)\s*$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class StandbyConf:
    primary_conninfo: str
    primary_slot_name: str


@dataclass(frozen=True)
class ManagedConf:
    port: int
    listen_addresses: str
    socket_dir: Path
    hba_file: Path
    spec_params: Mapping[str, int]
    shared_buffers: str
    standby: StandbyConf | None = None
    cluster_name: str = field(default="")
    # How a start after a crash or on a fresh copy makes the data directory durable (14+).
    recovery_sync_method: str = "fsync"


# ---- quoting ---------------------------------------------------------------------------------------


def _check_text(value: str, what: str) -> None:
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError(f"{what} must not contain a newline or NUL character")


def conf_quote(value: str) -> str:
    """A postgresql.conf string literal."""
    _check_text(value, "a configuration value")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def conninfo_quote(value: str) -> str:
    """A libpq keyword/value connection string value."""
    _check_text(value, "a connection parameter")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def primary_conninfo(
    host: str,
    port: int,
    user: str,
    passfile: Path,
    application_name: str,
    tls: Mapping[str, str] | None = None,
) -> str:
    """libpq keyword string for primary_conninfo: the password comes from `passfile`, never inline;
    `tls` adds sslmode / sslrootcert."""
    params = {
        "host": host,
        "port": str(int(port)),
        "user": user,
        "passfile": os.fspath(passfile),
        "application_name": application_name,
        **(tls or {}),
    }
    return " ".join(f"{key}={conninfo_quote(value)}" for key, value in params.items())


# ---- rendering -------------------------------------------------------------------------------------


def ident_file_for(hba_file: Path) -> Path:
    return hba_file.with_name("pg_ident.conf")


def pgdata_major(pgdata: Path) -> int:
    """The major of the cluster in `pgdata`, from its PG_VERSION ("9.6" → 96, like binaries)."""
    text = (pgdata / "PG_VERSION").read_text(encoding="ascii").strip()
    head, _, minor = text.partition(".")
    if not head.isdigit() or (minor and not minor.isdigit()):
        raise ValueError(f"{pgdata}/PG_VERSION: unexpected content {text!r}")
    return int(head) * 10 + int(minor) if minor else int(head)


def render_recovery_conf(standby: StandbyConf) -> str:
    """recovery.conf of a streaming standby, for majors before 12."""
    return (
        "\n".join(
            [
                "# Managed by cloudmig: rewritten on every configuration change, do not edit.",
                "standby_mode = 'on'",
                f"primary_conninfo = {conf_quote(standby.primary_conninfo)}",
                f"primary_slot_name = {conf_quote(standby.primary_slot_name)}",
                # Follow the primary onto a new timeline, as 12 and later do by default.
                "recovery_target_timeline = 'latest'",
            ]
        )
        + "\n"
    )


def render_managed_conf(conf: ManagedConf, major: int) -> str:
    """cloudmig.conf for a cluster of `major`: only settings that major knows (a server refuses to
    start on an unknown one); the standby settings only where they are settings (12+)."""
    for name in conf.spec_params:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid setting name {name!r}")
    standby = conf.standby
    lines = [
        "# Managed by cloudmig: rewritten on every configuration change, do not edit.",
        f"# Included last from {POSTGRESQL_CONF}; cloudmig removes these settings from {AUTO_CONF}.",
        f"listen_addresses = {conf_quote(conf.listen_addresses)}",
        f"port = {int(conf.port)}",
        f"unix_socket_directories = {conf_quote(os.fspath(conf.socket_dir))}",
        f"hba_file = {conf_quote(os.fspath(conf.hba_file))}",
        f"ident_file = {conf_quote(os.fspath(ident_file_for(conf.hba_file)))}",
        # Ours, beside the socket: a copied postgresql.conf may name its host's (Debian's
        # /var/run/postgresql/15-main.pid), and '' is not "none" but a file that cannot be written.
        f"external_pid_file = {conf_quote(os.fspath(conf.socket_dir / 'postgres.pid'))}",
        f"cluster_name = {conf_quote(conf.cluster_name)}",
        f"shared_buffers = {conf_quote(conf.shared_buffers)}",
    ]
    lines += [f"{name} = {int(value)}" for name, value in sorted(conf.spec_params.items())]
    lines += [
        "wal_level = replica",
        "hot_standby = on",
        "archive_mode = off",
        "restore_command = ''",
        "synchronous_standby_names = ''",
        "ssl = off",
        "password_encryption = 'scram-sha-256'",
        "# The server log goes to stderr, which pg_ctl -l captures.",
        "logging_collector = off",
        "log_destination = 'stderr'",
        f"primary_conninfo = {conf_quote(standby.primary_conninfo if standby else '')}",
        f"primary_slot_name = {conf_quote(standby.primary_slot_name if standby else '')}",
        f"recovery_init_sync_method = {conf_quote(conf.recovery_sync_method)}",
    ]
    unknown = compat.settings_unknown_to(major)
    lines = [line for line in lines if setting_name(line) not in unknown]
    return "\n".join(lines) + "\n"


def render_hba() -> str:
    # The socket directory is 0700: only the PostgreSQL OS user and root reach `local`, which is
    # cloudmig's admin channel. Everything over TCP needs a SCRAM password.
    rows = [("local", "all", "all", "", "trust"), ("local", "replication", "all", "", "trust")]
    for database in ("all", "replication"):
        rows += [
            ("host", database, "all", address, "scram-sha-256")
            for address in ("127.0.0.1/32", "::1/128", "0.0.0.0/0", "::/0")
        ]
    lines = ["# Managed by cloudmig: rewritten on every configuration change, do not edit."]
    lines += [f"{t:<7} {d:<15} {u:<15} {a:<23} {m}" for t, d, u, a, m in rows]
    return "\n".join(lines) + "\n"


def render_ident() -> str:
    return "# Managed by cloudmig: no user name maps.\n"


# ---- editing copied files --------------------------------------------------------------------------


def setting_name(line: str) -> str | None:
    """The (lower-case) setting or directive name a postgresql.conf line sets, or None."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    match = _LINE_RE.match(stripped)
    return match.group(1).lower() if match else None


def _strip_auto(name: str, managed: frozenset[str]) -> bool:
    return name in managed or name in _AUTO_EXTRA or name.startswith(_AUTO_PREFIXES)


def managed_names(conf: ManagedConf | None = None) -> frozenset[str]:
    spec = frozenset(n.lower() for n in conf.spec_params) if conf is not None else frozenset()
    return MANAGED_SETTINGS | SPEC_SETTINGS | spec


def strip_auto_conf(text: str, managed: frozenset[str] | None = None) -> tuple[str, list[str]]:
    """Remove from postgresql.auto.conf text every setting cloudmig manages.
    Returns the new text and the removed lines."""
    managed = managed if managed is not None else managed_names()
    kept: list[str] = []
    removed: list[str] = []
    for line in text.splitlines(keepends=True):
        name = setting_name(line)
        if name is not None and _strip_auto(name, managed):
            removed.append(line.strip())
        else:
            kept.append(line)
    return "".join(kept), removed


def _include_target(line: str) -> str | None:
    match = _LINE_RE.match(line.strip())
    if match is None:
        return None
    value = match.group(2)
    value = value.split("#", 1)[0].strip() if not value.startswith("'") else value
    if value.startswith("'"):
        end = value.find("'", 1)
        return value[1:end] if end > 0 else value[1:]
    return value or None


def fix_postgresql_conf(text: str, config_dir: Path) -> tuple[str, list[str]]:
    """Make a (copied) postgresql.conf end with the include of cloudmig.conf, and comment out what an
    override cannot neutralise: data_directory/config_file, recovery targets, and include/include_dir
    directives whose target does not exist here. Returns the new text and the disabled lines."""
    out: list[str] = []
    disabled: list[str] = []
    for line in text.splitlines(keepends=True):
        name = setting_name(line)
        if name is None:
            out.append(line)
            continue
        if name == "include" and _include_target(line) == MANAGED_CONF:
            continue  # re-added at the very end
        drop = name in _CONF_STRIP or name.startswith(_CONF_PREFIXES)
        if name in _INCLUDE_DIRECTIVES:
            target = _include_target(line)
            drop = target is None or not (config_dir / target).exists()
        if drop:
            disabled.append(line.strip())
            out.append("#cloudmig disabled: " + line.lstrip())
        else:
            out.append(line)
    body = "".join(out)
    if body and not body.endswith("\n"):
        body += "\n"
    return body + INCLUDE_LINE + "\n", disabled


def apply_managed_conf(pgdata: Path, conf: ManagedConf, *, user: OsUser | None) -> list[str]:
    """Point the cluster in `pgdata` at cloudmig's settings (see the module docstring). Safe to run
    again. Returns the copied settings removed from postgresql.auto.conf / disabled in
    postgresql.conf, so the caller can log them. The server must be (re)started to see changes."""
    if not (pgdata / "PG_VERSION").is_file():
        raise FileNotFoundError(f"{pgdata} is not a PostgreSQL data directory (no PG_VERSION)")
    make_dir(conf.hba_file.parent, user=user)
    # Each write is synced (a journal commit): files that already say this (the access rules
    # written when the instance was made) are left alone.
    write_if_changed(conf.hba_file, render_hba(), user=user)
    write_if_changed(ident_file_for(conf.hba_file), render_ident(), user=user)
    major = pgdata_major(pgdata)
    write_if_changed(pgdata / MANAGED_CONF, render_managed_conf(conf, major), user=user)

    removed: list[str] = []
    main = pgdata / POSTGRESQL_CONF
    if main.exists():
        original = main.read_text(encoding="utf-8", errors="surrogateescape")
        text, disabled = fix_postgresql_conf(original, pgdata)
        removed += disabled
    else:  # e.g. a Debian source keeps its postgresql.conf in /etc
        text = f"# Created by cloudmig: the data directory had no {POSTGRESQL_CONF}.\n{INCLUDE_LINE}\n"
    write_if_changed(main, text, user=user)

    auto = pgdata / AUTO_CONF
    if auto.exists():
        text, stripped = strip_auto_conf(
            auto.read_text(encoding="utf-8", errors="surrogateescape"), managed_names(conf)
        )
        removed += stripped
        write_if_changed(auto, text, user=user)

    _write_standby_marker(pgdata, conf.standby, major, user=user)
    fsync_dir(pgdata)
    return removed


def _write_standby_marker(
    pgdata: Path, standby: StandbyConf | None, major: int, *, user: OsUser | None
) -> None:
    """standby.signal (12+) or recovery.conf (before 12) for a standby; neither for a primary, nor
    recovery.signal (no targeted recovery, ever)."""
    (pgdata / RECOVERY_SIGNAL).unlink(missing_ok=True)
    signal = pgdata / STANDBY_SIGNAL
    recovery_conf = pgdata / RECOVERY_CONF
    if standby is None:
        signal.unlink(missing_ok=True)
        recovery_conf.unlink(missing_ok=True)
    elif compat.uses_recovery_conf(major):
        signal.unlink(missing_ok=True)
        atomic_write(recovery_conf, render_recovery_conf(standby), user=user)
    else:
        recovery_conf.unlink(missing_ok=True)
        if not signal.exists():
            atomic_write(signal, "", user=user)
