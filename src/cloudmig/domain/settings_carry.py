"""Which of the source's configuration-file settings the target takes over (issue 12, part 1).

A physical copy brings the data directory, but not always the configuration: a Debian cluster keeps
postgresql.conf in /etc/postgresql/<major>/<name>/. The assessment reads the settings that come from
the source's configuration files and this module sorts each one:

- carried: it describes how the database behaves (timezone, datestyle, lc_*, text search, timeouts,
  work_mem, extension settings, ...): written into the target's `cloudmig-source.conf`;
- overridden: cloudmig or the instance class sets it (spec parameters, shared_buffers, wal_level,
  ssl, ...); the target has cloudmig's value;
- dropped: it belongs to the source host (paths, addresses, ports, TLS files, archiving and recovery
  commands, cluster_name, ...); the target keeps its own.

The plan is plain data, JSON-serialisable, computed once at the precheck and written at the startup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_PATHS = "a file or directory of the source host"
_LISTEN = "where the source listens; the instance listens where cloudmig configures it"
_TLS = "TLS files and options of the source host"
_ARCHIVE = "WAL archiving of the source host (archive_mode is off on the instance)"
_RECOVERY = "recovery settings of the source host; cloudmig configures the standby's own"
_MEMORY = "depends on the source host's memory configuration"
_LOG_FILES = "log files of the source host; the instance logs to cloudmig's log file"

# Host-specific settings (lower case) and why they are not carried.
HOST_SPECIFIC: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "data_directory",
            "config_file",
            "hba_file",
            "ident_file",
            "external_pid_file",
            "krb_server_keyfile",
            "stats_temp_directory",
        ),
        _PATHS,
    ),
    **dict.fromkeys(
        (
            "listen_addresses",
            "port",
            "unix_socket_directories",
            "unix_socket_group",
            "unix_socket_permissions",
            "bonjour",
            "bonjour_name",
        ),
        _LISTEN,
    ),
    "cluster_name": "names the source's cluster; cloudmig names the instance",
    **dict.fromkeys(("archive_command", "archive_library", "archive_timeout"), _ARCHIVE),
    **dict.fromkeys(
        (
            "restore_command",
            "archive_cleanup_command",
            "recovery_end_command",
            "recovery_min_apply_delay",
            "promote_trigger_file",
            "primary_conninfo",
            "primary_slot_name",
        ),
        _RECOVERY,
    ),
    **dict.fromkeys(
        ("huge_pages", "huge_page_size", "shared_memory_type", "dynamic_shared_memory_type"), _MEMORY
    ),
    **dict.fromkeys(("log_directory", "log_filename"), _LOG_FILES),
}
HOST_SPECIFIC_PREFIXES: Mapping[str, str] = {"ssl_": _TLS, "recovery_target": _RECOVERY}
OVERRIDE_WHY = "set by cloudmig or the instance class"
PENDING_WHY = "set in the source's configuration file but not applied on the source yet"


class CarryAction(StrEnum):
    CARRY = "carry"
    OVERRIDE = "override"
    DROP = "drop"


@dataclass(frozen=True)
class SourceSetting:
    """A setting of the source that comes from a configuration file."""

    name: str  # as pg_settings spells it (e.g. TimeZone)
    value: str  # what the source runs with (SHOW form)
    # The value the configuration file holds when it is not applied yet (pg_file_settings), else None.
    file_value: str | None = None


@dataclass(frozen=True)
class CarryEntry:
    name: str
    action: CarryAction
    source_value: str  # what the source runs with now ("" for a dropped, host-specific one)
    target_value: str  # what the target will run with ("" when not known or dropped)
    why: str = ""
    pending: bool = False  # the carried value is the file's, not yet applied on the source

    @property
    def changes_behaviour(self) -> bool:
        """Whether the target will behave differently from the source as it runs now."""
        if self.action is CarryAction.DROP:
            return False  # host-specific: where, not how
        return self.source_value != self.target_value

    def message(self) -> str:
        text = (
            f"setting {self.name} will change from {_shown(self.source_value)} to {_shown(self.target_value)}"
        )
        return f"{text} ({self.why})" if self.pending else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Action": self.action.value,
            "SourceValue": self.source_value,
            "TargetValue": self.target_value,
            "Why": self.why,
            "Pending": self.pending,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CarryEntry:
        return cls(
            name=str(d["Name"]),
            action=CarryAction(d["Action"]),
            source_value=str(d["SourceValue"]),
            target_value=str(d["TargetValue"]),
            why=str(d.get("Why", "")),
            pending=bool(d.get("Pending", False)),
        )


def _shown(value: str) -> str:
    return value if value else "''"


@dataclass(frozen=True)
class SettingsCarryPlan:
    entries: tuple[CarryEntry, ...] = ()

    def with_action(self, action: CarryAction) -> list[CarryEntry]:
        return [e for e in self.entries if e.action is action]

    def carried(self) -> dict[str, str]:
        """Setting name → value to write into the target's cloudmig-source.conf."""
        return {e.name: e.target_value for e in self.with_action(CarryAction.CARRY)}

    def changes(self) -> list[CarryEntry]:
        return [e for e in self.entries if e.changes_behaviour]

    def as_dict(self) -> dict[str, Any]:
        return {"Settings": [e.as_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SettingsCarryPlan:
        return cls(tuple(CarryEntry.from_dict(e) for e in d.get("Settings", ())))


def host_specific_why(name: str) -> str | None:
    key = name.lower()
    if key in HOST_SPECIFIC:
        return HOST_SPECIFIC[key]
    return next((why for prefix, why in HOST_SPECIFIC_PREFIXES.items() if key.startswith(prefix)), None)


def _entry(s: SourceSetting, target_values: Mapping[str, str], managed: frozenset[str]) -> CarryEntry:
    key = s.name.lower()
    target_now = target_values.get(key, "")
    why = host_specific_why(key)
    if why is not None:  # values left out: they are the host's own (a conninfo may hold a password)
        return CarryEntry(s.name, CarryAction.DROP, "", "", why)
    if key in managed:
        return CarryEntry(s.name, CarryAction.OVERRIDE, s.value, target_now, OVERRIDE_WHY)
    if s.file_value is not None and s.file_value != s.value:
        return CarryEntry(s.name, CarryAction.CARRY, s.value, s.file_value, PENDING_WHY, pending=True)
    return CarryEntry(s.name, CarryAction.CARRY, s.value, s.value)


def plan_settings_carry(
    source: Iterable[SourceSetting], target_values: Mapping[str, str], managed: Iterable[str]
) -> SettingsCarryPlan:
    """Sort the source's configuration-file settings (see the module docstring).

    `target_values`: the target's current values by lower-case name (what an overridden or dropped
    setting will be); `managed`: the names cloudmig's own configuration sets.
    """
    managed_lower = frozenset(n.lower() for n in managed)
    lowered = {k.lower(): v for k, v in target_values.items()}
    entries = sorted(
        (_entry(s, lowered, managed_lower) for s in source), key=lambda e: (e.action.value, e.name.lower())
    )
    return SettingsCarryPlan(tuple(entries))
